package machine

import (
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
)

// desiredRoute returns the routing table the rollout needs now, without
// the rollout's annotations.
func (d *decision) desiredRoute() *tasks.Route {
	s := d.s
	if s.isExperiment() {
		return nil // a standalone experiment has no weights, as in Argo
	}
	if b := s.blueGreen(); b != nil {
		rt := &tasks.Route{Strategy: spec.StrategyBlueGreen, ActiveService: b.ActiveService, PreviewService: b.PreviewService}
		switch {
		case !s.inProgress() || s.Aborted:
			rt.ActiveHash, rt.PreviewHash = s.StableHash, s.StableHash
		case s.Step == 0 && !s.PromoteFull:
			rt.ActiveHash, rt.PreviewHash = s.StableHash, s.PodHash
		default:
			// The switch waits until the new revision runs every replica.
			rt.ActiveHash, rt.PreviewHash = s.StableHash, s.PodHash
			if s.Routing != nil && s.Routing.ActiveHash == s.PodHash || d.scaleDone() {
				rt.ActiveHash = s.PodHash
			}
		}
		return rt
	}
	c := s.canary()
	if c == nil {
		return nil
	}
	rt := &tasks.Route{
		Strategy:       spec.StrategyCanary,
		CanaryService:  c.CanaryService,
		StableService:  c.StableService,
		TrafficRouting: c.TrafficRouting,
		StableHash:     s.StableHash,
		CanaryHash:     s.PodHash,
	}
	switch {
	case !s.inProgress():
	case s.Aborted:
		rt.CanaryWeight = d.abortedWeight()
	default:
		rt.HeaderRoutes, rt.MirrorRoutes = s.managedRoutes(s.Step)
		rt.CanaryWeight = d.canaryWeight()
		rt.Experiments = d.experimentRoutes()
	}
	return rt
}

// canaryWeight is the weight to route to the canary during an update: the
// plan's weight once the canary runs the pods for it; until then no more
// than the weight in effect (none while no canary pod is available).
func (d *decision) canaryWeight() int32 {
	s := d.s
	want := d.targetWeight()
	if s.podsOf(s.PodHash).Available == 0 {
		return 0
	}
	if d.scaleDone() {
		return want
	}
	have := d.weightInEffect()
	if c := s.canary(); c.DynamicStableScale {
		// The stable must have the pods for more traffic before it gets it.
		return have
	}
	return min(want, have)
}

// abortedWeight is the canary weight after an abort: 0 at once, except
// with dynamicStableScale, where traffic moves back only as fast as the
// stable's available pods allow, and never up.
func (d *decision) abortedWeight() int32 {
	s := d.s
	if !s.canary().DynamicStableScale {
		return 0
	}
	R := s.replicas()
	if R == 0 {
		return 0
	}
	maxW := s.maxWeight()
	avail := min(s.podsOf(s.StableHash).Available, R)
	w := maxW - avail*maxW/R
	return max(0, min(w, d.weightInEffect()))
}

// weightInEffect is the weight the routing in effect sends to the current
// revision.
func (d *decision) weightInEffect() int32 {
	rt := d.s.Routing
	if rt == nil || rt.CanaryHash != d.s.PodHash || rt.CanaryHash == rt.StableHash {
		return 0
	}
	return rt.CanaryWeight
}

// sameRoute reports whether two routing tables are the same: whether
// they encode alike.
func sameRoute(a, b *tasks.Route) bool { return sameEncoding(a, b) }

// scaleDone reports whether the replicas service has put the desired scale
// in place.
func (d *decision) scaleDone() bool {
	t := d.s.Scale
	return t != nil && t.Done && t.Scale != nil && sameScale(t.Scale.Revisions, d.desiredScale())
}

// routeDone reports whether the traffic service has put the desired
// routing in place.
func (d *decision) routeDone() bool {
	t := d.s.Route
	return t != nil && t.Done && sameRoute(t.Route, d.desiredRoute())
}
