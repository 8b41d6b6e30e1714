package localproxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
)

func TestStringMatch(t *testing.T) {
	for _, c := range []struct {
		name    string
		m       spec.StringMatch
		in      string
		want    bool
		wantErr string
	}{
		{"exact", spec.StringMatch{Exact: "v1"}, "v1", true, ""},
		{"exact is whole", spec.StringMatch{Exact: "v1"}, "v10", false, ""},
		{"prefix", spec.StringMatch{Prefix: "/api/"}, "/api/x", true, ""},
		{"prefix misses", spec.StringMatch{Prefix: "/api/"}, "/apix", false, ""},
		{"regex is anchored", spec.StringMatch{Regex: "v[0-9]"}, "v10", false, ""},
		{"regex", spec.StringMatch{Regex: "v[0-9]+"}, "v10", true, ""},
		{"regex alternation stays anchored", spec.StringMatch{Regex: "a|b"}, "ab", false, ""},
		{"none set", spec.StringMatch{}, "", false, "exactly one"},
		{"two set", spec.StringMatch{Exact: "a", Prefix: "a"}, "", false, "exactly one"},
		{"bad regex", spec.StringMatch{Regex: "("}, "", false, "regex"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fn, err := compileStringMatch(c.m)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fn(c.in); got != c.want {
				t.Errorf("match(%q) = %v", c.in, got)
			}
		})
	}
}

// fixed returns a roll that always gives v (clamped to n-1).
func fixed(v int) func(int) int { return func(n int) int { return min(v, n-1) } }

