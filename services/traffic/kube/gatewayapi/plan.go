package gatewayapi

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

// Limits of the HTTPRoute API, checked before writing so that the route is
// rejected with a message instead of failing at the API server.
const (
	maxRules         = 16
	maxRuleMatches   = 64
	maxRouteMatches  = 128
	maxBackendWeight = 1_000_000
)

var (
	// ruleName is the form of an HTTPRoute rule name (SectionName).
	ruleName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// headerName is the form of an HTTP header name (RFC 7230 token).
	headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	// methods are the HTTP methods an HTTPRoute match accepts.
	methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

// plan is what one route asks of every HTTPRoute: it is checked once, then
// applied to each HTTPRoute by pure functions of the object.
type plan struct {
	ref       events.Ref
	route     tasks.Route
	routes    []spec.GatewayAPIHTTPRoute
	namespace string
	max       int64
	// managed are trafficRouting.managedRoutes' names, in precedence order.
	managed []string
	headers map[string]spec.SetHeaderRoute
	mirrors map[string]spec.SetMirrorRoute
}

// newPlan checks what route asks for that does not depend on the objects.
func newPlan(ref events.Ref, route tasks.Route) (*plan, error) {
	tr := route.TrafficRouting
	gw, err := tr.GatewayAPI()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", traffic.ErrRejected, err)
	}
	if gw == nil {
		return nil, fmt.Errorf("%w: the route has no trafficRouting.plugins[%q], and this traffic service runs the Gateway API router", traffic.ErrRejected, spec.GatewayAPIPlugin)
	}
	p := &plan{ref: ref, route: route, namespace: gw.Namespace, max: int64(tr.MaxWeight()),
		headers: map[string]spec.SetHeaderRoute{}, mirrors: map[string]spec.SetMirrorRoute{}}
	if p.namespace == "" {
		p.namespace = ref.Namespace
	}
	// httpRoute alone carries the header rules, as in Argo's plugin.
	if gw.HTTPRoute != "" {
		p.routes = append(p.routes, spec.GatewayAPIHTTPRoute{Name: gw.HTTPRoute, UseHeaderRoutes: true})
	}
	p.routes = append(p.routes, gw.HTTPRoutes...)
	if len(p.routes) == 0 {
		return nil, fmt.Errorf("%w: plugins[%q] names no httpRoute", traffic.ErrRejected, spec.GatewayAPIPlugin)
	}
	switch {
	case route.CanaryService == "" || route.StableService == "":
		return nil, fmt.Errorf("%w: canaryService and stableService are required with the Gateway API plugin", traffic.ErrRejected)
	case route.CanaryService == route.StableService:
		return nil, fmt.Errorf("%w: canaryService and stableService are both %q; the router cannot tell their backendRefs apart", traffic.ErrRejected, route.CanaryService)
	case p.max > maxBackendWeight:
		return nil, fmt.Errorf("%w: maxTrafficWeight %d exceeds the largest Gateway API backendRef weight, %d", traffic.ErrRejected, p.max, maxBackendWeight)
	case route.CanaryWeight < 0 || int64(route.CanaryWeight) > p.max:
		return nil, fmt.Errorf("%w: canary weight %d is not between 0 and %d", traffic.ErrRejected, route.CanaryWeight, p.max)
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
		if _, err := headerMatches(h.Match); err != nil {
			return nil, fmt.Errorf("%w: header route %q: %v", traffic.ErrRejected, h.Name, err)
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
			if _, err := overlay(rm); err != nil {
				return nil, fmt.Errorf("%w: mirror route %q: match %d: %v", traffic.ErrRejected, m.Name, i, err)
			}
		}
		p.mirrors[m.Name] = m
	}
	if len(p.headers)+len(p.mirrors) > 0 && !slices.ContainsFunc(p.routes, func(r spec.GatewayAPIHTTPRoute) bool { return r.UseHeaderRoutes }) {
		return nil, fmt.Errorf("%w: header and mirror routes need an HTTPRoute with useHeaderRoutes: true in plugins[%q].httpRoutes", traffic.ErrRejected, spec.GatewayAPIPlugin)
	}
	return p, nil
}

