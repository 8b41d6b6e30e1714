package machine

import "github.com/sluicehq/sluice/pkg/spec"

// RevisionPart is the part of a State that changes only with a new
// revision or a new spec: the accepted spec and the pod templates kept
// for history. Every other field may change with any decision. The
// orchestrator stores this part apart from the rest and writes it only
// when it changes (issue 20: re-encoding the templates on every write was
// a third of the bytes a decision wrote).
//
// It is read-only, as State.Spec is: a part taken from a state shares its
// spec and its history with it.
type RevisionPart struct {
	Spec           *spec.Rollout    `json:"spec,omitempty"`
	ExperimentSpec *spec.Experiment `json:"experimentSpec,omitempty"`
	History        []RevisionRecord `json:"history,omitempty"`
}

// RevisionPart returns the part of s that changes only with a new
// revision.
func (s *State) RevisionPart() RevisionPart {
	return RevisionPart{Spec: s.Spec, ExperimentSpec: s.ExperimentSpec, History: s.History}
}

// SetRevisionPart replaces the part of s that changes only with a new
// revision by p; the zero part leaves s without one.
func (s *State) SetRevisionPart(p RevisionPart) {
	s.Spec, s.ExperimentSpec, s.History = p.Spec, p.ExperimentSpec, p.History
}

// IsZero reports whether p holds nothing: a state nobody requested yet,
// or a deleted one.
func (p RevisionPart) IsZero() bool {
	return p.Spec == nil && p.ExperimentSpec == nil && len(p.History) == 0
}

// Same reports whether p and o encode to the same JSON, without encoding
// them (see State.sameJSON): a spec the states share is found the same at
// once, templates in a walk.
func (p *RevisionPart) Same(o *RevisionPart) bool {
	return sameEach(p.History, o.History, sameRevision) &&
		sameEncoding(p.Spec, o.Spec) && sameEncoding(p.ExperimentSpec, o.ExperimentSpec)
}

func sameRevision(a, b *RevisionRecord) bool {
	return a.Number == b.Number && a.Hash == b.Hash && sameEncoding(&a.Template, &b.Template)
}
