package istio

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

// plan is what one route asks of every Istio object: it is checked once,
// then applied to each object by pure functions of the object.
type plan struct {
	ref   events.Ref
	route tasks.Route
	istio *spec.IstioTrafficRouting
	// managed are trafficRouting.managedRoutes' names, in precedence order.
	managed []string
	headers map[string]spec.SetHeaderRoute
	mirrors map[string]spec.SetMirrorRoute
	// stableWeight is 100 - the canary's weight - the experiment
	// templates' (route.Experiments).
	stableWeight int32
}

// newPlan checks what route asks for that does not depend on the objects.
func newPlan(ref events.Ref, route tasks.Route) (*plan, error) {
	tr := route.TrafficRouting
	if tr == nil || tr.Istio == nil {
		return nil, fmt.Errorf("%w: the route has no trafficRouting.istio, and this traffic service runs the Istio router", traffic.ErrRejected)
	}
	if max := tr.MaxWeight(); max != 100 {
		return nil, fmt.Errorf("%w: Istio weights are percentages; remove trafficRouting.maxTrafficWeight (%d)", traffic.ErrRejected, max)
	}
	if route.CanaryWeight < 0 || route.CanaryWeight > 100 {
		return nil, fmt.Errorf("%w: canary weight %d is not between 0 and 100", traffic.ErrRejected, route.CanaryWeight)
	}
	if err := traffic.ExperimentServices(route); err != nil {
		return nil, err
	}
	stableWeight, err := traffic.StableWeight(route, 100)
	if err != nil {
		return nil, err
	}
	p := &plan{ref: ref, route: route, istio: tr.Istio, headers: map[string]spec.SetHeaderRoute{}, mirrors: map[string]spec.SetMirrorRoute{}, stableWeight: stableWeight}
	if len(p.virtualServices()) == 0 {
		return nil, fmt.Errorf("%w: trafficRouting.istio names no virtualService", traffic.ErrRejected)
	}
	if dr := tr.Istio.DestinationRule; dr != nil {
		if dr.Name == "" || dr.CanarySubsetName == "" || dr.StableSubsetName == "" {
			return nil, fmt.Errorf("%w: trafficRouting.istio.destinationRule needs name, canarySubsetName and stableSubsetName", traffic.ErrRejected)
		}
	} else {
		switch {
		case route.CanaryService == "" || route.StableService == "":
			return nil, fmt.Errorf("%w: canaryService and stableService are required with trafficRouting.istio without a destinationRule", traffic.ErrRejected)
		case route.CanaryService == route.StableService:
			return nil, fmt.Errorf("%w: canaryService and stableService are both %q; the router cannot tell their destinations apart", traffic.ErrRejected, route.CanaryService)
		}
	}
	for _, m := range tr.ManagedRoutes {
		p.managed = append(p.managed, m.Name)
	}
	for _, h := range route.HeaderRoutes {
		if len(h.Match) == 0 {
			continue // a step without match removes the route
		}
		if err := p.own(h.Name, "header"); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for _, m := range h.Match {
			if m.HeaderValue == nil || stringMatch(*m.HeaderValue) == nil {
				return nil, fmt.Errorf("%w: header route %q: header %q needs exactly one of exact, prefix and regex", traffic.ErrRejected, h.Name, m.HeaderName)
			}
			if seen[strings.ToLower(m.HeaderName)] {
				return nil, fmt.Errorf("%w: header route %q matches header %q twice; a request must match every header, so keep one", traffic.ErrRejected, h.Name, m.HeaderName)
			}
			seen[strings.ToLower(m.HeaderName)] = true
		}
		p.headers[h.Name] = h
	}
	for _, m := range route.MirrorRoutes {
		if len(m.Match) == 0 {
			continue
		}
		if err := p.own(m.Name, "mirror"); err != nil {
			return nil, err
		}
		if m.Percentage != nil && (*m.Percentage < 0 || *m.Percentage > 100) {
			return nil, fmt.Errorf("%w: mirror route %q: percentage %d is not between 0 and 100", traffic.ErrRejected, m.Name, *m.Percentage)
		}
		for i, rm := range m.Match {
			if rm.Method == nil && rm.Path == nil && len(rm.Headers) == 0 {
				return nil, fmt.Errorf("%w: mirror route %q: match %d is empty and would mirror every request; give it a method, path or headers", traffic.ErrRejected, m.Name, i)
			}
			bad := (rm.Method != nil && stringMatch(*rm.Method) == nil) || (rm.Path != nil && stringMatch(*rm.Path) == nil)
			for _, v := range rm.Headers {
				bad = bad || stringMatch(v) == nil
			}
			if bad {
				return nil, fmt.Errorf("%w: mirror route %q: match %d: each of method, path and headers needs exactly one of exact, prefix and regex", traffic.ErrRejected, m.Name, i)
			}
		}
		p.mirrors[m.Name] = m
	}
	return p, nil
}