// own checks that a header or mirror rule may be written under name.
func (p *plan) own(name, kind string) error {
	switch _, h := p.headers[name]; {
	case !slices.Contains(p.managed, name):
		return fmt.Errorf("%w: %s route %q is not listed in trafficRouting.managedRoutes", traffic.ErrRejected, kind, name)
	case h || p.mirrors[name].Name != "":
		return fmt.Errorf("%w: two header or mirror routes are named %q; each needs its own managed route", traffic.ErrRejected, name)
	case len(name) > 253 || !ruleName.MatchString(name):
		return fmt.Errorf("%w: %s route %q names an HTTPRoute rule, so it must be lowercase letters, digits, '-' and '.' (a DNS subdomain); rename the managed route", traffic.ErrRejected, kind, name)
	}
	return nil
}

// role is what a backendRef stands for.
type role int

const (
	other role = iota
	canary
	stable
)

// roleOf tells which of the rollout's Services a backendRef names: a
// Service (no group, kind Service) of the rollout's namespace.
func (p *plan) roleOf(ref map[string]any) role {
	if g, _ := ref["group"].(string); g != "" {
		return other
	}
	if k, ok := ref["kind"].(string); ok && k != "Service" {
		return other
	}
	ns, _ := ref["namespace"].(string)
	if ns == "" {
		ns = p.namespace
	}
	if ns != p.ref.Namespace {
		return other
	}
	switch name, _ := ref["name"].(string); name {
	case p.route.CanaryService:
		return canary
	case p.route.StableService:
		return stable
	}
	return other
}

// roles reports which of the two Services a rule's backendRefs name.
func (p *plan) roles(rule map[string]any) (hasCanary, hasStable bool) {
	refs, _ := rule["backendRefs"].([]any)
	for _, b := range refs {
		bm, _ := b.(map[string]any)
		switch p.roleOf(bm) {
		case canary:
			hasCanary = true
		case stable:
			hasStable = true
		}
	}
	return hasCanary, hasStable
}

// ownRules marks the rules of an HTTPRoute the router wrote: those named
// in managedRoutes or in the managed-rules annotation (recorded). A rule
// without a name (its CRD drops rule names) is the router's when it sits
// where recorded says one of its rules is, no rule carries that rule's
// name, and it has the shape of a header or mirror rule.
func (p *plan) ownRules(rules []any, recorded []string) []bool {
	mine := map[string]bool{}
	named := map[string]bool{}
	for _, n := range append(slices.Clone(p.managed), recorded...) {
		mine[n] = true
	}
	for _, r := range rules {
		rm, _ := r.(map[string]any)
		if n, _ := rm["name"].(string); n != "" {
			named[n] = true
		}
	}
	owned := make([]bool, len(rules))
	for i, r := range rules {
		rm, _ := r.(map[string]any)
		if n, _ := rm["name"].(string); n != "" {
			owned[i] = mine[n]
			continue
		}
		owned[i] = i < len(recorded) && !named[recorded[i]] && p.shapedLikeMine(rm)
	}
	return owned
}

// shapedLikeMine reports whether a rule sends only to the rollout's
// Services and is a header rule (the canary alone) or a mirror rule (a
// RequestMirror filter to the canary).
func (p *plan) shapedLikeMine(rule map[string]any) bool {
	refs, _ := rule["backendRefs"].([]any)
	for _, b := range refs {
		bm, _ := b.(map[string]any)
		if p.roleOf(bm) == other {
			return false
		}
	}
	if len(refs) == 1 && p.roleOf(refs[0].(map[string]any)) == canary {
		return true
	}
	filters, _ := rule["filters"].([]any)
	for _, f := range filters {
		fm, _ := f.(map[string]any)
		mirror, _ := fm["requestMirror"].(map[string]any)
		ref, _ := mirror["backendRef"].(map[string]any)
		if fm["type"] == "RequestMirror" && ref != nil && p.roleOf(ref) == canary {
			return true
		}
	}
	return false
}

