// Package machine is the orchestrator's step machine: a pure function from a
// rollout's state and one observation to its next state and the effects to
// carry out. It does no I/O and reads no clock: the caller passes now.
//
// The orchestrator service loads State from its key-value bucket, calls
// Next, stores the new State with compare-and-swap, and then publishes the
// effects (tasks to the worker services and status events). Timers are
// deadlines inside State; the service calls Next with a Tick observation at
// State.NextWakeup.
//
// The machine follows Argo Rollouts' semantics for canary and blue/green
// updates. It works like a controller: from the state it derives the
// replicas every revision should run and the routing table that should be
// in effect, and sends a task whenever that differs from the last task sent
// to the service. Each task carries the whole desired state, so it
// supersedes the earlier ones; the report of a superseded task is ignored. A
// step completes once the replicas and the traffic it asks for are in place
// (reported finished), its analysis has passed, or its pause has ended.
//
// Task IDs are <namespace>/<name>/r<revision>/<purpose>/<seq>: the rollout,
// the revision the task serves, what it is for (scale, route,
// analysis-<purpose>[-<step>], terminate-<purpose>[-<step>]) and its
// sequence number, which increases per rollout and worker service. A task
// sent again after a start timeout or a failure keeps its ID and Seq, with
// Attempt+1. Status event IDs are <namespace>/<name>/v<version>/<index>, the
// index being the effect's position among the effects of that version.
package machine

import (
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Observation is one thing that happened to a rollout. Exactly one field is set.
type Observation struct {
	// Request is a validated, defaulted Rollout from
	// io.sluice.rollout.requested.v1.
	Request *spec.Rollout `json:"request,omitempty"`
	// Experiment is a standalone Experiment from
	// io.sluice.experiment.requested.v1.
	Experiment *spec.Experiment `json:"experiment,omitempty"`
	// Command is an operator command.
	Command *Command `json:"command,omitempty"`
	// Started, Finished and Measured are reports of a task.
	Started  *tasks.Started  `json:"started,omitempty"`
	Finished *tasks.Finished `json:"finished,omitempty"`
	Measured *tasks.Measured `json:"measured,omitempty"`
	// From is the worker service whose result subject carried a report
	// (tasks.ServiceReplicas, ...). A report about another service's task
	// changes nothing: NATS permissions confine each worker to its own
	// result subjects, so a worker cannot report for another. Empty
	// trusts the report (tests, tools).
	From string `json:"from,omitempty"`
	// Tick means time has passed: deadlines at or before now fire.
	Tick bool `json:"tick,omitempty"`
	// Stored is when the bus stored a report or a timer event (zero:
	// now). A task's start and finish deadlines fire only when they had
	// passed by then, not merely by the time the message is decided: the
	// reports stored before it have been decided already (the results
	// stream hands a rollout's messages over in order), and a report
	// stored after it is decided next. So an orchestrator behind its own
	// backlog does not give up on a task whose report waits behind the
	// message it is deciding; the task's own timer event, stored when
	// the deadline came, fires it after every report stored before.
	Stored time.Time `json:"stored,omitzero"`
	// Cause is the command or request event that carried Request or
	// Command. The status events they cause carry it (causationid, actor),
	// and a command that changes nothing is answered with
	// events.TypeRolloutRefused naming it.
	Cause Cause `json:"cause,omitzero"`
}

// Cause is the event behind an observation: its CloudEvents id and type,
// and who sent it (the actor extension).
type Cause struct {
	ID    string `json:"id,omitempty"`
	Type  string `json:"type,omitempty"`
	Actor string `json:"actor,omitempty"`
}

// Command kinds.
const (
	CommandPromote = "promote"
	CommandAbort   = "abort"
	CommandRetry   = "retry"
	CommandPause   = "pause"
	CommandResume  = "resume"
	CommandUndo    = "undo"
	CommandRestart = "restart"
	CommandDelete  = "delete"
	// CommandTerminate ends a standalone experiment early.
	CommandTerminate = "terminate"
)

// Command is an operator command.
type Command struct {
	Kind string `json:"kind"`
	// Full is promote's "skip every remaining step".
	Full bool `json:"full,omitempty"`
	// ToRevision is undo's target; 0 means the revision before the current.
	ToRevision int64 `json:"toRevision,omitempty"`
	// Experiment marks a standalone experiment's command
	// (io.sluice.experiment.*): terminate or delete. A rollout's command
	// at an experiment, or an experiment's at a rollout, is refused
	// NotFound.
	Experiment bool `json:"experiment,omitempty"`
}

// Effect is one thing the service must do after storing the new state.
// Exactly one field is set.
type Effect struct {
	// Task is sent to the worker service that carries out its kind.
	Task *tasks.Task `json:"task,omitempty"`
	// Status is published on the rollout's status subject.
	Status *StatusEvent `json:"status,omitempty"`
}

// StatusEvent is a public status event: its type (events.TypeRollout*,
// events.TypeAnalysis*) and its data, whose Status snapshot the machine fills.
type StatusEvent struct {
	Type string            `json:"type"`
	Data events.StatusData `json:"data"`
	// ID is deterministic (rollout, state version, index), so a republished
	// effect is stored once.
	ID string `json:"id"`
	// Cause is the command or request that caused the event (zero when a
	// task report or a deadline did); the service sends it as the
	// causationid and actor extensions.
	Cause Cause `json:"cause,omitzero"`
	// Correlation is the id of the request (or undo) that started the
	// update the event belongs to: the correlationid extension.
	Correlation string `json:"correlation,omitempty"`
}
