package localproxy

import (
	"testing"

	"github.com/sluicehq/sluice/pkg/spec"
)

// An experiment template with a weight takes that share from the stable's,
// served by its own processes even though it has the stable's pod hash;
// its requests are counted with role experiment and the template's name.
// Back at weight 0, or without trafficRouting, it gets none.
func TestExperimentTemplateGetsItsWeightFromTheStable(t *testing.T) {
	e := newEnv(t)
	e.register(web, "s1", newApp(t, "stable-1"), newApp(t, "stable-2"))
	e.register(web, "c1", newApp(t, "canary-1"))
	e.registerExperiment(web, "s1", "web-c1-2-1", "baseline", newApp(t, "baseline-1"))
	if w := e.apply(web, 1, withBaseline(canaryRoute(10, true), 20)); w != 10 {
		t.Errorf("Apply returned weight %d, want the canary's 10", w)
	}
	const n = 2000
	got := e.load(e.url(web), n, 8)
	baseline, canary, stable := sumApps(got, "baseline-"), sumApps(got, "canary-"), sumApps(got, "stable-")
	if baseline+canary+stable != n {
		t.Fatalf("responses %v, want %d answered 200", got, n)
	}
	withinBinomial(t, "baseline share at weight 20", baseline, n, 0.20)
	withinBinomial(t, "canary share at weight 10", canary, n, 0.10)
	withinBinomial(t, "stable share at 100-10-20", stable, n, 0.70)

	if c := e.counter(web, spec.RoleExperiment, "baseline", "200"); int(c) != baseline {
		t.Errorf("experiment counter of template baseline %v, want %d", c, baseline)
	}
	if c := e.observations(web, spec.RoleExperiment, "baseline"); int(c) != baseline {
		t.Errorf("experiment duration observations %v, want %d", c, baseline)
	}
	if c := e.counter(web, spec.RoleStable, "", "200"); int(c) != stable {
		t.Errorf("stable counter %v, want %d: the baseline's requests must not count as the stable's", c, stable)
	}

	// The experiment ends: its weight goes back to 0.
	e.apply(web, 2, withBaseline(canaryRoute(10, true), 0))
	const m = 500
	if got := e.load(e.url(web), m, 8); sumApps(got, "baseline-") != 0 || sumApps(got, "stable-")+sumApps(got, "canary-") != m {
		t.Errorf("at weight 0 the baseline still served: %v", got)
	}
	// Without trafficRouting, weights are not honoured (Argo's rule): the
	// stable's and canary's processes share the requests in turn.
	e.apply(web, 3, withBaseline(canaryRoute(10, false), 20))
	if got := e.load(e.url(web), m, 8); sumApps(got, "baseline-") != 0 || sumApps(got, "stable-")+sumApps(got, "canary-") != m {
		t.Errorf("without trafficRouting the baseline served: %v", got)
	}
	if c := e.counter(web, spec.RoleExperiment, "baseline", "200"); int(c) != baseline {
		t.Errorf("experiment counter %v after its weight went to 0, want still %d", c, baseline)
	}
}
