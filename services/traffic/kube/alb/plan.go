package alb

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
)

// The load balancer controller's annotation JSON, in Argo Rollouts' shape
// (field names and order are what users and tools already parse).
type (
	action struct {
		Type          string        `json:"Type"`
		ForwardConfig forwardConfig `json:"ForwardConfig"`
	}
	forwardConfig struct {
		TargetGroups                []targetGroup `json:"TargetGroups"`
		TargetGroupStickinessConfig *stickiness   `json:"TargetGroupStickinessConfig,omitempty"`
	}
	targetGroup struct {
		ServiceName string `json:"ServiceName,omitempty"`
		ServicePort string `json:"ServicePort,omitempty"`
		Weight      *int64 `json:"Weight,omitempty"`
	}
	stickiness struct {
		Enabled         bool  `json:"Enabled"`
		DurationSeconds int64 `json:"DurationSeconds"`
	}
	condition struct {
		Field            string           `json:"field"`
		HTTPHeaderConfig httpHeaderConfig `json:"httpHeaderConfig"`
	}
	httpHeaderConfig struct {
		HTTPHeaderName string   `json:"httpHeaderName"`
		Values         []string `json:"values"`
	}
)

// maxStickySeconds is the longest target group stickiness AWS accepts (7
// days).
const maxStickySeconds = 7 * 24 * 3600

// plan is what a route asks of every Ingress of the rollout, worked out
// once per Apply.
type plan struct {
	rollout       string
	prefix        string
	actionService string
	canaryService string
	servicePort   string
	// actionKey is the weight action's annotation, action its value.
	actionKey, action string
	// headers are the header routes in effect, in managedRoutes order.
	headers []headerRoute
	// managed are the managedRoutes names, in precedence order.
	managed []string
}

// headerRoute is one header route's annotation values.
type headerRoute struct {
	name, action, conditions string
}

