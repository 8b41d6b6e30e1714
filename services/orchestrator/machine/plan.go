package machine

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/pkg/spec"
)

// Step actions (events.StepInfo.Action).
const (
	actionSetWeight      = "setWeight"
	actionPause          = "pause"
	actionAnalysis       = "analysis"
	actionSetCanaryScale = "setCanaryScale"
	actionSetHeaderRoute = "setHeaderRoute"
	actionSetMirrorRoute = "setMirrorRoute"
	actionExperiment     = "experiment"
	actionUnsupported    = "unsupported"
	// Blue/green stages.
	actionPreview               = "preview"
	actionPromote               = "promote"
	actionPostPromotionAnalysis = "postPromotionAnalysis"
)

// Analysis run purposes (tasks.Analysis.Purpose).
const (
	purposeStep          = "step"
	purposeBackground    = "background"
	purposePrePromotion  = "prePromotion"
	purposePostPromotion = "postPromotion"
	purposeExperiment    = "experiment"
)

// Pause reasons, as Argo Rollouts names them.
const (
	PauseCanaryStep   = "CanaryPauseStep"
	PauseBlueGreen    = "BlueGreenPause"
	PauseInconclusive = "InconclusiveAnalysisRun"
	// PauseInconclusiveExperiment is Argo's pause for an experiment step
	// whose experiment was inconclusive.
	PauseInconclusiveExperiment = "InconclusiveExperiment"
)

// planStep is one step of a rollout's plan.
type planStep struct {
	Action string
	Canary *spec.CanaryStep
}

func (s *State) canary() *spec.CanaryStrategy {
	if s.Spec == nil {
		return nil
	}
	return s.Spec.Spec.Strategy.Canary
}

func (s *State) blueGreen() *spec.BlueGreenStrategy {
	if s.Spec == nil || s.Spec.Spec.Strategy.Canary != nil {
		return nil
	}
	return s.Spec.Spec.Strategy.BlueGreen
}

func (s *State) strategy() spec.Strategy {
	if s.Spec == nil {
		return ""
	}
	return s.Spec.Spec.Strategy.Name()
}

// replicas is spec.replicas, 1 when unset.
func (s *State) replicas() int32 {
	if s.Spec == nil || s.Spec.Spec.Replicas == nil {
		return spec.DefaultReplicas
	}
	if r := *s.Spec.Spec.Replicas; r > 0 {
		return r
	}
	return 0
}

// inProgress reports whether an update (to PodHash, from StableHash) is
// under way.
func (s *State) inProgress() bool { return s.PodHash != "" && s.PodHash != s.StableHash }

// routed reports whether a canary splits traffic with a router.
func (s *State) routed() bool {
	c := s.canary()
	return c != nil && c.TrafficRouting != nil
}

// maxWeight is the denominator of canary weights: maxTrafficWeight with
// traffic routing, 100 otherwise.
func (s *State) maxWeight() int32 {
	if c := s.canary(); c != nil && c.TrafficRouting != nil {
		if w := c.TrafficRouting.MaxWeight(); w > 0 {
			return w
		}
	}
	return 100
}

// planLen is the number of steps of the plan.
func (s *State) planLen() int32 {
	if c := s.canary(); c != nil {
		return int32(len(c.Steps))
	}
	if b := s.blueGreen(); b != nil {
		if b.PostPromotionAnalysis != nil {
			return 3
		}
		return 2
	}
	return 0
}

// planStep returns step i of the plan.
func (s *State) planStep(i int32) (planStep, bool) {
	if i < 0 || i >= s.planLen() {
		return planStep{}, false
	}
	if c := s.canary(); c != nil {
		st := &c.Steps[i]
		return planStep{Action: canaryAction(st), Canary: st}, true
	}
	return planStep{Action: []string{actionPreview, actionPromote, actionPostPromotionAnalysis}[i]}, true
}

func canaryAction(st *spec.CanaryStep) string {
	switch {
	case st.SetWeight != nil:
		return actionSetWeight
	case st.Pause != nil:
		return actionPause
	case st.Analysis != nil:
		return actionAnalysis
	case st.SetCanaryScale != nil:
		return actionSetCanaryScale
	case st.SetHeaderRoute != nil:
		return actionSetHeaderRoute
	case st.SetMirrorRoute != nil:
		return actionSetMirrorRoute
	case st.Experiment != nil:
		return actionExperiment
	}
	return actionUnsupported
}

