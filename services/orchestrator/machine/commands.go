package machine

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// command applies an operator command, or refuses it (events.Refused*)
// when it changes nothing. Either way the command is answered, so it
// reports true.
func (d *decision) command(c Command) bool {
	s := d.s
	d.experimentCmd = c.Experiment
	switch {
	case s.isExperiment():
		d.experimentCommand(c)
		return true
	case c.Experiment && s.Revision == 0 && s.Ref == (events.Ref{}):
		return false // nobody requested it: the service answers
	case c.Experiment && s.Revision == 0:
		d.refuse(events.RefusedNotFound, fmt.Sprintf("experiment %s does not exist (deleted)", s.Ref))
		return true
	case c.Experiment:
		d.refuse(events.RefusedNotFound, fmt.Sprintf("%s is a Rollout, not an Experiment", s.Ref))
		return true
	}
	if s.Revision == 0 {
		if s.Ref == (events.Ref{}) {
			return false // nobody requested it: the service answers
		}
		d.refuse(events.RefusedNotFound, fmt.Sprintf("rollout %s does not exist (deleted)", s.Ref))
		return true
	}
	if s.Deleting && c.Kind != CommandDelete {
		d.refuse(events.RefusedNotApplicable, "the rollout is being deleted")
		return true
	}
	var code, reason string
	switch c.Kind {
	case CommandPromote:
		code, reason = d.promote(c.Full)
	case CommandAbort:
		switch {
		case !s.inProgress():
			code, reason = events.RefusedNotApplicable, fmt.Sprintf("no update to abort: revision %d is stable", s.StableRevision)
		case s.Aborted:
			code, reason = events.RefusedNotApplicable, fmt.Sprintf("the update to revision %d is already aborted", s.Revision)
		default:
			d.abort("")
			s.AbortCause = d.cause
		}
	case CommandRetry:
		code, reason = d.retry()
	case CommandPause:
		if s.UserPaused {
			code, reason = events.RefusedNotApplicable, "already paused"
			break
		}
		s.UserPaused = true
		d.emit(events.TypeRolloutPaused, events.StatusData{Reason: "paused by operator"})
	case CommandResume:
		code, reason = d.resume()
	case CommandUndo:
		code, reason = d.undo(c.ToRevision)
	case CommandRestart:
		code, reason = d.restart()
	case CommandDelete:
		if s.Deleting {
			code, reason = events.RefusedNotApplicable, "already being deleted"
			break
		}
		s.Deleting, s.DeleteCause = true, d.cause
		s.UserPaused = false
	default:
		code, reason = events.RefusedInvalid, fmt.Sprintf("unknown command %q", c.Kind)
	}
	if code != "" {
		d.refuse(code, reason)
	}
	return true
}

// resume lifts a pause command (or spec.paused). Pauses the plan or an
// analysis made are lifted by promote, as in Argo; resume says so.
func (d *decision) resume() (code, reason string) {
	s := d.s
	if !s.UserPaused {
		if len(s.PauseConditions) > 0 {
			return events.RefusedNotApplicable, fmt.Sprintf("not paused by an operator but by %s: promote to go on, or abort", s.PauseConditions[0].Reason)
		}
		return events.RefusedNotApplicable, "not paused"
	}
	s.UserPaused = false
	d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "resumed by operator"})
	return "", ""
}

// promote lifts every pause, or skips the current step when nothing is
// paused. A full promote skips every remaining step, analysis and pause,
// and also promotes an aborted update, as Argo's promote --full does.
func (d *decision) promote(full bool) (code, reason string) {
	s := d.s
	if !s.inProgress() {
		return events.RefusedNotApplicable, fmt.Sprintf("nothing to promote: revision %d is stable and no update is in progress", s.StableRevision)
	}
	if full {
		if s.PromoteFull && !s.Aborted {
			return events.RefusedNotApplicable, fmt.Sprintf("revision %d is already being fully promoted", s.Revision)
		}
		d.resetUpdate()
		s.PromoteFull = true
		s.UserPaused = false
		s.Step = s.planLen()
		d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "full promotion: remaining steps, analyses and pauses skipped"})
		return "", ""
	}
	if s.Aborted {
		return events.RefusedNotApplicable, fmt.Sprintf("the update to revision %d was aborted: retry it, or promote --full", s.Revision)
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
		return "", ""
	}
	if s.Step >= s.planLen() {
		return events.RefusedNotApplicable, fmt.Sprintf("every step is done: revision %d is being promoted to stable", s.Revision)
	}
	d.completeStep()
	return "", ""
}

// abort sends traffic back to the stable revision and stops the update;
// reason is empty for an operator's abort.
func (d *decision) abort(reason string) {
	s := d.s
	s.Aborted, s.AbortedAt, s.AbortReason = true, d.now, reason
	s.AbortCause = Cause{}
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
		len(s.Routing.HeaderRoutes) == 0 && len(s.Routing.MirrorRoutes) == 0 && len(s.Routing.Experiments) == 0:
	default:
		return
	}
	s.AbortPending = false
	cause := s.AbortCause
	s.AbortCause = Cause{}
	d.emitFor(cause, events.TypeRolloutAborted, events.StatusData{Reason: reason})
}