// newPlan checks route and works out the annotations it needs. It returns
// an error wrapping traffic.ErrRejected for what the user must change.
func newPlan(ref events.Ref, route tasks.Route) (plan, error) {
	tr := route.TrafficRouting
	if tr == nil || tr.ALB == nil {
		return plan{}, reject("the traffic service runs the alb router, and the rollout has no spec.strategy.canary.trafficRouting.alb")
	}
	a := tr.ALB
	switch {
	case a.Ingress == "" && len(a.Ingresses) == 0:
		return plan{}, reject("trafficRouting.alb needs ingress or ingresses")
	case a.ServicePort < 1 || a.ServicePort > 65535:
		return plan{}, reject("trafficRouting.alb.servicePort %d is not a port; set the port of the canary and stable Services the load balancer targets", a.ServicePort)
	case route.StableService == "" || route.CanaryService == "":
		return plan{}, reject("trafficRouting.alb needs both spec.strategy.canary.stableService and canaryService")
	case len(route.MirrorRoutes) > 0 && tr.Istio == nil:
		// With Istio as well, the mirror routes are Istio's to carry (every
		// router of a rollout is given the same route).
		return plan{}, reject("the alb router cannot mirror traffic (mirror route %q); remove the setMirrorRoute steps or use trafficRouting.istio", route.MirrorRoutes[0].Name)
	}
	if total := tr.MaxWeight(); route.CanaryWeight < 0 || route.CanaryWeight > total {
		return plan{}, reject("canary weight %d is outside 0..%d", route.CanaryWeight, total)
	}
	if err := traffic.ExperimentServices(route); err != nil {
		return plan{}, err
	}
	stableWeight, err := traffic.StableWeight(route, tr.MaxWeight())
	if err != nil {
		return plan{}, err
	}
	sticky, err := stickinessOf(a.StickinessConfig)
	if err != nil {
		return plan{}, err
	}
	p := plan{
		rollout:       ref.Name,
		prefix:        a.AnnotationPrefix,
		actionService: a.RootService,
		canaryService: route.CanaryService,
		servicePort:   strconv.Itoa(int(a.ServicePort)),
	}
	if p.prefix == "" {
		p.prefix = DefaultAnnotationPrefix
	}
	if p.actionService == "" {
		p.actionService = route.StableService
	}
	p.actionKey = p.key("actions", p.actionService)
	if err := checkKey(p.actionKey, "the action Service's name (trafficRouting.alb.rootService or stableService)"); err != nil {
		return plan{}, err
	}
	// Argo's order: the canary, each experiment template (its Service on
	// the same servicePort), the stable.
	groups := []targetGroup{p.targetGroup(route.CanaryService, int64(route.CanaryWeight))}
	for _, e := range route.Experiments {
		groups = append(groups, p.targetGroup(e.Pods.Service, int64(e.Weight)))
	}
	groups = append(groups, p.targetGroup(route.StableService, int64(stableWeight)))
	p.action = mustJSON(action{Type: "forward", ForwardConfig: forwardConfig{
		TargetGroups:                groups,
		TargetGroupStickinessConfig: sticky,
	}})
	for _, m := range tr.ManagedRoutes {
		p.managed = append(p.managed, m.Name)
	}
	active := map[string]spec.SetHeaderRoute{}
	for _, h := range route.HeaderRoutes {
		if len(h.Match) == 0 {
			continue // a header route without matches is one to remove
		}
		if err := p.checkHeaderRoute(h); err != nil {
			return plan{}, err
		}
		active[h.Name] = h
	}
	for _, name := range p.managed {
		h, ok := active[name]
		if !ok {
			continue
		}
		conds := make([]condition, 0, len(h.Match))
		for _, m := range h.Match {
			conds = append(conds, condition{Field: "http-header", HTTPHeaderConfig: httpHeaderConfig{HTTPHeaderName: m.HeaderName, Values: []string{m.HeaderValue.Exact}}})
		}
		p.headers = append(p.headers, headerRoute{
			name: name,
			// A header route sends everything it matches to the canary.
			action: mustJSON(action{Type: "forward", ForwardConfig: forwardConfig{
				TargetGroups:                []targetGroup{p.targetGroup(route.CanaryService, 100)},
				TargetGroupStickinessConfig: sticky,
			}}),
			conditions: mustJSON(conds),
		})
	}
	return p, nil
}

// checkHeaderRoute rejects a header route the load balancer cannot carry.
func (p plan) checkHeaderRoute(h spec.SetHeaderRoute) error {
	if !slices.Contains(p.managed, h.Name) {
		return reject("header route %q is not listed in trafficRouting.managedRoutes; add it there", h.Name)
	}
	// The route's name becomes the backend Service name of an Ingress path.
	if errs := validation.IsDNS1035Label(h.Name); len(errs) > 0 {
		return reject("header route name %q names the backend of an Ingress path, so it must be a DNS-1035 label: %s", h.Name, strings.Join(errs, "; "))
	}
	if h.Name == p.actionService {
		return reject("header route %q has the name of the action Service, whose action annotation carries the weights; rename the route", h.Name)
	}
	for _, key := range []string{p.key("actions", h.Name), p.key("conditions", h.Name)} {
		if err := checkKey(key, fmt.Sprintf("the header route name %q", h.Name)); err != nil {
			return err
		}
	}
	for _, m := range h.Match {
		if m.HeaderName == "" {
			return reject("header route %q: a match has no headerName", h.Name)
		}
		if v := m.HeaderValue; v == nil || v.Exact == "" || v.Prefix != "" || v.Regex != "" {
			return reject("header route %q: the load balancer matches header values exactly; set headerValue.exact (and only it) for header %q", h.Name, m.HeaderName)
		}
	}
	return nil
}

