package machine

import (
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Revision roles (RevisionDetail.Role).
const (
	RoleStable  = "stable"
	RoleCanary  = "canary"
	RoleActive  = "active"
	RolePreview = "preview"
	RoleOld     = "old"
)

// PlanStep is one step of a rollout's plan, as the status events name it;
// Pause is the length of a timed pause step.
type PlanStep struct {
	events.StepInfo
	Pause *spec.RolloutPause
}

// Steps returns every step of the rollout's plan (for blue/green its
// stages), as step.started names them.
func (s State) Steps() []PlanStep {
	n := s.planLen()
	out := make([]PlanStep, 0, n)
	for i := range n {
		st, ok := s.planStep(i)
		if !ok {
			break
		}
		p := PlanStep{StepInfo: stepInfo(i, st)}
		if st.Canary != nil && st.Canary.Pause != nil {
			p.Pause = st.Canary.Pause
		}
		out = append(out, p)
	}
	return out
}

// RevisionDetail is one revision the rollout keeps.
type RevisionDetail struct {
	Revision int64
	PodHash  string
	Images   []string
	// Role is stable, canary, active, preview or old.
	Role string
	// Pods as last asked for and reported; nil when the revision has none.
	Pods *PodRecord
}

// Revisions returns the revisions the rollout keeps, newest first, with
// their role and pod counts.
func (s State) Revisions() []RevisionDetail {
	bg := s.strategy() == spec.StrategyBlueGreen
	out := make([]RevisionDetail, 0, len(s.History))
	for i := len(s.History) - 1; i >= 0; i-- {
		h := s.History[i]
		d := RevisionDetail{Revision: h.Number, PodHash: h.Hash, Role: RoleOld}
		for _, c := range h.Template.Spec.Containers {
			d.Images = append(d.Images, c.Image)
		}
		switch {
		case h.Hash == s.StableHash && bg:
			d.Role = RoleActive
		case h.Hash == s.StableHash:
			d.Role = RoleStable
		case h.Hash == s.PodHash && bg:
			d.Role = RolePreview
		case h.Hash == s.PodHash:
			d.Role = RoleCanary
		}
		for j := range s.Pods {
			if s.Pods[j].Hash == h.Hash {
				p := s.Pods[j]
				d.Pods = &p
			}
		}
		out = append(out, d)
	}
	return out
}
