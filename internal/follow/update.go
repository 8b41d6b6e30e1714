package follow

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/pkg/events"
)

// Verdict is what one status event means for an update.
type Verdict int

const (
	// Ignored: the event is not about the update (another rollout, an
	// earlier revision, or after the update's outcome).
	Ignored Verdict = iota
	// Accepted: the orchestrator took the request as Update.Revision.
	Accepted
	// Progress: an event of the update's revision on its way.
	Progress
	// Completed: the revision completed (or there was nothing to roll out).
	Completed
	// Failed: rejected, aborted, degraded or superseded; Update.Failure
	// says which and why.
	Failed
)

func (v Verdict) String() string {
	return [...]string{"ignored", "accepted", "progress", "completed", "failed"}[v]
}

// Update follows one update, started by the rollout.requested event
// RequestID of Ref, through the status events that follow it. It decides
// only; the caller reads the events (Status, Next) and feeds them to
// Observe in order.
type Update struct {
	Ref       events.Ref
	RequestID string

	// Accepted is set once the request was accepted, as Revision.
	Accepted bool
	Revision int64
	// Last is the latest status of Revision seen once accepted.
	Last *events.Snapshot
	// Done is set once the update has an outcome: completed when Failure
	// is empty, failed otherwise.
	Done    bool
	Failure string
}

// Observe decides what ev, a status event with data d, means for the
// update, and records it.
func (u *Update) Observe(ev events.Event, d events.StatusData) Verdict {
	if u.Done || ev.Subject() != u.Ref.String() {
		return Ignored
	}
	s := d.Status
	v := Ignored
	switch {
	case ev.Type() == events.TypeRolloutRejected && ev.ID() == "rejected/"+u.RequestID:
		u.Failure, v = "rejected: "+strings.Join(d.Errors, "; "), Failed
	case ev.Type() == events.TypeRolloutAccepted && !u.Accepted:
		u.Accepted, u.Revision, v = true, s.Revision, Accepted
		if s.Phase == events.PhaseHealthy && s.Revision == s.StableRevision && !s.Aborted {
			v = Completed // nothing to roll out
		}
	case !u.Accepted:
		// Events of earlier activity, before the request was taken.
	case ev.Type() == events.TypeRolloutCompleted && s.Revision >= u.Revision:
		v = Completed
	case ev.Type() == events.TypeRolloutAborted && s.Revision == u.Revision:
		u.Failure, v = "aborted: "+or(d.Reason, s.Message), Failed
	case s.Phase == events.PhaseDegraded && s.Revision == u.Revision:
		u.Failure, v = "degraded: "+or(s.Message, d.Reason), Failed
	case s.Revision > u.Revision:
		u.Failure, v = fmt.Sprintf("superseded by revision %d", s.Revision), Failed
	case s.Revision == u.Revision:
		v = Progress
	}
	if u.Accepted && s.Revision == u.Revision {
		u.Last = &s
	}
	u.Done = v == Completed || v == Failed
	return v
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
