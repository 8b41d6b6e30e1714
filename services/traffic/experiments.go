package traffic

import (
	"fmt"

	"github.com/sluicehq/sluice/internal/tasks"
)

// StableWeight is the stable's share of a canary route with experiment
// weights, as Argo computes it: max - canary weight - the experiment
// templates' weights (route.Experiments). A route whose weights do not
// fit (a weight below 0, or the canary's and the templates' above max) is
// rejected rather than clamped, since the router would otherwise send
// traffic other than what the rollout asks for.
func StableWeight(route tasks.Route, max int32) (int32, error) {
	if route.CanaryWeight < 0 || route.CanaryWeight > max {
		return 0, fmt.Errorf("%w: canary weight %d is not between 0 and %d", ErrRejected, route.CanaryWeight, max)
	}
	stable := max - route.CanaryWeight
	for _, e := range route.Experiments {
		if e.Weight < 0 {
			return 0, fmt.Errorf("%w: experiment %s template %s: weight %d is below 0", ErrRejected, e.Pods.Name, e.Pods.Template, e.Weight)
		}
		stable -= e.Weight
	}
	if stable < 0 {
		return 0, fmt.Errorf("%w: the canary weight %d and the experiment templates' weights add up to %d, above %d", ErrRejected, route.CanaryWeight, max-stable, max)
	}
	return stable, nil
}

// ExperimentServices checks that each experiment template of route has a
// Service of its own to send its weight to, for routers that route by
// Service: one named, and neither the canary's nor the stable's.
func ExperimentServices(route tasks.Route) error {
	seen := map[string]string{}
	for _, e := range route.Experiments {
		svc, what := e.Pods.Service, fmt.Sprintf("experiment %s template %s", e.Pods.Name, e.Pods.Template)
		switch {
		case svc == "":
			return fmt.Errorf("%w: %s has a weight and no Service to send it to", ErrRejected, what)
		case svc == route.CanaryService || svc == route.StableService:
			return fmt.Errorf("%w: %s: its Service %q is the rollout's canary or stable Service; give the template a Service of its own", ErrRejected, what, svc)
		case seen[svc] != "":
			return fmt.Errorf("%w: %s and template %s share Service %q", ErrRejected, what, seen[svc], svc)
		}
		seen[svc] = e.Pods.Template
	}
	return nil
}
