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
// older attempt, a duplicate, a command with nothing to act on, a request
// for another rollout) returns st unchanged and no effects. Otherwise the
// observation is applied, every deadline at or before now fires, and the
// rollout moves as far as it can; when anything changed, the returned
// state's Version is st.Version+1. Next on the zero State with a Request
// creates the rollout. st itself is never modified. The new state and the
// effects share st's Spec and analysis templates, which are read-only (see
// State).
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
	r := &run{cfg: m.Config.effective(), s: &s, now: now.UTC().Round(0)}
	if !r.observe(obs) {
		return st, nil
	}
	r.reconcile()
	return r.finish(st)
}

// recoverPanics is turned off by the tests, so that bugs surface.
var recoverPanics = true

// run is one call of Next.
type run struct {
	cfg     Config
	s       *State
	now     time.Time
	effects []Effect
}

func (r *run) observe(o Observation) bool {
	switch {
	case o.Request != nil:
		return r.request(o.Request, o.Templates)
	case o.Command != nil:
		return r.s.Revision != 0 && r.command(*o.Command)
	case o.Started != nil:
		return r.fromOwner(o.From, o.Started.TaskID) && r.started(*o.Started)
	case o.Finished != nil:
		return r.fromOwner(o.From, o.Finished.TaskID) && r.finished(*o.Finished)
	case o.Measured != nil:
		return r.fromOwner(o.From, o.Measured.TaskID) && r.measured(*o.Measured)
	case o.Tick:
		return r.s.Revision != 0
	}
	return false
}

// reconcile fires due deadlines and moves the rollout as far as it can
// without new reports, then sends the tasks the new state needs.
func (r *run) reconcile() {
	if r.s.Revision == 0 {
		r.refreshPhase()
		return
	}
	r.fireTaskDeadlines()
	for i := 0; i < 64 && r.progress(); i++ {
	}
	r.syncRuns()
	r.syncScale()
	r.syncRoute()
	r.announceAbort()
	r.pruneHistory()
	r.refreshPhase()
}

// finish numbers the effects and the version, or returns before unchanged
// when nothing changed: no effects, and the same JSON form, which is what
// the orchestrator stores.
func (r *run) finish(before State) (State, []Effect) {
	if due, ok := before.NextWakeup(); ok && !due.After(r.now) {
		r.s.EvaluatedAt = r.now
	}
	if len(r.effects) == 0 && r.s.sameJSON(&before) {
		return before, nil
	}
	r.s.EvaluatedAt = r.now
	r.s.Version = before.Version + 1
	for i := range r.effects {
		if st := r.effects[i].Status; st != nil {
			st.ID = fmt.Sprintf("%s/%s/v%d/%d", r.s.Ref.Namespace, r.s.Ref.Name, r.s.Version, i)
		}
	}
	return *r.s, r.effects
}

// emit appends a status event whose snapshot is the state as it is now.
func (r *run) emit(typ string, data events.StatusData) {
	r.refreshPhase()
	data.Status = r.s.Snapshot(r.now)
	r.effects = append(r.effects, Effect{Status: &StatusEvent{Type: typ, Data: data}})
}

// fromOwner reports whether a report about task id may be taken from the
// service from: only the service that carries out the task may report on
// it (an empty from is trusted).
func (r *run) fromOwner(from, id string) bool {
	if from == "" {
		return true
	}
	ref, ok := r.s.findTask(id)
	if !ok {
		return false
	}
	svc, err := tasks.Service(ref.t.Kind)
	return err == nil && svc == from
}
