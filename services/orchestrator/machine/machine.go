package machine

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// Machine decides the next state of a rollout. Its zero value uses the
// default Config.
type Machine struct {
	Config Config
}

// Next applies obs to st at time now and returns the new state and the
// effects to carry out, in order: tasks to send and status events to
// publish. It does no I/O, reads no clock and never panics.
//
// An observation that does not apply (a report for an unknown task or an
// older attempt, a duplicate, a request for another rollout) returns st
// unchanged and no effects. A command with nothing to act on is answered:
// its only effect is an events.TypeRolloutRefused event naming it. Otherwise the
// observation is applied, every deadline at or before now fires, and the
// rollout moves as far as it can; when anything changed, the returned
// state's Version is st.Version+1. Next on the zero State with a Request
// creates the rollout. st itself is never modified. The new state and the
// effects share st's Spec, which is read-only (see State).
func (m Machine) Next(st State, obs Observation, now time.Time) (next State, effects []Effect) {
	if recoverPanics {
		// A bug must not take the orchestrator down with it: the observation
		// is then ignored, and the rollout keeps its state.
		defer func() {
			if recover() != nil {
				next, effects = st, nil
			}
		}()
	}
	s := st.clone()
	d := &decision{cfg: m.Config.effective(), s: &s, now: now.UTC().Round(0), cause: obs.Cause}
	d.taskNow = d.now
	if !obs.Stored.IsZero() && obs.Stored.Before(d.now) {
		d.taskNow = obs.Stored.UTC().Round(0)
	}
	if !d.observe(obs) {
		return st, nil
	}
	d.reconcile()
	return d.finish(st)
}

// recoverPanics is turned off by the tests, so that bugs surface.
var recoverPanics = true

// decision is one call of Next: the state it moves and the effects it
// emits. (Not to be confused with an analysis run, RunRecord.)
type decision struct {
	cfg     Config
	s       *State
	now     time.Time
	effects []Effect
	// cause is the command or request being decided on (zero for reports
	// and ticks): the events it leads to now carry it.
	cause Cause
	// experimentCmd marks a standalone experiment's command, answered
	// with events.TypeExperimentRefused when it changes nothing.
	experimentCmd bool
	// taskNow is when tasks' start and finish deadlines are judged:
	// Observation.Stored when it is before now. deferred is the earliest
	// of them due by now but not by taskNow: it stays a wakeup.
	taskNow, deferred time.Time
}

func (d *decision) observe(o Observation) bool {
	switch {
	case o.Request != nil:
		if d.s.isExperiment() {
			d.emit(events.TypeRolloutRejected, events.StatusData{Reason: fmt.Sprintf("%s is an Experiment: a namespace holds one Rollout or Experiment of a name; name the Rollout apart", d.s.Ref)})
			return true
		}
		return d.request(o.Request)
	case o.Experiment != nil:
		return d.requestExperiment(o.Experiment)
	case o.Command != nil:
		return d.command(*o.Command)
	case o.Started != nil:
		return d.fromOwner(o.From, o.Started.TaskID) && d.started(*o.Started)
	case o.Finished != nil:
		return d.fromOwner(o.From, o.Finished.TaskID) && d.finished(*o.Finished)
	case o.Measured != nil:
		return d.fromOwner(o.From, o.Measured.TaskID) && d.measured(*o.Measured)
	case o.Tick:
		return d.s.Revision != 0
	}
	return false
}

// reconcile fires due deadlines and moves the rollout as far as it can
// without new reports, then sends the tasks the new state needs.
func (d *decision) reconcile() {
	if d.s.isExperiment() {
		d.reconcileExperiment()
		return
	}
	if d.s.Revision == 0 {
		d.refreshPhase()
		return
	}
	d.fireTaskDeadlines()
	d.restartDue()
	for i := 0; i < 64 && d.progress(); i++ {
	}
	d.endStaleExperiments()
	d.syncRuns()
	d.syncScale()
	d.syncRoute()
	d.announceAbort()
	d.announceRestart()
	d.pruneHistory()
	d.refreshPhase()
	d.announceDeleted()
}

// finish numbers the effects and the version, or returns before unchanged
// when nothing changed: no effects, and the same JSON form, which is what
// the orchestrator stores.
func (d *decision) finish(before State) (State, []Effect) {
	// NextWakeup reports deadlines after EvaluatedAt only: a deferred
	// one stays reported.
	evaluated := d.now
	if !d.deferred.IsZero() {
		evaluated = d.deferred.Add(-time.Nanosecond)
	}
	if due, ok := before.NextWakeup(); ok && !due.After(d.now) {
		d.s.EvaluatedAt = evaluated
	}
	if len(d.effects) == 0 && d.s.sameJSON(&before) {
		return before, nil
	}
	d.s.EvaluatedAt = evaluated
	d.s.Version = before.Version + 1
	for i := range d.effects {
		if st := d.effects[i].Status; st != nil {
			st.ID = fmt.Sprintf("%s/%s/v%d/%d", d.s.Ref.Namespace, d.s.Ref.Name, d.s.Version, i)
		}
	}
	return *d.s, d.effects
}

// emit appends a status event whose snapshot is the state as it is now,
// caused by the observation being decided on.
func (d *decision) emit(typ string, data events.StatusData) {
	d.emitFor(d.cause, typ, data)
}

// emitFor is emit for an event that answers cause, a command decided on
// earlier whose effect shows only now (an abort's traffic back on stable, a
// restart or a deletion carried out).
func (d *decision) emitFor(cause Cause, typ string, data events.StatusData) {
	d.refreshPhase()
	data.Status = d.s.Snapshot(d.now)
	d.effects = append(d.effects, Effect{Status: &StatusEvent{Type: typ, Data: data, Cause: cause, Correlation: d.s.UpdateID}})
}

// refuse answers the command being decided on: it changes nothing, with
// code (events.Refused*) and reason.
func (d *decision) refuse(code, reason string) {
	typ := events.RefusedType(d.cause.Type)
	if d.experimentCmd {
		typ = events.TypeExperimentRefused
	}
	d.emit(typ, events.StatusData{
		Reason:  reason,
		Command: &events.CommandAnswer{Type: d.cause.Type, ID: d.cause.ID, Code: code, Reason: reason},
	})
	if d.experimentCmd && !d.s.isRollout() {
		// An experiment that is gone is still named as one.
		d.effects[len(d.effects)-1].Status.Data.Status.Kind = events.KindExperiment
	}
}

// fromOwner reports whether a report about task id may be taken from the
// service from: only the service that carries out the task may report on
// it (an empty from is trusted).
func (d *decision) fromOwner(from, id string) bool {
	if from == "" {
		return true
	}
	ref, ok := d.s.findTask(id)
	if !ok {
		return false
	}
	svc, err := tasks.Service(ref.t.Kind)
	return err == nil && svc == from
}
