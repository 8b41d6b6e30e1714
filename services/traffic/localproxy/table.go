package localproxy

import (
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// mode is how a proxy picks a revision for a request.
type mode int

const (
	// modeBasic is a canary without trafficRouting: every ready process of
	// the stable and the canary in turn, as a Kubernetes Service does.
	modeBasic mode = iota
	// modeWeighted is a canary with trafficRouting: exact weights, header
	// and mirror routes.
	modeWeighted
	// modeSingle serves one revision: a blue/green active or preview proxy.
	modeSingle
)

// plan is a route compiled for one rollout, apart from the endpoints: what
// each of its proxies serves. Apply builds it once; tables are built from
// it whenever the endpoints change.
type plan struct {
	ref     events.Ref
	blue    bool   // blue/green
	listen  string // local.sluice.io/listen
	preview string // local.sluice.io/preview-listen; blue/green only, may be empty

	// Canary.
	weighted               bool
	stableHash, canaryHash string
	weight, max            int32 // weight is clamped to [0, max]; 0 without a canary
	headers                []headerRoute
	mirrors                []mirrorRoute
	// experiments are the experiment templates with a share, taken from
	// the stable's (trafficRouting only); expWeight is their sum.
	experiments []experimentShare
	expWeight   int32

	// Blue/green.
	activeHash, previewHash string
}

// experimentShare is one experiment template's share of a weighted
// canary's traffic.
type experimentShare struct {
	template string
	// entry is the template's endpoints entry name (endpoints.EntryName).
	entry  string
	hash   string
	weight int32
}

// stableWeight is the stable's share: what the canary and the experiment
// templates leave.
func (p *plan) stableWeight() int32 { return p.max - p.weight - p.expWeight }

// hasCanary reports whether the canary is a revision apart from the stable.
func (p *plan) hasCanary() bool { return p.canaryHash != "" && p.canaryHash != p.stableHash }

// CheckRoute returns why the local proxy would refuse route for ref (a
// missing or malformed local.sluice.io/listen annotation, equal active and
// preview addresses, a header route it cannot match), or nil. It does not
// listen: whether an address is free is known only when the proxy opens
// it. `sluice lint --platform local` calls it.
func CheckRoute(ref events.Ref, route tasks.Route) error {
	_, err := compile(ref, route)
	return err
}

// compile checks route and turns it into a plan. Its errors say what the
// user must change.
func compile(ref events.Ref, route tasks.Route) (*plan, error) {
	p := &plan{ref: ref}
	switch route.Strategy {
	case spec.StrategyCanary, "":
	case spec.StrategyBlueGreen:
		p.blue = true
	default:
		return nil, fmt.Errorf("unknown strategy %q: want %s or %s", route.Strategy, spec.StrategyCanary, spec.StrategyBlueGreen)
	}
	p.listen = route.Annotations[AnnotationListen]
	if p.listen == "" {
		return nil, fmt.Errorf("the local proxy needs a listen address: add the annotation %s: \"127.0.0.1:8080\" (any free host:port) to the Rollout's metadata.annotations", AnnotationListen)
	}
	if err := checkAddr(AnnotationListen, p.listen); err != nil {
		return nil, err
	}
	if p.blue {
		p.activeHash, p.previewHash = route.ActiveHash, route.PreviewHash
		if p.activeHash == "" {
			return nil, fmt.Errorf("blue/green route without an active pod hash")
		}
		if p.preview = route.Annotations[AnnotationPreviewListen]; p.preview != "" {
			if err := checkAddr(AnnotationPreviewListen, p.preview); err != nil {
				return nil, err
			}
			if p.preview == p.listen && !anyPort(p.listen) {
				return nil, fmt.Errorf("annotations %s and %s are both %q: the active and preview proxies need different addresses", AnnotationListen, AnnotationPreviewListen, p.listen)
			}
		}
		return p, nil
	}

	p.stableHash, p.canaryHash = route.StableHash, route.CanaryHash
	if p.stableHash == "" && p.canaryHash == "" {
		return nil, fmt.Errorf("canary route without a stable or canary pod hash")
	}
	if p.stableHash == "" {
		// A first revision has nothing to be a canary of.
		p.stableHash = p.canaryHash
	}
	p.weighted = route.TrafficRouting != nil
	p.max = route.TrafficRouting.MaxWeight()
	if p.max < 1 {
		return nil, fmt.Errorf("maxTrafficWeight %d must be at least 1", p.max)
	}
	if p.hasCanary() {
		p.weight = min(max(route.CanaryWeight, 0), p.max)
	}
	if !p.weighted {
		return p, nil
	}
	for i, h := range route.HeaderRoutes {
		hr, err := compileHeaderRoute(i, h)
		if err != nil {
			return nil, err
		}
		p.headers = append(p.headers, hr)
	}
	for i, m := range route.MirrorRoutes {
		mr, err := compileMirrorRoute(i, m)
		if err != nil {
			return nil, err
		}
		p.mirrors = append(p.mirrors, mr)
	}
	return p, compileExperiments(p, route.Experiments)
}

// compileExperiments adds the experiment templates with a weight to p, a
// weighted canary's plan. Without trafficRouting they get nothing, as
// behind a Kubernetes Service without a router (Argo's rule).
func compileExperiments(p *plan, exps []tasks.ExperimentRoute) error {
	seen := map[string]bool{}
	for i, x := range exps {
		what := fmt.Sprintf("experiments[%d] (template %q)", i, x.Pods.Template)
		switch {
		case x.Weight < 0:
			return fmt.Errorf("%s: weight %d must not be negative", what, x.Weight)
		case x.PodHash == "" || x.Pods.Name == "" || x.Pods.Template == "":
			return fmt.Errorf("%s: pod hash, experiment name and template name are required", what)
		case seen[x.Pods.ReplicaSetName()]:
			return fmt.Errorf("%s: listed twice", what)
		}
		seen[x.Pods.ReplicaSetName()] = true
		if x.Weight == 0 {
			continue
		}
		p.experiments = append(p.experiments, experimentShare{
			template: x.Pods.Template, entry: endpoints.EntryName(x.PodHash, x.Pods.Name, x.Pods.Template),
			hash: x.PodHash, weight: x.Weight,
		})
		p.expWeight += x.Weight
	}
	if p.stableWeight() < 0 {
		return fmt.Errorf("canary weight %d and experiment weights %d add up to more than maxTrafficWeight %d", p.weight, p.expWeight, p.max)
	}
	return nil
}

// weightInEffect is the canary weight Apply reports: the route's weight
// with traffic routing; without it, the canary's share of the ready
// processes, which is what a Service-like balance gives it.
func (p *plan) weightInEffect(ready map[string][]string) int32 {
	switch {
	case p.blue || p.weight == 0:
		return 0
	case p.weighted:
		return p.weight
	}
	canary := len(ready[p.canaryHash])
	total := canary + len(ready[p.stableHash])
	if total == 0 {
		return 0
	}
	return int32(canary) * p.max / int32(total)
}

// tables builds the routing tables of the plan's proxies from the ready
// processes by pod hash. preview is nil unless a blue/green preview proxy
// is configured.
func (p *plan) tables(ready map[string][]string) (main, preview *table) {
	if p.blue {
		main = &table{ref: p.ref, mode: modeSingle, role: spec.RoleActive, hash: p.activeHash, main: newPool(spec.RoleActive, ready[p.activeHash])}
		if p.preview != "" {
			preview = &table{ref: p.ref, mode: modeSingle, role: spec.RolePreview, hash: p.previewHash, main: newPool(spec.RolePreview, ready[p.previewHash])}
		}
		return main, preview
	}
	t := &table{ref: p.ref, mode: modeWeighted, role: spec.RoleStable, hash: p.stableHash, plan: p}
	if !p.weighted {
		t.mode = modeBasic
		t.main = newPool(spec.RoleStable, ready[p.stableHash])
		if p.weight > 0 {
			t.main.add(spec.RoleCanary, ready[p.canaryHash])
		}
		return t, nil
	}
	t.main = newPool(spec.RoleStable, ready[p.stableHash])
	t.canary = &pool{}
	if p.hasCanary() {
		t.canary.add(spec.RoleCanary, ready[p.canaryHash])
	}
	for _, x := range p.experiments {
		xp := newPool(spec.RoleExperiment, ready[x.entry])
		for i := range xp.backends {
			xp.backends[i].template = x.template
		}
		t.experiments = append(t.experiments, xp)
	}
	return t, nil
}

// backend is one ready process.
type backend struct {
	url  *url.URL
	role spec.Role
	// template is the experiment template the process belongs to (role
	// experiment), for the metrics' template label.
	template string
	// from is the pool it was picked from, for another try when it
	// refuses the connection (see redial).
	from *pool
}

// pool is a set of ready processes taken in turn.
type pool struct {
	backends []backend
	next     atomic.Uint64
}

// newPool makes a pool of the processes at addrs, which serve role.
func newPool(role spec.Role, addrs []string) *pool {
	p := &pool{}
	p.add(role, addrs)
	return p
}

// add adds the processes at addrs, which serve role. Only while building.
func (p *pool) add(role spec.Role, addrs []string) {
	for _, a := range addrs {
		p.backends = append(p.backends, backend{url: &url.URL{Scheme: "http", Host: a}, role: role, from: p})
	}
}

// pick returns the next process, round robin.
func (p *pool) pick() (backend, bool) {
	if p == nil || len(p.backends) == 0 {
		return backend{}, false
	}
	n := p.next.Add(1) - 1
	return p.backends[n%uint64(len(p.backends))], true
}

// other returns a process of the pool not in tried.
func (p *pool) other(tried map[string]bool) (backend, bool) {
	for _, b := range p.backends {
		if !tried[b.url.Host] {
			return b, true
		}
	}
	return backend{}, false
}

func (p *pool) empty() bool { return p == nil || len(p.backends) == 0 }

// table is the routing state of one proxy at one moment. It never changes
// once built: a change of route or endpoints builds a new table and swaps
// it in, and a request keeps the table it started with.
type table struct {
	ref  events.Ref
	mode mode
	// role and hash are what modeSingle serves; the stable otherwise.
	role   spec.Role
	hash   string
	main   *pool // modeSingle: the revision; modeBasic: every process; modeWeighted: the stable
	canary *pool // modeWeighted only
	// experiments are the pools of plan.experiments, in order
	// (modeWeighted only).
	experiments []*pool
	plan        *plan // canary modes
}

// decision is where one request goes.
type decision struct {
	// role is the role of the backend, or of the revision the request was
	// meant for when there is no backend.
	role spec.Role
	// template is the experiment template the request was meant for
	// (role experiment).
	template string
	backend  backend
	ok       bool
	// reason says why there is no backend (a 503).
	reason string
	// mirror asks for a copy of the request to go to mirrorTo.
	mirror   bool
	mirrorTo backend
}

// decide picks the backend for r. roll(n) returns a uniform random integer
// in [0, n); tests pass a fixed one.
func (t *table) decide(r *http.Request, roll func(int) int) decision {
	switch t.mode {
	case modeSingle:
		if b, ok := t.main.pick(); ok {
			return decision{role: t.role, backend: b, ok: true}
		}
		return decision{role: t.role, reason: fmt.Sprintf("%s has no ready %s process (pod hash %s)", t.ref, t.role, t.hash)}
	case modeBasic:
		if b, ok := t.main.pick(); ok {
			return decision{role: b.role, backend: b, ok: true}
		}
		d := decision{role: spec.RoleStable, reason: fmt.Sprintf("%s has no ready stable process (pod hash %s)", t.ref, t.plan.stableHash)}
		if t.plan.hasCanary() {
			if t.plan.weight == 0 {
				d.reason += fmt.Sprintf(", and its canary (pod hash %s) has weight 0", t.plan.canaryHash)
			} else {
				d.reason += fmt.Sprintf(" nor ready canary process (pod hash %s)", t.plan.canaryHash)
			}
		}
		return d
	}
	return t.decideWeighted(r, roll)
}

func (t *table) decideWeighted(r *http.Request, roll func(int) int) decision {
	p := t.plan
	if p.hasCanary() {
		for _, h := range p.headers {
			if !h.matches(r) {
				continue
			}
			if b, ok := t.canary.pick(); ok {
				return decision{role: spec.RoleCanary, backend: b, ok: true}
			}
			return decision{role: spec.RoleCanary, reason: fmt.Sprintf("header route %q sends this request to the canary of %s, which has no ready process (pod hash %s)", h.name, t.ref, p.canaryHash)}
		}
	}
	// One draw in [0, max): the canary's weight first, then each
	// experiment template's, the stable the rest.
	toCanary, exp := false, -1
	switch {
	case p.weight >= p.max:
		toCanary = true
	case p.weight > 0 || p.expWeight > 0:
		n := int32(roll(int(p.max)))
		if toCanary = n < p.weight; !toCanary {
			n -= p.weight
			for i, x := range p.experiments {
				if n < x.weight {
					exp = i
					break
				}
				n -= x.weight
			}
		}
	}
	if exp >= 0 {
		return t.decideExperiment(exp)
	}
	first, second := t.main, t.canary
	firstRole, secondRole := spec.RoleStable, spec.RoleCanary
	firstHash, secondHash := p.stableHash, p.canaryHash
	secondWeight := p.weight
	if toCanary {
		first, second = second, first
		firstRole, secondRole = secondRole, firstRole
		firstHash, secondHash = secondHash, firstHash
		secondWeight = p.stableWeight()
	}
	d := decision{role: firstRole}
	if b, ok := first.pick(); ok {
		d.backend, d.ok = b, true
	} else if secondWeight > 0 {
		if b, ok := second.pick(); ok {
			d.role, d.backend, d.ok = secondRole, b, true
		}
	}
	if !d.ok {
		d.reason = fmt.Sprintf("%s has no ready %s process (pod hash %s)", t.ref, firstRole, firstHash)
		if secondWeight == 0 {
			d.reason += fmt.Sprintf(", and the %s may not take its requests at canary weight %d of %d", secondRole, p.weight, p.max)
			if p.expWeight > 0 {
				d.reason += fmt.Sprintf(" with experiment weights %d", p.expWeight)
			}
		} else {
			d.reason += fmt.Sprintf(" nor ready %s process (pod hash %s)", secondRole, secondHash)
		}
		return d
	}
	// A request the canary serves already is not copied to it again.
	if d.role == spec.RoleStable && p.hasCanary() && !t.canary.empty() {
		for _, m := range p.mirrors {
			if !m.match(r) {
				continue
			}
			if m.percent >= 100 || roll(100) < m.percent {
				d.mirrorTo, _ = t.canary.pick()
				d.mirror = true
			}
			break
		}
	}
	return d
}

// decideExperiment serves a request drawn for experiment template i: by
// its processes, or, when it has none ready, by the stable's if the stable
// has a share (as the canary's requests go), else not at all.
func (t *table) decideExperiment(i int) decision {
	x := t.plan.experiments[i]
	if b, ok := t.experiments[i].pick(); ok {
		return decision{role: spec.RoleExperiment, template: x.template, backend: b, ok: true}
	}
	if t.plan.stableWeight() > 0 {
		if b, ok := t.main.pick(); ok {
			return decision{role: spec.RoleStable, backend: b, ok: true}
		}
	}
	return decision{role: spec.RoleExperiment, template: x.template, reason: fmt.Sprintf(
		"%s has no ready process of experiment template %q (pod hash %s) and its stable (pod hash %s) no ready process or no share to take its requests",
		t.ref, x.template, x.hash, t.plan.stableHash)}
}