// stickinessOf returns the stickiness of every forward action, nil when
// it is off.
func stickinessOf(c *spec.StickinessConfig) (*stickiness, error) {
	if c == nil || !c.Enabled {
		return nil, nil
	}
	if c.DurationSeconds < 1 || c.DurationSeconds > maxStickySeconds {
		return nil, reject("trafficRouting.alb.stickinessConfig.durationSeconds %d is outside the 1..%d (7 days) AWS accepts", c.DurationSeconds, maxStickySeconds)
	}
	return &stickiness{Enabled: true, DurationSeconds: c.DurationSeconds}, nil
}

func (p plan) targetGroup(service string, weight int64) targetGroup {
	return targetGroup{ServiceName: service, ServicePort: p.servicePort, Weight: &weight}
}

// key is the annotation "<prefix>/<kind>.<name>" (kind "actions" or
// "conditions").
func (p plan) key(kind, name string) string {
	return p.prefix + "/" + kind + "." + name
}

// checkKey rejects an annotation key the API server would refuse (its name
// part is at most 63 characters), naming what makes it up.
func checkKey(key, from string) error {
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return reject("annotation key %q, made from %s, is not valid: %s; shorten the name or trafficRouting.alb.annotationPrefix", key, from, strings.Join(errs, "; "))
	}
	return nil
}

// apply edits ing, a copy, to carry the plan. It returns an error wrapping
// traffic.ErrRejected when ing has no path the action annotation applies to.
func (p plan) apply(ing *networkingv1.Ingress) error {
	if err := p.checkActionPath(ing); err != nil {
		return err
	}
	managed, err := parseManaged(ing.Annotations[ManagedAnnotation])
	if err != nil {
		return reject("annotation %s: %v; fix or remove it", ManagedAnnotation, err)
	}
	if ing.Annotations == nil {
		ing.Annotations = map[string]string{}
	}
	ann := ing.Annotations
	ann[p.actionKey] = p.action
	owned := []string{p.actionKey}

	// Header routes not in effect lose their annotations and paths: every
	// managed route, and every route this rollout recorded before (a name
	// since dropped from managedRoutes).
	gone := slices.Clone(p.managed)
	for _, k := range managed[p.rollout] {
		if name, ok := strings.CutPrefix(k, p.prefix+"/conditions."); ok {
			gone = append(gone, name)
		}
	}
	for _, name := range gone {
		if name == p.actionService || slices.ContainsFunc(p.headers, func(h headerRoute) bool { return h.name == name }) {
			continue
		}
		delete(ann, p.key("actions", name))
		delete(ann, p.key("conditions", name))
		for i := range ing.Spec.Rules {
			if http := ing.Spec.Rules[i].HTTP; http != nil {
				http.Paths = slices.DeleteFunc(http.Paths, func(path networkingv1.HTTPIngressPath) bool { return isActionPath(path, name) })
			}
		}
	}

	for _, h := range p.headers {
		actionKey, conditionKey := p.key("actions", h.name), p.key("conditions", h.name)
		ann[actionKey], ann[conditionKey] = h.action, h.conditions
		owned = append(owned, actionKey, conditionKey)
		p.addRoutePath(ing, h.name)
	}
	p.sortPaths(ing)

	managed[p.rollout] = owned
	ann[ManagedAnnotation] = mustJSON(managed)
	return nil
}

// checkActionPath rejects ing when no path of it takes its action from the
// weight action annotation.
func (p plan) checkActionPath(ing *networkingv1.Ingress) error {
	var ports []string
	for _, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for _, path := range rule.HTTP.Paths {
			if isActionPath(path, p.actionService) {
				return nil
			}
			if s := path.Backend.Service; s != nil && s.Name == p.actionService {
				port := s.Port.Name
				if port == "" {
					port = strconv.Itoa(int(s.Port.Number))
				}
				ports = append(ports, port)
			}
		}
	}
	hint := ""
	if len(ports) > 0 {
		hint = fmt.Sprintf(" (its paths to %q use port %s)", p.actionService, strings.Join(ports, ", "))
	}
	return reject("no path has backend Service %q with port name %q%s, so the load balancer would never read the action annotation %s; set a path's backend to service name %s, port name %s (the Service named by trafficRouting.alb.rootService, or else stableService)",
		p.actionService, UseAnnotation, hint, p.actionKey, p.actionService, UseAnnotation)
}