// retry restarts an aborted update from its first step, and sends again the
// tasks that had failed.
func (d *decision) retry() (code, reason string) {
	s := d.s
	failed := s.Scale != nil && s.Scale.Failed || s.Route != nil && s.Route.Failed
	if !s.Aborted && s.Failure == "" && !failed {
		return events.RefusedNotApplicable, "nothing to retry: the update was not aborted and no task failed"
	}
	if !s.Aborted {
		completed := s.Completed
		d.resetUpdate()
		s.Completed = completed
		d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "retry: failed tasks are sent again"})
		return "", ""
	}
	d.resetUpdate()
	s.Retries++
	s.Step = 0
	d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "retry: the update starts again from its first step"})
	d.enterStep()
	return "", ""
}

// restart replaces the stable revision's pods, within maxUnavailable.
func (d *decision) restart() (code, reason string) {
	s := d.s
	if s.Restart.Pending {
		return events.RefusedNotApplicable, fmt.Sprintf("a restart asked for at %s is in progress", s.Restart.At.Format(time.RFC3339))
	}
	if s.inProgress() && !s.Aborted && d.halted() {
		return events.RefusedNotApplicable, "the update is paused, and so is scaling: promote or resume it first"
	}
	if p := s.pod(s.StableHash); p == nil || p.Replicas == 0 {
		return events.RefusedNotApplicable, fmt.Sprintf("revision %d has no pods to restart", s.StableRevision)
	}
	d.startRestart(d.now, d.cause)
	return "", ""
}

// startRestart asks for the stable revision's pods started before at to be
// replaced; the restarted event answers cause once they are.
func (d *decision) startRestart(at time.Time, cause Cause) {
	d.s.Restart = Restart{At: at, Pending: true, Cause: cause}
}

// restartDue starts a restart whose spec.restartAt has come.
func (d *decision) restartDue() {
	r := d.s.Restart
	if !r.Due.IsZero() && !d.now.Before(r.Due) {
		d.startRestart(r.Due, r.Cause)
	}
}

// restartFields returns the restart time and the pods that may be
// unavailable at once for the stable revision running replicas.
func (d *decision) restartFields(replicas int32) (time.Time, int32) {
	s := d.s
	if s.Restart.At.IsZero() || replicas == 0 {
		return time.Time{}, 0
	}
	var unavailable *intstr.IntOrString
	switch {
	case s.canary() != nil:
		unavailable = s.canary().MaxUnavailable
	case s.blueGreen() != nil:
		unavailable = s.blueGreen().MaxUnavailable
	}
	_, u := fenceposts(nil, unavailable, replicas)
	return s.Restart.At, max(u, 1)
}

// announceRestart publishes the restarted event once the scale task that
// carries the restart has finished, or says why it did not.
func (d *decision) announceRestart() {
	s := d.s
	r := s.Restart
	if !r.Pending {
		return
	}
	if p := s.pod(s.StableHash); p == nil || p.Replicas == 0 {
		s.Restart.Pending = false
		d.emitFor(r.Cause, events.TypeRolloutRestarted, events.StatusData{Reason: fmt.Sprintf("revision %d has no pods to restart", s.StableRevision)})
		return
	}
	if s.Scale == nil || s.Scale.Scale == nil || !restarts(s.Scale.Scale.Revisions, r.At) {
		return
	}
	switch {
	case s.Scale.Done:
		s.Restart.Pending = false
		d.emitFor(r.Cause, events.TypeRolloutRestarted, events.StatusData{Reason: fmt.Sprintf("the pods of revision %d started before %s were replaced", s.StableRevision, r.At.Format(time.RFC3339))})
	case s.Scale.Failed:
		s.Restart.Pending = false
		d.emitFor(r.Cause, events.TypeRolloutDegraded, events.StatusData{Reason: "restart failed: " + s.Scale.Message})
	}
}

// restarts reports whether a scale task restarts pods started before at.
func restarts(revs []tasks.RevisionScale, at time.Time) bool {
	for _, r := range revs {
		if !r.RestartAt.IsZero() && r.RestartAt.Equal(at) {
			return true
		}
	}
	return false
}

// announceDeleted finishes a deletion once its scale task (every revision
// removed) and route task (routes removed) have finished: it publishes the
// deleted event and forgets the rollout but for its ref, version and
// sequence numbers, so that a new request starts at revision 1 and its
// tasks still supersede the old ones.
func (d *decision) announceDeleted() {
	s := d.s
	if !s.Deleting {
		return
	}
	removed := func(t *TaskRecord) bool { return t != nil && !t.active() }
	if s.Scale == nil || s.Scale.Scale == nil || !s.Scale.Scale.Remove || !removed(s.Scale) {
		return
	}
	if want := d.desiredRoute(); want != nil && (s.Route == nil || s.Route.Route == nil || !s.Route.Route.Remove || !removed(s.Route)) {
		return
	}
	var failures []string
	for _, t := range []*TaskRecord{s.Scale, s.Route} {
		if t != nil && t.Failed {
			failures = append(failures, t.Message)
		}
	}
	typ, reason := events.TypeRolloutDeleted, fmt.Sprintf("revisions and routes of %s removed; its state is forgotten", s.Ref)
	if s.isExperiment() {
		typ, reason = events.TypeExperimentDeleted, fmt.Sprintf("the pods of experiment %s removed; its state is forgotten", s.Ref)
	}
	if len(failures) > 0 {
		reason = fmt.Sprintf("%s forgotten, but not everything could be removed: %s", s.Ref, strings.Join(failures, "; "))
	}
	cause, experiment := s.DeleteCause, s.isExperiment()
	*s = State{Version: s.Version, Ref: s.Ref, Seq: s.Seq}
	d.emitFor(cause, typ, events.StatusData{Reason: reason})
	if experiment {
		d.effects[len(d.effects)-1].Status.Data.Status.Kind = events.KindExperiment
	}
}