// recordedRules reads the managed-rules annotation.
func recordedRules(obj *unstructured.Unstructured) []string {
	v := obj.GetAnnotations()[AnnotationManagedRules]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// httpRoute returns the change route makes to an HTTPRoute; header and
// mirror rules only with useHeaderRoutes.
func (p *plan) httpRoute(useHeaderRoutes bool) func(*unstructured.Unstructured) error {
	return func(obj *unstructured.Unstructured) error {
		if err := p.claim(obj); err != nil {
			return err
		}
		rules, err := guard.ListAt(obj.Object, "spec", "rules")
		if err != nil {
			return err
		}
		owned := p.ownRules(rules, recordedRules(obj))
		var user []any
		var template map[string]any
		cw, sw := int64(p.route.CanaryWeight), p.max-int64(p.route.CanaryWeight)
		for i, r := range rules {
			if owned[i] {
				continue
			}
			rule, ok := r.(map[string]any)
			if !ok {
				return fmt.Errorf("%w: spec.rules has an entry that is not an object", traffic.ErrRejected)
			}
			user = append(user, rule)
			if c, s := p.roles(rule); !c || !s {
				continue // weights split a rule between the two only
			}
			for _, b := range rule["backendRefs"].([]any) {
				bm := b.(map[string]any)
				switch p.roleOf(bm) {
				case canary:
					bm["weight"] = cw
				case stable:
					bm["weight"] = sw
				}
			}
			if template == nil {
				template = rule
			}
		}
		if template == nil {
			return fmt.Errorf("%w: it has no rule with backendRefs to both Services %q and %q of namespace %s",
				traffic.ErrRejected, p.route.CanaryService, p.route.StableService, p.ref.Namespace)
		}
		var mine []any
		var names []string
		if useHeaderRoutes {
			for _, name := range p.managed {
				var rule map[string]any
				if h, ok := p.headers[name]; ok {
					rule = p.headerRule(template, h)
				} else if m, ok := p.mirrors[name]; ok {
					rule = p.mirrorRule(template, m)
				} else {
					continue
				}
				mine = append(mine, rule)
				names = append(names, name)
			}
		}
		all := append(mine, user...)
		if err := limits(all); err != nil {
			return err
		}
		if err := unstructured.SetNestedSlice(obj.Object, all, "spec", "rules"); err != nil {
			return err
		}
		ann := obj.GetAnnotations()
		if len(names) > 0 {
			ann[AnnotationManagedRules] = strings.Join(names, ",")
		} else {
			delete(ann, AnnotationManagedRules)
		}
		obj.SetAnnotations(ann)
		return nil
	}
}

// limits rejects rules the HTTPRoute API would refuse for their number.
func limits(rules []any) error {
	if len(rules) > maxRules {
		return fmt.Errorf("%w: with its header and mirror rules it would have %d rules, more than the %d an HTTPRoute allows; move routes to another HTTPRoute or use fewer managed routes", traffic.ErrRejected, len(rules), maxRules)
	}
	total := 0
	for _, r := range rules {
		matches, _ := r.(map[string]any)["matches"].([]any)
		n := max(len(matches), 1) // no matches means the default one
		if n > maxRuleMatches {
			return fmt.Errorf("%w: a rule would have %d matches, more than the %d an HTTPRoute rule allows; use fewer mirror matches", traffic.ErrRejected, n, maxRuleMatches)
		}
		total += n
	}
	if total > maxRouteMatches {
		return fmt.Errorf("%w: its rules would have %d matches, more than the %d an HTTPRoute allows; use fewer mirror matches", traffic.ErrRejected, total, maxRouteMatches)
	}
	return nil
}

// claim marks obj as managed by the rollout, refusing one another rollout
// manages.
func (p *plan) claim(obj *unstructured.Unstructured) error {
	ann := obj.GetAnnotations()
	if owner := ann[spec.AnnotationManagedBy]; owner != "" && owner != p.ref.Name {
		return fmt.Errorf("%w: it is managed by rollout %q (annotation %s); give rollout %q its own, or remove the annotation if %q no longer uses it",
			traffic.ErrRejected, owner, spec.AnnotationManagedBy, p.ref.Name, owner)
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[spec.AnnotationManagedBy] = p.ref.Name
	obj.SetAnnotations(ann)
	return nil
}

// canaryRef is a copy of the template's first backendRef to the canary,
// with the API server's defaults filled in so that rewriting it is
// idempotent.
func (p *plan) canaryRef(template map[string]any) map[string]any {
	for _, b := range template["backendRefs"].([]any) {
		bm := b.(map[string]any)
		if p.roleOf(bm) == canary {
			ref := copyMap(bm)
			if _, ok := ref["group"]; !ok {
				ref["group"] = ""
			}
			if _, ok := ref["kind"]; !ok {
				ref["kind"] = "Service"
			}
			return ref
		}
	}
	return nil
}

// headerRule sends the template's requests that also carry h's headers to
// the canary alone.
func (p *plan) headerRule(template map[string]any, h spec.SetHeaderRoute) map[string]any {
	rule := copyMap(template)
	rule["name"] = h.Name
	ref := p.canaryRef(template)
	ref["weight"] = int64(1)
	rule["backendRefs"] = []any{ref}
	headers, _ := headerMatches(h.Match)
	var matches []any
	for _, m := range templateMatches(template) {
		addHeaders(m, headers)
		matches = append(matches, m)
	}
	rule["matches"] = matches
	return rule
}

// mirrorRule routes the template's requests that also match m as the
// template does, with its weights, and mirrors m's percentage of them to
// the canary.
func (p *plan) mirrorRule(template map[string]any, m spec.SetMirrorRoute) map[string]any {
	rule := copyMap(template)
	rule["name"] = m.Name
	var matches []any
	for _, tm := range templateMatches(template) {
		for _, rm := range m.Match {
			o, _ := overlay(rm)
			match := copyMap(tm)
			if o.method != "" {
				match["method"] = o.method
			}
			if o.path != nil {
				match["path"] = o.path
			}
			addHeaders(match, o.headers)
			matches = append(matches, match)
		}
	}
	rule["matches"] = matches
	ref := p.canaryRef(template)
	backend := map[string]any{}
	for _, k := range []string{"group", "kind", "name", "namespace", "port"} {
		if v, ok := ref[k]; ok {
			backend[k] = v
		}
	}
	mirror := map[string]any{"backendRef": backend}
	if m.Percentage != nil {
		mirror["percent"] = int64(*m.Percentage)
	}
	filters, _ := rule["filters"].([]any)
	rule["filters"] = append(filters, map[string]any{"type": "RequestMirror", "requestMirror": mirror})
	return rule
}

// templateMatches copies the template's matches, or the default match,
// with the API server's defaults filled in.
func templateMatches(template map[string]any) []map[string]any {
	matches, _ := template["matches"].([]any)
	if len(matches) == 0 {
		matches = []any{map[string]any{}}
	}
	out := make([]map[string]any, 0, len(matches))
	for _, m := range matches {
		match := copyMap(m.(map[string]any))
		path, _ := match["path"].(map[string]any)
		if path == nil {
			path = map[string]any{}
			match["path"] = path
		}
		if _, ok := path["type"]; !ok {
			path["type"] = "PathPrefix"
		}
		if _, ok := path["value"]; !ok {
			path["value"] = "/"
		}
		for _, field := range []string{"headers", "queryParams"} {
			list, _ := match[field].([]any)
			for _, e := range list {
				if em, ok := e.(map[string]any); ok {
					if _, ok := em["type"]; !ok {
						em["type"] = "Exact"
					}
				}
			}
		}
		out = append(out, match)
	}
	return out
}

// addHeaders adds header matches to a match's own; a header both match
// keeps the added match, as a header may be matched once.
func addHeaders(match map[string]any, added []any) {
	if len(added) == 0 {
		return
	}
	names := map[string]bool{}
	for _, a := range added {
		names[strings.ToLower(a.(map[string]any)["name"].(string))] = true
	}
	var out []any
	own, _ := match["headers"].([]any)
	for _, e := range own {
		em, _ := e.(map[string]any)
		if n, _ := em["name"].(string); !names[strings.ToLower(n)] {
			out = append(out, e)
		}
	}
	match["headers"] = append(out, added...)
}

// headerMatches converts header routing matches to HTTPHeaderMatches.
func headerMatches(ms []spec.HeaderRoutingMatch) ([]any, error) {
	seen := map[string]bool{}
	out := make([]any, 0, len(ms))
	for _, m := range ms {
		if m.HeaderValue == nil {
			return nil, fmt.Errorf("header %q has no headerValue", m.HeaderName)
		}
		h, err := headerMatch(m.HeaderName, *m.HeaderValue)
		if err != nil {
			return nil, err
		}
		if seen[strings.ToLower(m.HeaderName)] {
			return nil, fmt.Errorf("header %q is matched twice; a request must match every header, so keep one", m.HeaderName)
		}
		seen[strings.ToLower(m.HeaderName)] = true
		out = append(out, h)
	}
	return out, nil
}

// headerMatch is an HTTPHeaderMatch. Gateway API has no prefix match, so a
// prefix becomes an anchored regular expression.
func headerMatch(name string, v spec.StringMatch) (map[string]any, error) {
	if !headerName.MatchString(name) {
		return nil, fmt.Errorf("%q is not an HTTP header name", name)
	}
	typ, value, err := oneOf(v)
	if err != nil {
		return nil, fmt.Errorf("header %q: %v", name, err)
	}
	switch typ {
	case "exact":
		return map[string]any{"name": name, "type": "Exact", "value": value}, nil
	case "prefix":
		value = "^" + regexp.QuoteMeta(value) + ".*"
	}
	return map[string]any{"name": name, "type": "RegularExpression", "value": value}, nil
}

// oneOf returns the one field a StringMatch sets.
func oneOf(v spec.StringMatch) (typ, value string, err error) {
	set := 0
	for _, f := range []struct{ typ, value string }{{"exact", v.Exact}, {"prefix", v.Prefix}, {"regex", v.Regex}} {
		if f.value != "" {
			typ, value = f.typ, f.value
			set++
		}
	}
	if set != 1 {
		return "", "", fmt.Errorf("needs exactly one of exact, prefix and regex")
	}
	return typ, value, nil
}

// mirrorOverlay is what a mirror route's match lays over a template match.
type mirrorOverlay struct {
	method  string
	path    map[string]any
	headers []any
}

// overlay converts a mirror route's match to HTTPRouteMatch fields.
func overlay(rm spec.RouteMatch) (mirrorOverlay, error) {
	var o mirrorOverlay
	if rm.Method == nil && rm.Path == nil && len(rm.Headers) == 0 {
		return o, fmt.Errorf("it is empty and would mirror every request; give it a method, path or headers")
	}
	if rm.Method != nil {
		typ, value, err := oneOf(*rm.Method)
		if err != nil {
			return o, fmt.Errorf("method %v", err)
		}
		if typ != "exact" || !slices.Contains(methods, value) {
			return o, fmt.Errorf("an HTTPRoute matches one method exactly (%s)", strings.Join(methods, ", "))
		}
		o.method = value
	}
	if rm.Path != nil {
		typ, value, err := oneOf(*rm.Path)
		if err != nil {
			return o, fmt.Errorf("path %v", err)
		}
		if typ != "regex" && !strings.HasPrefix(value, "/") {
			return o, fmt.Errorf("path %q must start with /", value)
		}
		// Gateway API's PathPrefix matches whole path segments: /api
		// matches /api and /api/x, not /apix.
		o.path = map[string]any{"type": map[string]string{"exact": "Exact", "prefix": "PathPrefix", "regex": "RegularExpression"}[typ], "value": value}
	}
	names := make([]string, 0, len(rm.Headers))
	for name := range rm.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	var ms []spec.HeaderRoutingMatch
	for _, name := range names {
		v := rm.Headers[name]
		ms = append(ms, spec.HeaderRoutingMatch{HeaderName: name, HeaderValue: &v})
	}
	headers, err := headerMatches(ms)
	if err != nil {
		return o, err
	}
	o.headers = headers
	return o, nil
}

func copyMap(m map[string]any) map[string]any {
	return runtime.DeepCopyJSONValue(m).(map[string]any)
}

// weightIn reads the canary weight in effect in a stored HTTPRoute, in
// units of max: the canary's share of the weights of its first weighted
// rule (a backendRef without weight weighs 1).
func (p *plan) weightIn(obj *unstructured.Unstructured) (int64, error) {
	rules, err := guard.ListAt(obj.Object, "spec", "rules")
	if err != nil {
		return 0, err
	}
	owned := p.ownRules(rules, recordedRules(obj))
	for i, r := range rules {
		rule, _ := r.(map[string]any)
		if owned[i] {
			continue
		}
		if c, s := p.roles(rule); !c || !s {
			continue
		}
		var cw, sw int64
		for _, b := range rule["backendRefs"].([]any) {
			bm := b.(map[string]any)
			w := int64(1)
			if v, ok := bm["weight"]; ok {
				w, _ = v.(int64)
			}
			switch p.roleOf(bm) {
			case canary:
				cw += w
			case stable:
				sw += w
			}
		}
		if cw+sw == 0 {
			return 0, nil
		}
		return (2*cw*p.max + cw + sw) / (2 * (cw + sw)), nil
	}
	return 0, fmt.Errorf("no rule has backendRefs to both %q and %q", p.route.CanaryService, p.route.StableService)
}
