package follow

import (
	"strings"

	"github.com/sluicehq/sluice/pkg/events"
)

// Experiment follows one standalone Experiment, requested by the
// experiment.requested event RequestID of Ref, to its verdict. As Update
// does for a rollout, it decides only; the caller reads the events and
// feeds them to Observe in order.
//
// Its request is answered by an accepted or a rejected event that carries
// RequestID as causationid; events before that answer belong to earlier
// activity at the name and are ignored. An experiment's spec cannot
// change, so once accepted every later event of the name is its own: a
// repeated identical request of an experiment that has already ended is
// accepted with its verdict, which is then the outcome.
type Experiment struct {
	Ref       events.Ref
	RequestID string

	// Accepted is set once the request was accepted.
	Accepted bool
	// Last is the latest status of the experiment seen once accepted.
	Last *events.Snapshot
	// Done is set once the experiment has an outcome: Successful when
	// Failure is empty; otherwise Failure says why not (rejected, a
	// verdict other than Successful, terminated or deleted).
	Done    bool
	Failure string
}

// Observe decides what ev, a status event with data d, means for the
// experiment, and records it.
func (x *Experiment) Observe(ev events.Event, d events.StatusData) Verdict {
	if x.Done || ev.Subject() != x.Ref.String() {
		return Ignored
	}
	s := d.Status
	caused := events.Extension(ev, events.ExtCausationID) == x.RequestID
	v := Ignored
	switch {
	case ev.Type() == events.TypeExperimentRejected && (caused || ev.ID() == "rejected/"+x.RequestID):
		x.Failure, v = "rejected: "+or(strings.Join(d.Errors, "; "), d.Reason), Failed
	case ev.Type() == events.TypeExperimentAccepted && caused && !x.Accepted:
		x.Accepted, v = true, Accepted
		if ended(s.Phase) {
			v = x.verdict(s, d)
		}
	case !x.Accepted || s.Kind != events.KindExperiment:
		// Earlier activity at the name, before the request was taken.
	case ev.Type() == events.TypeExperimentCompleted, ev.Type() == events.TypeExperimentTerminated:
		v = x.verdict(s, d)
	case ev.Type() == events.TypeExperimentDeleted:
		x.Failure, v = "deleted before its verdict"+reasonSuffix(d.Reason), Failed
	default:
		v = Progress
	}
	if x.Accepted && s.Kind == events.KindExperiment {
		x.Last = &s
	}
	x.Done = v == Completed || v == Failed
	return v
}

// verdict is the outcome of an experiment that ended in s.
func (x *Experiment) verdict(s events.Snapshot, d events.StatusData) Verdict {
	if s.Phase == events.ExperimentPhaseSuccessful {
		return Completed
	}
	x.Failure = s.Phase + reasonSuffix(or(s.Message, d.Reason))
	return Failed
}

// ended reports whether phase is an experiment's final phase.
func ended(phase string) bool {
	switch phase {
	case events.ExperimentPhaseSuccessful, events.ExperimentPhaseFailed, events.ExperimentPhaseError,
		events.ExperimentPhaseInconclusive, events.ExperimentPhaseTerminated:
		return true
	}
	return false
}

// reasonSuffix is ": reason", or "" without one.
func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}
