package machine

import (
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// Snapshot renders the rollout's whole status at now, as every status event
// carries it. Weights are percentages of all traffic: for a traffic-routed
// canary the weight in effect, for a basic canary the share of available
// pods, for blue/green 100 to the new revision once the active service
// points at it.
func (s State) Snapshot(now time.Time) events.Snapshot {
	if s.isExperiment() {
		return s.experimentSnapshot(now)
	}
	snap := events.Snapshot{
		Namespace:      s.Ref.Namespace,
		Name:           s.Ref.Name,
		Strategy:       string(s.strategy()),
		Phase:          s.Phase,
		Message:        s.Message,
		Revision:       s.Revision,
		StableRevision: s.StableRevision,
		PodHash:        s.PodHash,
		StablePodHash:  s.StableHash,
		Aborted:        s.Aborted,
		PromoteFull:    s.PromoteFull,
		UserPaused:     s.UserPaused,
		UpdatedAt:      now,
	}
	if s.Aborted {
		snap.AbortedAt = s.AbortedAt
	}
	if !s.Restart.Pending {
		snap.RestartedAt = s.Restart.At
	}
	if rt := s.Routing; rt != nil && s.blueGreen() != nil {
		snap.ActivePodHash = rt.ActiveHash
		if rt.PreviewService != "" {
			snap.PreviewPodHash = rt.PreviewHash
		}
	}
	if c := s.canary(); c != nil && s.Revision != 0 {
		snap.StepCount = int32(len(c.Steps))
		if snap.StepCount > 0 {
			i := min(max(s.Step, 0), snap.StepCount)
			snap.StepIndex = &i
		}
	}
	snap.CanaryWeight = s.canaryPercent()
	snap.StableWeight = 100 - snap.CanaryWeight - s.experimentPercent()
	if s.Revision == 0 {
		snap.StableWeight = 0
	}
	snap.Replicas.Desired = s.replicas()
	for _, p := range s.Pods {
		snap.Replicas.Current += p.Current
		snap.Replicas.Ready += p.Ready
		snap.Replicas.Available += p.Available
		if p.Hash == s.PodHash {
			snap.Replicas.Updated = p.Current
		}
	}
	if len(s.PauseConditions) > 0 {
		snap.PauseConditions = append([]events.PauseCondition(nil), s.PauseConditions...)
	}
	if s.LastAnalysis != nil {
		a := *s.LastAnalysis
		snap.Analysis = &a
	}
	snap.Runs = s.runSummaries()
	snap.Experiment = s.experimentSummary()
	return snap
}

// runSummaries lists the current revision's analysis runs, oldest first;
// runs of older revisions still being terminated are left out.
func (s State) runSummaries() []events.RunSummary {
	var out []events.RunSummary
	for _, r := range s.Runs {
		if r.Task.Revision != s.Revision {
			continue
		}
		rs := events.RunSummary{Name: r.Name, Purpose: r.Purpose, Phase: r.Phase}
		if r.Purpose == purposeStep || r.Purpose == purposeExperiment && !s.isExperiment() {
			step := r.Step
			rs.Step = &step
		}
		if r.Summary != nil {
			rs.Message = r.Summary.Message
		}
		out = append(out, rs)
	}
	return out
}

// canaryPercent is the share of traffic, in percent, that reaches the
// revision being rolled out while it is not the stable one.
func (s State) canaryPercent() int32 {
	if !s.inProgress() {
		return 0
	}
	rt := s.Routing
	switch {
	case s.blueGreen() != nil:
		if rt != nil && rt.ActiveHash == s.PodHash {
			return 100
		}
		return 0
	case s.routed():
		if rt == nil || rt.CanaryHash != s.PodHash || rt.CanaryHash == rt.StableHash {
			return 0
		}
		return rt.CanaryWeight * 100 / s.maxWeight()
	}
	var canary, total int32
	for _, p := range s.Pods {
		total += p.Available
		if p.Hash == s.PodHash {
			canary += p.Available
		}
	}
	if total == 0 {
		return 0
	}
	return canary * 100 / total
}

// experimentPercent is the share of traffic, in percent, that the routing
// in effect gives an experiment's templates (taken from the stable's).
func (s State) experimentPercent() int32 {
	rt := s.Routing
	if !s.inProgress() || !s.routed() || rt == nil {
		return 0
	}
	var sum int32
	for _, e := range rt.Experiments {
		sum += e.Weight
	}
	return sum * 100 / s.maxWeight()
}