func TestDecide(t *testing.T) {
	ready := map[string][]string{"s1": {"127.0.0.1:1"}, "c1": {"127.0.0.1:2"}}
	onlyCanary := map[string][]string{"c1": {"127.0.0.1:2"}}
	onlyStable := map[string][]string{"s1": {"127.0.0.1:1"}}
	readyBaseline := map[string][]string{"s1": {"127.0.0.1:1"}, "c1": {"127.0.0.1:2"}, baselineEntry: {"127.0.0.1:3"}}
	header := []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}}
	emptyHeader := []spec.SetHeaderRoute{{Name: "removed"}}
	mirror := []spec.SetMirrorRoute{{Name: "m", Match: []spec.RouteMatch{{Path: &spec.StringMatch{Prefix: "/"}}}, Percentage: ptr(int32(30))}}
	for _, c := range []struct {
		name       string
		route      tasks.Route
		ready      map[string][]string
		roll       int
		header     string
		wantRole   spec.Role // "" means a 503
		wantMirror bool
	}{
		{"weight 20, roll 19 goes to canary", withRoutes(canaryRoute(20, true), nil, nil), ready, 19, "", spec.RoleCanary, false},
		{"weight 20, roll 20 goes to stable", withRoutes(canaryRoute(20, true), nil, nil), ready, 20, "", spec.RoleStable, false},
		{"weight 0 never goes to canary", withRoutes(canaryRoute(0, true), nil, nil), ready, 0, "", spec.RoleStable, false},
		{"weight 100 always goes to canary", withRoutes(canaryRoute(100, true), nil, nil), ready, 99, "", spec.RoleCanary, false},
		{"weight above the maximum is the maximum", withRoutes(canaryRoute(150, true), nil, nil), ready, 99, "", spec.RoleCanary, false},
		{"header route beats weight 0", withRoutes(canaryRoute(0, true), header, nil), ready, 99, "1", spec.RoleCanary, false},
		{"header route without match is inert", withRoutes(canaryRoute(0, true), emptyHeader, nil), ready, 99, "1", spec.RoleStable, false},
		{"header route without a canary process is a 503", withRoutes(canaryRoute(0, true), header, nil), onlyStable, 0, "1", "", false},
		{"no stable process, weight 0: 503", withRoutes(canaryRoute(0, true), nil, nil), onlyCanary, 99, "", "", false},
		{"no stable process, weight 1: canary", withRoutes(canaryRoute(1, true), nil, nil), onlyCanary, 99, "", spec.RoleCanary, false},
		{"no canary process, weight 100: 503", withRoutes(canaryRoute(100, true), nil, nil), onlyStable, 0, "", "", false},
		{"no canary process, weight 99: stable", withRoutes(canaryRoute(99, true), nil, nil), onlyStable, 0, "", spec.RoleStable, false},
		{"mirror at roll 29 of 30%", withRoutes(canaryRoute(0, true), nil, mirror), ready, 29, "", spec.RoleStable, true},
		{"no mirror at roll 30 of 30%", withRoutes(canaryRoute(0, true), nil, mirror), ready, 30, "", spec.RoleStable, false},
		{"no mirror of what the canary serves", withRoutes(canaryRoute(100, true), nil, mirror), ready, 0, "", spec.RoleCanary, false},
		{"no mirror without a canary process", withRoutes(canaryRoute(0, true), nil, mirror), onlyStable, 0, "", spec.RoleStable, false},
		{"same hash: all stable", withHashes(canaryRoute(100, true), "s1", "s1"), ready, 0, "", spec.RoleStable, false},
		{"basic, weight 0: only stable", canaryRoute(0, false), onlyCanary, 0, "", "", false},
		{"basic, weight 5: canary in turn", canaryRoute(5, false), onlyCanary, 0, "", spec.RoleCanary, false},
		// Canary 10, baseline 20: rolls 0-9 canary, 10-29 baseline, 30-99 stable.
		{"experiment: roll 9 goes to canary", withBaseline(canaryRoute(10, true), 20), readyBaseline, 9, "", spec.RoleCanary, false},
		{"experiment: roll 10 goes to the template", withBaseline(canaryRoute(10, true), 20), readyBaseline, 10, "", spec.RoleExperiment, false},
		{"experiment: roll 29 goes to the template", withBaseline(canaryRoute(10, true), 20), readyBaseline, 29, "", spec.RoleExperiment, false},
		{"experiment: roll 30 goes to stable", withBaseline(canaryRoute(10, true), 20), readyBaseline, 30, "", spec.RoleStable, false},
		{"experiment at weight 0: stable", withBaseline(canaryRoute(0, true), 0), readyBaseline, 0, "", spec.RoleStable, false},
		{"experiment without a process: stable takes it", withBaseline(canaryRoute(10, true), 20), ready, 10, "", spec.RoleStable, false},
		{"experiment without a process, stable without share: 503", withBaseline(canaryRoute(80, true), 20), ready, 80, "", "", false},
		{"canary without a process, experiment takes no canary request: 503", withBaseline(canaryRoute(80, true), 20), onlyStable, 0, "", "", false},
		{"experiment weights without trafficRouting: none", withBaseline(canaryRoute(0, false), 20), readyBaseline, 0, "", spec.RoleStable, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := compile(web, c.route)
			if err != nil {
				t.Fatal(err)
			}
			main, _ := p.tables(c.ready)
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			if c.header != "" {
				req.Header.Set("X-Beta", c.header)
			}
			d := main.decide(req, fixed(c.roll))
			switch {
			case c.wantRole == "" && d.ok:
				t.Errorf("went to %s, want a 503", d.role)
			case c.wantRole == "" && d.reason == "":
				t.Error("503 without a reason")
			case c.wantRole == "" && c.route.Experiments != nil && !strings.Contains(d.reason, "experiment"):
				t.Errorf("503 reason %q does not say the experiment took the share", d.reason)
			case c.wantRole != "" && (!d.ok || d.role != c.wantRole):
				t.Errorf("decision %+v, want %s", d, c.wantRole)
			}
			if d.mirror != c.wantMirror {
				t.Errorf("mirror %v, want %v", d.mirror, c.wantMirror)
			}
			if d.ok && d.backend.role != d.role {
				t.Errorf("backend of role %s labelled %s", d.backend.role, d.role)
			}
			if (d.role == spec.RoleExperiment) != (d.template == "baseline") || d.ok && d.backend.template != d.template {
				t.Errorf("decision %+v: template %q for role %s", d, d.template, d.role)
			}
		})
	}
}

func withRoutes(r tasks.Route, h []spec.SetHeaderRoute, m []spec.SetMirrorRoute) tasks.Route {
	r.HeaderRoutes, r.MirrorRoutes = h, m
	return r
}

func withHashes(r tasks.Route, stable, canary string) tasks.Route {
	r.StableHash, r.CanaryHash = stable, canary
	return r
}

func ptr[T any](v T) *T { return &v }

// baselineEntry is the endpoints entry of withBaseline's template: it has
// the stable's pod hash, as a specRef: stable template does.
const baselineEntry = "s1.web-c1-2-1.baseline"

// withBaseline gives r the experiment template baseline (the stable's pod
// hash, experiment web-c1-2-1) at weight w.
func withBaseline(r tasks.Route, w int32) tasks.Route {
	r.Experiments = []tasks.ExperimentRoute{{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "baseline"}, PodHash: "s1", Weight: w}}
	return r
}