// own checks that a header or mirror route may be written under name.
func (p *plan) own(name, kind string) error {
	if !slices.Contains(p.managed, name) {
		return fmt.Errorf("%w: %s route %q is not listed in trafficRouting.managedRoutes", traffic.ErrRejected, kind, name)
	}
	_, h := p.headers[name]
	_, m := p.mirrors[name]
	if h || m {
		return fmt.Errorf("%w: two header or mirror routes are named %q; each needs its own managed route", traffic.ErrRejected, name)
	}
	return nil
}

// virtualServices are the VirtualServices the route configures.
func (p *plan) virtualServices() []spec.IstioVirtualService {
	if vs := p.istio.VirtualService; vs != nil {
		return []spec.IstioVirtualService{*vs}
	}
	return p.istio.VirtualServices
}

// role is what a destination stands for.
type role int

const (
	other role = iota
	canary
	stable
)

// roleOf tells which revision a route destination (the object under
// "destination") sends to: by subset with a DestinationRule, otherwise by
// host up to the first dot, as Argo compares them.
func (p *plan) roleOf(dest map[string]any) role {
	if dr := p.istio.DestinationRule; dr != nil {
		switch subset, _ := dest["subset"].(string); subset {
		case dr.CanarySubsetName:
			return canary
		case dr.StableSubsetName:
			return stable
		}
		return other
	}
	switch shortHost(dest) {
	case p.route.CanaryService:
		return canary
	case p.route.StableService:
		return stable
	}
	return other
}

// shortHost is a destination's host up to the first dot: the Service's
// name when the host is one of the rollout's namespace.
func shortHost(dest map[string]any) string {
	host, _ := dest["host"].(string)
	if i := strings.Index(host, "."); i >= 0 {
		host = host[:i]
	}
	return host
}

// describe names the destination of a role in messages.
func (p *plan) describe(r role) string {
	if dr := p.istio.DestinationRule; dr != nil {
		if r == canary {
			return fmt.Sprintf("subset %q (destinationRule.canarySubsetName)", dr.CanarySubsetName)
		}
		return fmt.Sprintf("subset %q (destinationRule.stableSubsetName)", dr.StableSubsetName)
	}
	if r == canary {
		return fmt.Sprintf("host %q (canaryService)", p.route.CanaryService)
	}
	return fmt.Sprintf("host %q (stableService)", p.route.StableService)
}

// weighted are the routes of a VirtualService that carry the weights, in
// the order the rollout lists them; kinds[i] names routes[i] in messages.
type weighted struct {
	routes []map[string]any
	kinds  []string
	// http is how many of routes, at the front, are HTTP routes.
	http int
}

func (w *weighted) add(kind string, route map[string]any) {
	w.routes = append(w.routes, route)
	w.kinds = append(w.kinds, kind)
	if strings.HasPrefix(kind, "HTTP") {
		w.http++
	}
}

