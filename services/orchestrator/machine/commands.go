package machine

import (
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

func (d *decision) command(c Command) bool {
	switch c.Kind {
	case CommandPromote:
		return d.promote(c.Full)
	case CommandAbort:
		if !d.s.inProgress() || d.s.Aborted {
			return false
		}
		d.abort("")
		return true
	case CommandRetry:
		return d.retry()
	case CommandPause:
		if d.s.UserPaused {
			return false
		}
		d.s.UserPaused = true
		d.emit(events.TypeRolloutPaused, events.StatusData{Reason: "paused by operator"})
		return true
	case CommandResume:
		if !d.s.UserPaused {
			return false
		}
		d.s.UserPaused = false
		d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "resumed by operator"})
		return true
	case CommandUndo:
		return d.undo(c.ToRevision)
	}
	return false
}

// promote lifts every pause, or skips the current step when nothing is
// paused. A full promote skips every remaining step, analysis and pause,
// and also promotes an aborted update, as Argo's promote --full does.
func (d *decision) promote(full bool) bool {
	s := d.s
	if !s.inProgress() {
		return false
	}
	if full {
		if s.PromoteFull && !s.Aborted {
			return false
		}
		d.resetUpdate()
		s.PromoteFull = true
		s.UserPaused = false
		s.Step = s.planLen()
		d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "full promotion: remaining steps, analyses and pauses skipped"})
		return true
	}
	if s.Aborted {
		return false
	}
	if s.UserPaused || len(s.PauseConditions) > 0 {
		s.UserPaused = false
		for i := range s.Runs {
			if s.Runs[i].Phase == string(phaseInconclusive) {
				s.Runs[i].Skipped = true
			}
		}
		s.PauseConditions = nil
		s.PauseUntil = time.Time{}
		d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "promoted"})
		return true
	}
	if s.Step >= s.planLen() {
		return false
	}
	d.completeStep()
	return true
}

// abort sends traffic back to the stable revision and stops the update;
// reason is empty for an operator's abort.
func (d *decision) abort(reason string) {
	s := d.s
	s.Aborted, s.AbortedAt, s.AbortReason = true, d.now, reason
	s.PauseConditions = nil
	s.StepPaused, s.PauseUntil = false, time.Time{}
	s.PromoteFull = false
	s.AbortScaleDownAt = time.Time{}
	if delay, ok := d.abortScaleDownDelay(); ok && delay > 0 {
		s.AbortScaleDownAt = d.now.Add(delay)
	}
	s.AbortPending = true
}

// announceAbort publishes the aborted event once the abort's routing is in
// effect, or once routing it has failed (the event then says so). In effect
// means the routing table last applied is the abort's and no route task is
// still out: a task sent before the abort (the step's "weight 20") could
// otherwise be applied after the event, until the abort's own task, with
// its higher seq, supersedes it.
func (d *decision) announceAbort() {
	s := d.s
	if !s.Aborted || !s.AbortPending {
		return
	}
	reason := s.AbortReason
	if reason == "" {
		reason = "aborted by operator"
	}
	want := d.desiredRoute()
	switch {
	case want != nil && s.Route != nil && s.Route.Failed:
		reason += "; routing traffic back to the stable revision failed: " + s.Route.Message
	case want == nil || !s.Route.active() && s.Routing != nil && s.Routing.CanaryWeight == want.CanaryWeight && s.Routing.ActiveHash == want.ActiveHash &&
		len(s.Routing.HeaderRoutes) == 0 && len(s.Routing.MirrorRoutes) == 0:
	default:
		return
	}
	s.AbortPending = false
	d.emit(events.TypeRolloutAborted, events.StatusData{Reason: reason})
}

// retry restarts an aborted update from its first step, and sends again the
// tasks that had failed.
func (d *decision) retry() bool {
	s := d.s
	failed := s.Scale != nil && s.Scale.Failed || s.Route != nil && s.Route.Failed
	if !s.Aborted && s.Failure == "" && !failed {
		return false
	}
	d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "retry"})
	if s.Aborted {
		d.restartPlan()
		return true
	}
	completed := s.Completed
	d.resetUpdate()
	s.Completed = completed
	return true
}
