package spec

import (
	"regexp"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// supportedRouters are the trafficRouting keys Sluice implements.
var supportedRouters = []string{"alb", "istio", "nginx", "plugins", "smi"}

// gatewayAPIRouter names the Gateway API router in messages.
const gatewayAPIRouter = `plugins["` + GatewayAPIPlugin + `"]`

// validateTrafficRouting checks c.TrafficRouting, which is set, and the
// services it needs.
func validateTrafficRouting(c *CanaryStrategy, p *field.Path) field.ErrorList {
	tr := c.TrafficRouting
	tp := p.Child("trafficRouting")
	var errs field.ErrorList

	for _, key := range tr.UnknownRouters {
		errs = append(errs, field.NotSupported(tp.Child(key), key, supportedRouters))
	}
	for _, r := range []struct {
		name string
		raw  []byte
	}{{"ambassador", tr.Ambassador}, {"appMesh", tr.AppMesh}, {"traefik", tr.Traefik}, {"apisix", tr.Apisix}} {
		if present(r.raw) {
			errs = append(errs, field.Forbidden(tp.Child(r.name), "traffic router not supported by Sluice"))
		}
	}
	plugins := make([]string, 0, len(tr.Plugins))
	for name := range tr.Plugins {
		plugins = append(plugins, name)
	}
	sort.Strings(plugins)
	for _, name := range plugins {
		if name != GatewayAPIPlugin {
			errs = append(errs, field.NotSupported(tp.Child("plugins").Key(name), name, []string{GatewayAPIPlugin}))
		}
	}

	gw, gwErr := tr.GatewayAPI()
	gwSet := gw != nil || gwErr != nil
	if len(errs) == 0 && tr.Nginx == nil && tr.ALB == nil && tr.Istio == nil && tr.SMI == nil && !gwSet {
		errs = append(errs, field.Required(tp, "must configure a traffic router: nginx, alb, istio, smi or "+gatewayAPIRouter))
	}

	// Every router but Istio with DestinationRule subsets splits traffic
	// between the two Services.
	if tr.Nginx != nil || tr.ALB != nil || tr.SMI != nil || gwSet || (tr.Istio != nil && tr.Istio.DestinationRule == nil) {
		if c.CanaryService == "" {
			errs = append(errs, field.Required(p.Child("canaryService"), "required with trafficRouting"))
		}
		if c.StableService == "" {
			errs = append(errs, field.Required(p.Child("stableService"), "required with trafficRouting"))
		}
	}

	if tr.MaxTrafficWeight != nil {
		mp := tp.Child("maxTrafficWeight")
		errs = append(errs, atLeast(mp, tr.MaxTrafficWeight, 1)...)
		if tr.Nginx == nil && len(tr.Plugins) == 0 {
			errs = append(errs, field.Forbidden(mp, "only nginx and plugins support maxTrafficWeight"))
		}
	}

	names := sets.New[string]()
	for i, r := range tr.ManagedRoutes {
		np := tp.Child("managedRoutes").Index(i).Child("name")
		switch {
		case r.Name == "":
			errs = append(errs, field.Required(np, ""))
		case names.Has(r.Name):
			errs = append(errs, field.Duplicate(np, r.Name))
		}
		names.Insert(r.Name)
	}

	if n := tr.Nginx; n != nil {
		np := tp.Child("nginx")
		errs = append(errs, exactlyOne(np, []string{"stableIngress", "stableIngresses"}, []bool{n.StableIngress != "", len(n.StableIngresses) > 0})...)
	}
	if a := tr.ALB; a != nil {
		ap := tp.Child("alb")
		errs = append(errs, exactlyOne(ap, []string{"ingress", "ingresses"}, []bool{a.Ingress != "", len(a.Ingresses) > 0})...)
		if a.ServicePort == 0 {
			errs = append(errs, field.Required(ap.Child("servicePort"), ""))
		} else {
			errs = append(errs, between(ap.Child("servicePort"), &a.ServicePort, 1, 65535)...)
		}
	}
	if is := tr.Istio; is != nil {
		ip := tp.Child("istio")
		errs = append(errs, exactlyOne(ip, []string{"virtualService", "virtualServices"}, []bool{is.VirtualService != nil, len(is.VirtualServices) > 0})...)
		if is.VirtualService != nil && is.VirtualService.Name == "" {
			errs = append(errs, field.Required(ip.Child("virtualService", "name"), ""))
		}
		for i, vs := range is.VirtualServices {
			if vs.Name == "" {
				errs = append(errs, field.Required(ip.Child("virtualServices").Index(i).Child("name"), ""))
			}
		}
		if dr := is.DestinationRule; dr != nil {
			dp := ip.Child("destinationRule")
			for _, f := range []struct{ name, value string }{{"name", dr.Name}, {"canarySubsetName", dr.CanarySubsetName}, {"stableSubsetName", dr.StableSubsetName}} {
				if f.value == "" {
					errs = append(errs, field.Required(dp.Child(f.name), ""))
				}
			}
		}
	}
	gp := tp.Child("plugins").Key(GatewayAPIPlugin)
	if gwErr != nil {
		errs = append(errs, field.Invalid(gp, string(tr.Plugins[GatewayAPIPlugin]), gwErr.Error()))
	}
	if gw != nil {
		errs = append(errs, exactlyOne(gp, []string{"httpRoute", "httpRoutes"}, []bool{gw.HTTPRoute != "", len(gw.HTTPRoutes) > 0})...)
		for i, r := range gw.HTTPRoutes {
			if r.Name == "" {
				errs = append(errs, field.Required(gp.Child("httpRoutes").Index(i).Child("name"), ""))
			}
		}
	}
	return errs
}

// validateHeaderRoute checks a setHeaderRoute step. As in Argo Rollouts,
// Istio, ALB (exact matches only) and Gateway API support header routes;
// NGINX and SMI do not.
func validateHeaderRoute(h *SetHeaderRoute, tr *TrafficRouting, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	gw, _ := tr.GatewayAPI()
	if tr == nil || (tr.Istio == nil && tr.ALB == nil && gw == nil) {
		errs = append(errs, field.Forbidden(p, "requires trafficRouting with a router that supports header routes: istio, alb or "+gatewayAPIRouter))
	}
	errs = append(errs, managedRouteName(p.Child("name"), h.Name, tr)...)
	for i, m := range h.Match {
		mp := p.Child("match").Index(i)
		if m.HeaderName == "" {
			errs = append(errs, field.Required(mp.Child("headerName"), ""))
		}
		vp := mp.Child("headerValue")
		if m.HeaderValue == nil {
			errs = append(errs, field.Required(vp, "must set exactly one of exact, prefix and regex"))
			continue
		}
		errs = append(errs, validateStringMatch(m.HeaderValue, vp)...)
		if tr != nil && tr.ALB != nil && m.HeaderValue.Exact == "" {
			errs = append(errs, field.Invalid(vp, m.HeaderValue, "alb supports exact matches only"))
		}
	}
	return errs
}

// validateMirrorRoute checks a setMirrorRoute step. As in Argo Rollouts,
// only Istio supports mirror routes.
func validateMirrorRoute(m *SetMirrorRoute, tr *TrafficRouting, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if tr == nil || tr.Istio == nil {
		errs = append(errs, field.Forbidden(p, "requires trafficRouting.istio, the only router that supports mirror routes"))
	}
	errs = append(errs, managedRouteName(p.Child("name"), m.Name, tr)...)
	errs = append(errs, between(p.Child("percentage"), m.Percentage, 0, 100)...)
	for i, rm := range m.Match {
		mp := p.Child("match").Index(i)
		if rm.Method == nil && rm.Path == nil && len(rm.Headers) == 0 {
			errs = append(errs, field.Required(mp, "must set at least one of method, path and headers"))
		}
		if rm.Method != nil {
			errs = append(errs, validateStringMatch(rm.Method, mp.Child("method"))...)
		}
		if rm.Path != nil {
			errs = append(errs, validateStringMatch(rm.Path, mp.Child("path"))...)
		}
		headers := make([]string, 0, len(rm.Headers))
		for name := range rm.Headers {
			headers = append(headers, name)
		}
		slices.Sort(headers)
		for _, name := range headers {
			v := rm.Headers[name]
			errs = append(errs, validateStringMatch(&v, mp.Child("headers").Key(name))...)
		}
	}
	return errs
}

// managedRouteName checks that a step's route name is set and listed in
// trafficRouting.managedRoutes, which is what lets the rollout own it.
func managedRouteName(p *field.Path, name string, tr *TrafficRouting) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	if tr != nil {
		for _, r := range tr.ManagedRoutes {
			if r.Name == name {
				return nil
			}
		}
	}
	return field.ErrorList{field.Invalid(p, name, "must be listed in spec.strategy.canary.trafficRouting.managedRoutes")}
}

func validateStringMatch(m *StringMatch, p *field.Path) field.ErrorList {
	errs := exactlyOne(p, []string{"exact", "prefix", "regex"}, []bool{m.Exact != "", m.Prefix != "", m.Regex != ""})
	if m.Regex != "" {
		if _, err := regexp.Compile(m.Regex); err != nil {
			errs = append(errs, field.Invalid(p.Child("regex"), m.Regex, err.Error()))
		}
	}
	return errs
}