// selectRoutes finds the routes of vs (its spec) that sel asks to weight,
// and the HTTP routes that are not managed routes, in their order.
func (p *plan) selectRoutes(vspec map[string]any, sel spec.IstioVirtualService) (w weighted, user []any, err error) {
	http, err := guard.ListAt(vspec, "http")
	if err != nil {
		return w, nil, err
	}
	for _, r := range http {
		m, ok := r.(map[string]any)
		if !ok {
			return w, nil, fmt.Errorf("%w: spec.http has an entry that is not an object", traffic.ErrRejected)
		}
		if name, _ := m["name"].(string); name != "" && slices.Contains(p.managed, name) {
			continue
		}
		user = append(user, m)
	}
	if len(sel.Routes) > 0 {
		for _, name := range sel.Routes {
			i := slices.IndexFunc(user, func(r any) bool { n, _ := r.(map[string]any)["name"].(string); return n == name })
			if i < 0 {
				return w, nil, fmt.Errorf("%w: it has no HTTP route named %q (virtualService.routes)", traffic.ErrRejected, name)
			}
			w.add(fmt.Sprintf("HTTP route %q", name), user[i].(map[string]any))
		}
	} else if len(user) > 1 {
		return w, nil, fmt.Errorf("%w: it has %d HTTP routes; name the ones to weight in virtualService.routes", traffic.ErrRejected, len(user))
	} else if len(user) == 1 {
		w.add("HTTP route", user[0].(map[string]any))
	}

	for _, kind := range []string{"tls", "tcp"} {
		routes, err := guard.ListAt(vspec, kind)
		if err != nil {
			return w, nil, err
		}
		label := strings.ToUpper(kind) + " route"
		var sels []func(map[string]any) bool
		var names []string
		if kind == "tls" {
			for _, s := range sel.TLSRoutes {
				sels = append(sels, func(r map[string]any) bool { return matchesTLS(r, s) })
				names = append(names, fmt.Sprintf("port %d and SNI hosts %v", s.Port, s.SNIHosts))
			}
		} else {
			for _, s := range sel.TCPRoutes {
				sels = append(sels, func(r map[string]any) bool { return matchesTCP(r, s) })
				names = append(names, fmt.Sprintf("port %d", s.Port))
			}
		}
		if len(sels) == 0 {
			switch {
			case len(routes) > 1:
				return w, nil, fmt.Errorf("%w: it has %d %ss; select the ones to weight with virtualService.%sRoutes", traffic.ErrRejected, len(routes), label, kind)
			case len(routes) == 1:
				r, ok := routes[0].(map[string]any)
				if !ok {
					return w, nil, fmt.Errorf("%w: spec.%s has an entry that is not an object", traffic.ErrRejected, kind)
				}
				w.add(label, r)
			}
			continue
		}
		for i, match := range sels {
			found := false
			for j, r := range routes {
				m, ok := r.(map[string]any)
				if ok && match(m) {
					w.add(fmt.Sprintf("%s %d", label, j), m)
					found = true
				}
			}
			if !found {
				return w, nil, fmt.Errorf("%w: it has no %s matching %s (virtualService.%sRoutes)", traffic.ErrRejected, label, names[i], kind)
			}
		}
	}
	if len(w.routes) == 0 {
		return w, nil, fmt.Errorf("%w: it has no HTTP, TLS or TCP route to weight", traffic.ErrRejected)
	}
	return w, user, nil
}

// matchesTLS reports whether a TLS route matches s as Argo matches them:
// all its match blocks name one port, s's, and together the SNI hosts of s.
func matchesTLS(route map[string]any, s spec.TLSRoute) bool {
	port, ok := onePort(route)
	if !ok || port != s.Port {
		return false
	}
	hosts := map[string]bool{}
	matches, _ := route["match"].([]any)
	for _, m := range matches {
		mm, _ := m.(map[string]any)
		sni, _ := mm["sniHosts"].([]any)
		for _, h := range sni {
			if hs, ok := h.(string); ok {
				hosts[hs] = true
			}
		}
	}
	want := map[string]bool{}
	for _, h := range s.SNIHosts {
		want[h] = true
	}
	return maps.Equal(hosts, want)
}