// detail renders a step for people, e.g. "setWeight 20".
func (p planStep) detail() string {
	st := p.Canary
	if st == nil {
		return p.Action
	}
	switch {
	case st.SetWeight != nil:
		return fmt.Sprintf("setWeight %d", *st.SetWeight)
	case st.Pause != nil:
		if st.Pause.Duration == nil {
			return "pause until promoted"
		}
		d, err := st.Pause.Length()
		if err != nil {
			return "pause " + st.Pause.Duration.String()
		}
		return "pause " + d.String()
	case st.Analysis != nil:
		names := make([]string, 0, len(st.Analysis.Templates))
		for _, t := range st.Analysis.Templates {
			names = append(names, t.TemplateName)
		}
		return "analysis " + strings.Join(names, ", ")
	case st.SetCanaryScale != nil:
		sc := st.SetCanaryScale
		switch {
		case sc.Replicas != nil:
			return fmt.Sprintf("setCanaryScale replicas %d", *sc.Replicas)
		case sc.Weight != nil:
			return fmt.Sprintf("setCanaryScale weight %d", *sc.Weight)
		}
		return "setCanaryScale matchTrafficWeight"
	case st.SetHeaderRoute != nil:
		return "setHeaderRoute " + st.SetHeaderRoute.Name
	case st.SetMirrorRoute != nil:
		return "setMirrorRoute " + st.SetMirrorRoute.Name
	case st.Experiment != nil:
		return experimentDetail(st.Experiment)
	}
	return "unsupported step"
}

// setWeight is the weight the canary steps ask for at step i: that of the
// last setWeight step at or before i, 0 when there is none.
func (s *State) setWeight(i int32) int32 {
	c := s.canary()
	if c == nil {
		return 0
	}
	if i >= int32(len(c.Steps)) {
		i = int32(len(c.Steps)) - 1
	}
	for ; i >= 0; i-- {
		if w := c.Steps[i].SetWeight; w != nil {
			return *w
		}
	}
	return 0
}

// canaryScale is the setCanaryScale in force at step i: that of the last
// setCanaryScale step at or before i, unless it is matchTrafficWeight.
// setCanaryScale needs traffic routing.
func (s *State) canaryScale(i int32) *spec.SetCanaryScale {
	c := s.canary()
	if c == nil || c.TrafficRouting == nil || i >= int32(len(c.Steps)) {
		return nil
	}
	for ; i >= 0; i-- {
		if sc := c.Steps[i].SetCanaryScale; sc != nil {
			if sc.MatchTrafficWeight {
				return nil
			}
			return sc
		}
	}
	return nil
}

// managedRoutes returns the header and mirror routes set by the steps up
// to and including step i, ordered as trafficRouting.managedRoutes lists
// them. A step without a match removes its route.
func (s *State) managedRoutes(i int32) ([]spec.SetHeaderRoute, []spec.SetMirrorRoute) {
	c := s.canary()
	if c == nil || c.TrafficRouting == nil {
		return nil, nil
	}
	if i >= int32(len(c.Steps)) {
		i = int32(len(c.Steps)) - 1
	}
	var headers []spec.SetHeaderRoute
	var mirrors []spec.SetMirrorRoute
	for j := int32(0); j <= i; j++ {
		st := c.Steps[j]
		if h := st.SetHeaderRoute; h != nil {
			headers = removeHeader(headers, h.Name)
			if len(h.Match) > 0 {
				headers = append(headers, *h)
			}
		}
		if m := st.SetMirrorRoute; m != nil {
			mirrors = removeMirror(mirrors, m.Name)
			if len(m.Match) > 0 {
				mirrors = append(mirrors, *m)
			}
		}
	}
	order := map[string]int{}
	for k, r := range c.TrafficRouting.ManagedRoutes {
		order[r.Name] = k
	}
	rank := func(name string) int {
		if k, ok := order[name]; ok {
			return k
		}
		return len(order)
	}
	sortStable(headers, func(a, b spec.SetHeaderRoute) bool { return rank(a.Name) < rank(b.Name) })
	sortStable(mirrors, func(a, b spec.SetMirrorRoute) bool { return rank(a.Name) < rank(b.Name) })
	return headers, mirrors
}

func removeHeader(rs []spec.SetHeaderRoute, name string) []spec.SetHeaderRoute {
	out := rs[:0]
	for _, r := range rs {
		if r.Name != name {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func removeMirror(rs []spec.SetMirrorRoute, name string) []spec.SetMirrorRoute {
	out := rs[:0]
	for _, r := range rs {
		if r.Name != name {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// sortStable is an insertion sort: the lists are a handful of routes.
func sortStable[T any](xs []T, less func(a, b T) bool) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0 && less(xs[j], xs[j-1]); j-- {
			xs[j], xs[j-1] = xs[j-1], xs[j]
		}
	}
}