// addRoutePath gives every rule that routes to the action Service a path
// for the header route name, first (sortPaths then orders the header
// routes), and takes it out of the rules that do not route there.
// Argo adds it to every rule; a rule for another host or Service has no
// business sending this rollout's header matches to its canary.
func (p plan) addRoutePath(ing *networkingv1.Ingress, name string) {
	for i := range ing.Spec.Rules {
		http := ing.Spec.Rules[i].HTTP
		if http == nil {
			continue
		}
		routes := slices.ContainsFunc(http.Paths, func(path networkingv1.HTTPIngressPath) bool { return isActionPath(path, p.actionService) })
		has := slices.ContainsFunc(http.Paths, func(path networkingv1.HTTPIngressPath) bool { return isActionPath(path, name) })
		switch {
		case routes && !has:
			http.Paths = slices.Insert(http.Paths, 0, routePath(name))
		case !routes && has:
			http.Paths = slices.DeleteFunc(http.Paths, func(path networkingv1.HTTPIngressPath) bool { return isActionPath(path, name) })
		}
	}
}

// sortPaths puts the paths of managed routes first in each rule, in
// managedRoutes order, keeping the order of every other path: the load
// balancer evaluates an Ingress's paths in order, so header routes must
// come before the weighted path.
func (p plan) sortPaths(ing *networkingv1.Ingress) {
	rank := func(path networkingv1.HTTPIngressPath) int {
		for i, name := range p.managed {
			if isActionPath(path, name) {
				return i
			}
		}
		return len(p.managed)
	}
	for i := range ing.Spec.Rules {
		if http := ing.Spec.Rules[i].HTTP; http != nil {
			slices.SortStableFunc(http.Paths, func(a, b networkingv1.HTTPIngressPath) int { return rank(a) - rank(b) })
		}
	}
}

// isActionPath reports whether path takes its action from the annotation
// of name.
func isActionPath(path networkingv1.HTTPIngressPath, name string) bool {
	s := path.Backend.Service
	return s != nil && s.Name == name && s.Port.Name == UseAnnotation
}

// routePath is the path of a header route, as Argo writes it: every path
// of the host, action from the route's annotations.
func routePath(name string) networkingv1.HTTPIngressPath {
	pt := networkingv1.PathTypeImplementationSpecific
	return networkingv1.HTTPIngressPath{
		Path:     "/*",
		PathType: &pt,
		Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: name,
			Port: networkingv1.ServiceBackendPort{Name: UseAnnotation},
		}},
	}
}

// storedWeight is the canary's weight in the action annotation of ing.
func (p plan) storedWeight(ing *networkingv1.Ingress) (int32, error) {
	v, ok := ing.Annotations[p.actionKey]
	if !ok {
		return 0, fmt.Errorf("annotation %s is missing", p.actionKey)
	}
	var a action
	if err := json.Unmarshal([]byte(v), &a); err != nil {
		return 0, fmt.Errorf("annotation %s: %w", p.actionKey, err)
	}
	for _, tg := range a.ForwardConfig.TargetGroups {
		if tg.ServiceName == p.canaryService && tg.ServicePort == p.servicePort && tg.Weight != nil {
			return int32(*tg.Weight), nil
		}
	}
	return 0, fmt.Errorf("annotation %s has no weighted target group for Service %s port %s", p.actionKey, p.canaryService, p.servicePort)
}

// mustJSON encodes v, whose types cannot fail to encode.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("alb: encode %T: %v", v, err))
	}
	return string(b)
}

func reject(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{traffic.ErrRejected}, args...)...)
}