// matchesTCP reports whether a TCP route's match blocks name one port, s's.
func matchesTCP(route map[string]any, s spec.TCPRoute) bool {
	port, ok := onePort(route)
	return ok && port == s.Port
}

// onePort is the port all of route's match blocks name (0 when none does);
// false when they name several, which no selector matches.
func onePort(route map[string]any) (int64, bool) {
	ports := map[int64]bool{}
	matches, _ := route["match"].([]any)
	for _, m := range matches {
		mm, _ := m.(map[string]any)
		port, _ := number(mm["port"])
		ports[port] = true
	}
	if len(ports) > 1 {
		return 0, false
	}
	for port := range ports {
		return port, true
	}
	return 0, true
}

// virtualService returns the change route makes to a VirtualService
// selected by sel.
func (p *plan) virtualService(sel spec.IstioVirtualService) func(*unstructured.Unstructured) error {
	return func(vs *unstructured.Unstructured) error {
		if err := p.claim(vs); err != nil {
			return err
		}
		vspec, ok := vs.Object["spec"].(map[string]any)
		if !ok {
			return fmt.Errorf("%w: it has no spec", traffic.ErrRejected)
		}
		w, user, err := p.selectRoutes(vspec, sel)
		if err != nil {
			return err
		}
		cw, sw := int64(p.route.CanaryWeight), int64(p.stableWeight)
		for i, r := range w.routes {
			if err := p.setWeights(r, w.kinds[i], cw, sw); err != nil {
				return err
			}
		}
		managed, err := p.managedRoutes(w)
		if err != nil {
			return err
		}
		http := append(managed, user...)
		if len(http) == 0 {
			delete(vspec, "http")
		} else {
			vspec["http"] = http
		}
		return nil
	}
}

// setWeights gives route's canary destination weight cw and its stable
// destination sw, gives each experiment template with a weight a
// destination to its Service (host: the Service's name, added after the
// others when missing), and drops its other destinations, as Argo does: a
// managed route splits between the two revisions and the experiment's
// templates only, so a template's destination goes when its experiment
// ends.
func (p *plan) setWeights(route map[string]any, kind string, cw, sw int64) error {
	dests, err := guard.ListAt(route, "route")
	if err != nil {
		return err
	}
	experiments := map[string]int64{}
	for _, e := range p.route.Experiments {
		experiments[e.Pods.Service] = int64(e.Weight)
	}
	kept := make([]any, 0, 2+len(experiments))
	found := map[role]bool{}
	placed := map[string]bool{}
	for _, d := range dests {
		dm, ok := d.(map[string]any)
		if !ok {
			continue
		}
		dest, _ := dm["destination"].(map[string]any)
		r := p.roleOf(dest)
		switch r {
		case canary:
			dm["weight"] = cw
		case stable:
			dm["weight"] = sw
		default:
			svc := shortHost(dest)
			if w, ok := experiments[svc]; ok && !placed[svc] {
				dm["weight"] = w
				placed[svc] = true
				kept = append(kept, dm)
			}
			continue
		}
		found[r] = true
		kept = append(kept, dm)
	}
	for _, e := range p.route.Experiments {
		if !placed[e.Pods.Service] {
			kept = append(kept, map[string]any{"destination": map[string]any{"host": e.Pods.Service}, "weight": int64(e.Weight)})
			placed[e.Pods.Service] = true
		}
	}
	for _, r := range []role{canary, stable} {
		if !found[r] {
			return fmt.Errorf("%w: its %s has no destination with %s; it needs one for the canary and one for the stable", traffic.ErrRejected, kind, p.describe(r))
		}
	}
	route["route"] = kept
	return nil
}

// managedRoutes builds the header and mirror routes route asks for, in
// managedRoutes order, from the first weighted HTTP route: its canary
// destination (host, subset, port) receives header-routed and mirrored
// requests, and a mirror route keeps its weights.
func (p *plan) managedRoutes(w weighted) ([]any, error) {
	if len(p.headers)+len(p.mirrors) == 0 {
		return nil, nil
	}
	if w.http == 0 {
		return nil, fmt.Errorf("%w: header and mirror routes are HTTP routes, and it has no weighted HTTP route to send them like", traffic.ErrRejected)
	}
	template := w.routes[0]
	var canaryDest map[string]any
	dests, _ := template["route"].([]any)
	for _, d := range dests {
		dest, _ := d.(map[string]any)["destination"].(map[string]any)
		if p.roleOf(dest) == canary {
			canaryDest = dest
			break
		}
	}
	var out []any
	for _, name := range p.managed {
		if h, ok := p.headers[name]; ok {
			out = append(out, headerRoute(h, copyMap(canaryDest)))
		}
		if m, ok := p.mirrors[name]; ok {
			out = append(out, mirrorRoute(m, runtime.DeepCopyJSONValue(template["route"]), copyMap(canaryDest)))
		}
	}
	return out, nil
}

// headerRoute sends every request that has all of h's headers to dest.
func headerRoute(h spec.SetHeaderRoute, dest map[string]any) map[string]any {
	headers := map[string]any{}
	for _, m := range h.Match {
		headers[m.HeaderName] = stringMatch(*m.HeaderValue)
	}
	return map[string]any{
		"name":  h.Name,
		"match": []any{map[string]any{"headers": headers}},
		"route": []any{map[string]any{"destination": dest, "weight": int64(100)}},
	}
}

// mirrorRoute routes the requests m matches as the weighted route does
// (dests, with its weights) and mirrors m's percentage of them to mirror.
func mirrorRoute(m spec.SetMirrorRoute, dests any, mirror map[string]any) map[string]any {
	matches := make([]any, 0, len(m.Match))
	for _, rm := range m.Match {
		match := map[string]any{}
		if rm.Method != nil {
			match["method"] = stringMatch(*rm.Method)
		}
		if rm.Path != nil {
			match["uri"] = stringMatch(*rm.Path)
		}
		if len(rm.Headers) > 0 {
			headers := map[string]any{}
			for name, v := range rm.Headers {
				headers[name] = stringMatch(v)
			}
			match["headers"] = headers
		}
		matches = append(matches, match)
	}
	percent := int64(100)
	if m.Percentage != nil {
		percent = int64(*m.Percentage)
	}
	delete(mirror, "weight")
	return map[string]any{
		"name":             m.Name,
		"match":            matches,
		"route":            dests,
		"mirror":           mirror,
		"mirrorPercentage": map[string]any{"value": percent},
	}
}

// stringMatch is Istio's StringMatch for m, nil unless exactly one of its
// fields is set.
func stringMatch(m spec.StringMatch) map[string]any {
	out := map[string]any{}
	for k, v := range map[string]string{"exact": m.Exact, "prefix": m.Prefix, "regex": m.Regex} {
		if v != "" {
			out[k] = v
		}
	}
	if len(out) != 1 {
		return nil
	}
	return out
}

func copyMap(m map[string]any) map[string]any {
	return runtime.DeepCopyJSONValue(m).(map[string]any)
}

// weightIn reads the canary weight in effect in a stored VirtualService:
// that of the canary destination of its first weighted route.
func (p *plan) weightIn(vs *unstructured.Unstructured, sel spec.IstioVirtualService) (int64, error) {
	vspec, _ := vs.Object["spec"].(map[string]any)
	w, _, err := p.selectRoutes(vspec, sel)
	if err != nil {
		return 0, err
	}
	dests, _ := w.routes[0]["route"].([]any)
	for _, d := range dests {
		dm, _ := d.(map[string]any)
		dest, _ := dm["destination"].(map[string]any)
		if p.roleOf(dest) == canary {
			weight, _ := number(dm["weight"])
			return weight, nil
		}
	}
	return 0, fmt.Errorf("its %s has no canary destination", w.kinds[0])
}
