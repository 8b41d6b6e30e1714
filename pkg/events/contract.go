package events

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Public event types. These names are Sluice's stable public API: a changed
// payload gets a new version suffix, never a changed meaning.
const (
	// Commands, published on CommandSubject.
	TypeRolloutRequested      = "io.sluice.rollout.requested.v1"        // data: the Rollout manifest as JSON
	TypeRolloutPromote        = "io.sluice.rollout.promote.v1"          // data: PromoteData
	TypeRolloutAbort          = "io.sluice.rollout.abort.v1"            // data: none or {}
	TypeRolloutRetry          = "io.sluice.rollout.retry.v1"            // data: none or {}
	TypeRolloutPause          = "io.sluice.rollout.pause.v1"            // data: none or {}
	TypeRolloutResume         = "io.sluice.rollout.resume.v1"           // data: none or {}
	TypeRolloutUndo           = "io.sluice.rollout.undo.v1"             // data: UndoData (optional)
	TypeRolloutRestart        = "io.sluice.rollout.restart.v1"          // data: none or {}
	TypeRolloutDelete         = "io.sluice.rollout.delete.v1"           // data: none or {}
	TypeAnalysisTemplateApply = "io.sluice.analysistemplate.applied.v1" // data: AnalysisTemplate or ClusterAnalysisTemplate manifest
	TypeExperimentRequested   = "io.sluice.experiment.requested.v1"     // data: the Experiment manifest as JSON
	TypeExperimentTerminate   = "io.sluice.experiment.terminate.v1"     // data: none or {}
	TypeExperimentDelete      = "io.sluice.experiment.delete.v1"        // data: none or {}

	// Status, published on StatusSubject. Data: StatusData.
	TypeRolloutAccepted      = "io.sluice.rollout.accepted.v1"
	TypeRolloutRejected      = "io.sluice.rollout.rejected.v1"
	TypeRolloutStepStarted   = "io.sluice.rollout.step.started.v1"
	TypeRolloutStepCompleted = "io.sluice.rollout.step.completed.v1"
	TypeRolloutPaused        = "io.sluice.rollout.paused.v1"
	TypeRolloutResumed       = "io.sluice.rollout.resumed.v1"
	TypeRolloutAborted       = "io.sluice.rollout.aborted.v1"
	TypeRolloutCompleted     = "io.sluice.rollout.completed.v1"
	TypeRolloutDegraded      = "io.sluice.rollout.degraded.v1"
	TypeRolloutRestarted     = "io.sluice.rollout.restarted.v1"
	TypeRolloutDeleted       = "io.sluice.rollout.deleted.v1"
	TypeRolloutRefused       = "io.sluice.rollout.command.refused.v1"
	TypeAnalysisMeasured     = "io.sluice.analysis.measured.v1"
	TypeAnalysisCompleted    = "io.sluice.analysis.completed.v1"

	// Status of a standalone Experiment, on the StatusSubject of its name.
	// Data: StatusData, whose Status has Kind "Experiment", the experiment's
	// phase (ExperimentPhase*) and its Experiment summary. Its analysis
	// runs report with TypeAnalysisMeasured and TypeAnalysisCompleted.
	TypeExperimentAccepted   = "io.sluice.experiment.accepted.v1"
	TypeExperimentRejected   = "io.sluice.experiment.rejected.v1"
	TypeExperimentRunning    = "io.sluice.experiment.running.v1"   // every template's pods available; analyses start
	TypeExperimentCompleted  = "io.sluice.experiment.completed.v1" // a verdict: phase Successful, Failed, Error or Inconclusive
	TypeExperimentTerminated = "io.sluice.experiment.terminated.v1"
	TypeExperimentDeleted    = "io.sluice.experiment.deleted.v1"
	TypeExperimentRefused    = "io.sluice.experiment.command.refused.v1"
)

// Phases of a standalone Experiment (Snapshot.Phase with Kind
// KindExperiment), as Argo names them, plus Terminated for one stopped by
// a terminate command, spec.terminate or its deletion before its verdict.
const (
	ExperimentPhasePending      = "Pending"
	ExperimentPhaseRunning      = "Running"
	ExperimentPhaseSuccessful   = "Successful"
	ExperimentPhaseFailed       = "Failed"
	ExperimentPhaseError        = "Error"
	ExperimentPhaseInconclusive = "Inconclusive"
	ExperimentPhaseTerminated   = "Terminated"
)

// KindExperiment is Snapshot.Kind of a standalone Experiment.
const KindExperiment = "Experiment"

// CommandTypes lists every type accepted on a command subject.
var CommandTypes = []string{
	TypeRolloutRequested, TypeRolloutPromote, TypeRolloutAbort, TypeRolloutRetry,
	TypeRolloutPause, TypeRolloutResume, TypeRolloutUndo, TypeRolloutRestart,
	TypeRolloutDelete, TypeAnalysisTemplateApply,
	TypeExperimentRequested, TypeExperimentTerminate, TypeExperimentDelete,
}

// OperatorCommandTypes lists the commands that act on an existing rollout
// or experiment. Each is answered (see ExtCausationID): by the status
// events it caused, or by TypeRolloutRefused (TypeExperimentRefused for an
// experiment's command).
var OperatorCommandTypes = []string{
	TypeRolloutPromote, TypeRolloutAbort, TypeRolloutRetry, TypeRolloutPause,
	TypeRolloutResume, TypeRolloutUndo, TypeRolloutRestart, TypeRolloutDelete,
	TypeExperimentTerminate, TypeExperimentDelete,
}

// ExperimentCommandTypes lists the commands about a standalone Experiment.
var ExperimentCommandTypes = []string{TypeExperimentRequested, TypeExperimentTerminate, TypeExperimentDelete}

// RefusedType is the type of the refusal that answers a command of type
// typ: TypeExperimentRefused for an experiment's, TypeRolloutRefused for
// every other.
func RefusedType(typ string) string {
	if slices.Contains(ExperimentCommandTypes, typ) {
		return TypeExperimentRefused
	}
	return TypeRolloutRefused
}

// StatusTypes lists every type published on a status subject.
var StatusTypes = []string{
	TypeRolloutAccepted, TypeRolloutRejected, TypeRolloutStepStarted,
	TypeRolloutStepCompleted, TypeRolloutPaused, TypeRolloutResumed,
	TypeRolloutAborted, TypeRolloutCompleted, TypeRolloutDegraded,
	TypeRolloutRestarted, TypeRolloutDeleted, TypeRolloutRefused,
	TypeAnalysisMeasured, TypeAnalysisCompleted,
	TypeExperimentAccepted, TypeExperimentRejected, TypeExperimentRunning,
	TypeExperimentCompleted, TypeExperimentTerminated, TypeExperimentDeleted,
	TypeExperimentRefused,
}

// CloudEvents extensions of the contract.
const (
	// ExtCausationID, on a status event, is the id of the command (or
	// request) that caused it. A command is answered by the events that
	// carry its id here; a command that changed nothing by one
	// TypeRolloutRefused event.
	ExtCausationID = "causationid"
	// ExtActor says who asked: on a command, set by whoever publishes it
	// ("user:alice", "ci:github/acme/shop", "slack:U024BE7LH"); on a status
	// event, copied from the command that caused it.
	ExtActor = "actor"
	// ExtCorrelationID, on a status event, is the id of the
	// rollout.requested event of the update the event belongs to (for an
	// update started by undo, the undo command's id).
	ExtCorrelationID = "correlationid"
)

// Extension returns the string value of a CloudEvents extension of ev, or
// "" when it is not set.
func Extension(ev Event, name string) string {
	v, ok := ev.Extensions()[name]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// Codes of a refused command (CommandAnswer.Code).
const (
	// RefusedNotFound: no such rollout.
	RefusedNotFound = "NotFound"
	// RefusedInvalid: the command cannot be carried out as asked (an undo
	// to a revision no longer kept).
	RefusedInvalid = "Invalid"
	// RefusedNotApplicable: nothing to do in the rollout's phase (promote
	// on a Healthy rollout).
	RefusedNotApplicable = "NotApplicable"
	// RefusedForbidden: refused at an edge (gateway, notifier) because the
	// caller may not.
	RefusedForbidden = "Forbidden"
)

// CommandAnswer is the command a TypeRolloutRefused event answers.
type CommandAnswer struct {
	// Type and ID are the command's CloudEvents type and id.
	Type string `json:"type"`
	ID   string `json:"id"`
	// Code is one of the Refused* codes; Reason says why, for people.
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// Subject roots. Commands and status are public; tasks, results and dead
// letters are Sluice's own and documented in docs/events.md.
const (
	CommandRoot    = "sluice.cmd"
	StatusRoot     = "sluice.status"
	TaskRoot       = "sluice.task"
	ResultRoot     = "sluice.result"
	DeadLetterRoot = "sluice.dlq"
)

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName returns nil when name is a DNS-1123 label (lower-case
// alphanumerics and '-', starting and ending alphanumeric, at most 63
// characters), and an error wrapping ErrInvalidName otherwise. what names the
// field in the message ("namespace", "rollout").
func ValidateName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s must not be empty", ErrInvalidName, what)
	case len(name) > 63:
		return fmt.Errorf("%w: %s %q is longer than 63 characters", ErrInvalidName, what, name)
	case !dns1123Label.MatchString(name):
		return fmt.Errorf("%w: %s %q must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit", ErrInvalidName, what, name)
	}
	return nil
}

// Ref names one rollout (or one analysis template) in a namespace.
type Ref struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// String renders the ref as the CloudEvent subject attribute: namespace/name.
func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Validate checks both parts are DNS-1123 labels.
func (r Ref) Validate() error {
	if err := ValidateName("namespace", r.Namespace); err != nil {
		return err
	}
	return ValidateName("name", r.Name)
}

// ParseRef parses "namespace/name" (the CloudEvent subject attribute). A bare
// "name" is taken to be in namespace "default".
func ParseRef(s string) (Ref, error) {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = "default", s
	}
	r := Ref{Namespace: ns, Name: name}
	return r, r.Validate()
}

// CommandSubject is where commands for one rollout or template are published:
// sluice.cmd.<namespace>.<name>.
func CommandSubject(r Ref) string { return CommandRoot + "." + r.Namespace + "." + r.Name }

// ClusterScope is the namespace token of a cluster-scoped object's ref and
// subject: a ClusterAnalysisTemplate is applied as Ref{Namespace:
// ClusterScope, Name: name}, at sluice.cmd.cluster.<name>. The manifest's
// kind, not the token, makes a template cluster-scoped.
const ClusterScope = "cluster"

// StatusSubject is where the status events of one rollout are published:
// sluice.status.<namespace>.<name>.
func StatusSubject(r Ref) string { return StatusRoot + "." + r.Namespace + "." + r.Name }

// TaskSubject is where the orchestrator sends a task to one worker service:
// sluice.task.<service>.<namespace>.<name>.
func TaskSubject(service string, r Ref) string {
	return TaskRoot + "." + service + "." + r.Namespace + "." + r.Name
}

// ResultSubject is where a worker service reports task progress back to the
// orchestrator: sluice.result.<service>.<namespace>.<name>. The service
// token lets NATS permissions confine each worker to its own reports, and
// the orchestrator accepts a report only from the service that carries out
// the task.
func ResultSubject(service string, r Ref) string {
	return ResultRoot + "." + service + "." + r.Namespace + "." + r.Name
}

// ServiceFromSubject is the <service> token of a task or result subject.
func ServiceFromSubject(subject string) (string, error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != "sluice" || parts[1] != "task" && parts[1] != "result" {
		return "", fmt.Errorf("%w: subject %q is not sluice.{task,result}.<service>.<namespace>.<name>", ErrInvalidName, subject)
	}
	return parts[2], nil
}

// RefFromSubject extracts the rollout from a command, status, result or task
// subject. It fails for subjects outside the contract.
func RefFromSubject(subject string) (Ref, error) {
	parts := strings.Split(subject, ".")
	var ns, name string
	switch {
	case len(parts) == 4 && parts[0] == "sluice" && (parts[1] == "cmd" || parts[1] == "status"):
		ns, name = parts[2], parts[3]
	case len(parts) == 5 && parts[0] == "sluice" && (parts[1] == "task" || parts[1] == "result"):
		ns, name = parts[3], parts[4]
	default:
		return Ref{}, fmt.Errorf("%w: subject %q is not sluice.{cmd,status}.<namespace>.<name> or sluice.{task,result}.<service>.<namespace>.<name>", ErrInvalidName, subject)
	}
	r := Ref{Namespace: ns, Name: name}
	return r, r.Validate()
}

// PromoteData is the data of io.sluice.rollout.promote.v1.
type PromoteData struct {
	// Full skips every remaining step, analysis and pause.
	Full bool `json:"full"`
}

// UndoData is the data of io.sluice.rollout.undo.v1.
type UndoData struct {
	// ToRevision is the revision to roll back to; nil or 0 means the one
	// before the current revision.
	ToRevision *int64 `json:"toRevision,omitempty"`
}

// Rollout phases, as Argo Rollouts names them.
const (
	PhaseProgressing = "Progressing"
	PhasePaused      = "Paused"
	PhaseHealthy     = "Healthy"
	PhaseDegraded    = "Degraded"
)

// StatusData is the data of every status event. Status is always present: a
// bot renders the whole rollout from one event. The other fields are set by
// the event types noted on each.
type StatusData struct {
	Status Snapshot `json:"status"`

	// Step is set on step.started and step.completed.
	Step *StepInfo `json:"step,omitempty"`
	// Errors lists every validation problem with its field path (rejected).
	Errors []string `json:"errors,omitempty"`
	// Warnings lists what an accepted request set that Sluice does not
	// know (unknown fields, with their path): accepted, not dropped silently.
	Warnings []string `json:"warnings,omitempty"`
	// Reason says why a rollout was paused, aborted, rejected, degraded,
	// restarted or deleted.
	Reason string `json:"reason,omitempty"`
	// Measurement is set on analysis.measured.
	Measurement *Measurement `json:"measurement,omitempty"`
	// Analysis is set on analysis.measured and analysis.completed.
	Analysis *AnalysisSummary `json:"analysis,omitempty"`
	// Command is set on command.refused: the command and why it changed
	// nothing. Status is then the rollout's snapshot, or only its
	// namespace and name when it does not exist.
	Command *CommandAnswer `json:"command,omitempty"`
}

// Snapshot is a rollout's whole status at the moment an event was published
// (or a standalone Experiment's, with Kind KindExperiment).
type Snapshot struct {
	// Kind is KindExperiment for a standalone Experiment, whose snapshot
	// has its Phase (ExperimentPhase*), Message, Experiment and Runs; it
	// is empty for a Rollout.
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Strategy is "canary" or "blueGreen" (spec.Strategy).
	Strategy string `json:"strategy,omitempty"`
	// Phase is Progressing, Paused, Healthy or Degraded (for an
	// Experiment, one of the ExperimentPhase*).
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	// Revision is the revision being rolled out; StableRevision the one that
	// serves when it is not.
	Revision       int64  `json:"revision"`
	StableRevision int64  `json:"stableRevision"`
	PodHash        string `json:"podHash,omitempty"`
	StablePodHash  string `json:"stablePodHash,omitempty"`
	// StepIndex is the current canary step (nil before the first step and
	// for blue/green); StepCount the number of steps.
	StepIndex    *int32   `json:"stepIndex,omitempty"`
	StepCount    int32    `json:"stepCount"`
	CanaryWeight int32    `json:"canaryWeight"`
	StableWeight int32    `json:"stableWeight"`
	Replicas     Replicas `json:"replicas"`
	// PauseConditions are Argo's: CanaryPauseStep, BlueGreenPause,
	// InconclusiveAnalysisRun, InconclusiveExperiment.
	PauseConditions []PauseCondition `json:"pauseConditions,omitempty"`
	Aborted         bool             `json:"aborted,omitempty"`
	// AbortedAt is when the update was aborted (set while Aborted).
	AbortedAt time.Time `json:"abortedAt,omitzero"`
	// PromoteFull is set while a full promotion (promote {"full": true})
	// skips the update's remaining steps, pauses and analysis.
	PromoteFull bool `json:"promoteFull,omitempty"`
	// UserPaused is set while the rollout is paused by spec.paused or a
	// pause command (lifted by resume or promote), as opposed to paused by
	// a step, which PauseConditions alone show.
	UserPaused bool `json:"userPaused,omitempty"`
	// ActivePodHash and PreviewPodHash are the revisions blue/green's
	// active and preview Services select (blue/green only).
	ActivePodHash  string `json:"activePodHash,omitempty"`
	PreviewPodHash string `json:"previewPodHash,omitempty"`
	// Analysis summarises the analysis run in progress or last finished.
	Analysis *AnalysisSummary `json:"analysis,omitempty"`
	// Runs are the current update's analysis runs that it still needs
	// (running, or finished and still in force, such as a background run)
	// or is stopping, oldest first. A run the update has moved past (its
	// step completed, the update aborted or promoted) is dropped, as
	// Argo's status drops it; analysis.completed reported its verdict.
	Runs []RunSummary `json:"runs,omitempty"`
	// RestartedAt is the time of the last restart of the stable
	// revision's pods (the restart command's time, or spec.restartAt) once
	// every pod started before it was replaced: Argo's status.restartedAt.
	RestartedAt time.Time `json:"restartedAt,omitzero"`
	UpdatedAt   time.Time `json:"updatedAt"`
	// Experiment is the experiment of the current experiment step, from
	// the moment the step starts it until its pods are removed (also
	// while an ended one scales down); nil otherwise.
	Experiment *ExperimentSummary `json:"experiment,omitempty"`
}

// ExperimentSummary is the experiment of a canary experiment step.
type ExperimentSummary struct {
	// Name is Argo's <rollout>-<pod hash>-<revision>-<step> (-<n> after
	// the n-th retry of the update).
	Name string `json:"name"`
	// Step is the canary step that started it.
	Step int32 `json:"step"`
	// Phase is Pending (pods coming up), Running, Successful, Failed,
	// Error, Inconclusive, or Terminated (ended by an abort, a promotion
	// or a new revision before its verdict).
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	// AvailableAt is when every template's pods were first available: the
	// analyses and the duration start then.
	AvailableAt time.Time `json:"availableAt,omitzero"`
	// EndedAt is when it ended; ScaleDownAt when its pods are (or were)
	// scaled down.
	EndedAt     time.Time `json:"endedAt,omitzero"`
	ScaleDownAt time.Time `json:"scaleDownAt,omitzero"`
	// Templates are its pods, one entry per template, in the step's order.
	Templates []ExperimentTemplateSummary `json:"templates"`
	// Runs names its analysis runs (<experiment>-<analysis name>); their
	// phases are in Snapshot.Runs, purpose "experiment".
	Runs []string `json:"runs,omitempty"`
}

// ExperimentTemplateSummary is one template's pods of an experiment.
type ExperimentTemplateSummary struct {
	Name string `json:"name"`
	// PodHash is the pod-template hash of the template's pods (equal to
	// the stable's for a specRef: stable template without metadata).
	PodHash string `json:"podHash"`
	// ReplicaSet is <experiment>-<template>, the pods' ReplicaSet (the
	// process name on the local platform).
	ReplicaSet string `json:"replicaSet"`
	// Replicas is the count asked for now; Available the count last
	// reported available.
	Replicas  int32 `json:"replicas"`
	Available int32 `json:"available"`
	// Weight is the share of traffic (of maxTrafficWeight) it is given
	// while running (0: none), through Service.
	Weight  int32  `json:"weight,omitempty"`
	Service string `json:"service,omitempty"`
}

// RunSummary is one analysis run of a rollout's current update.
type RunSummary struct {
	Name string `json:"name"`
	// Purpose is background, step, prePromotion, postPromotion or
	// experiment (an experiment step's analysis).
	Purpose string `json:"purpose"`
	// Step is the canary step of a step or experiment run.
	Step *int32 `json:"step,omitempty"`
	// Phase is Pending, Running, Successful, Failed, Error, Inconclusive or
	// Terminated.
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
}

// Replicas counts pods across the rollout's revisions.
type Replicas struct {
	Desired   int32 `json:"desired"`
	Current   int32 `json:"current"`
	Updated   int32 `json:"updated"`
	Ready     int32 `json:"ready"`
	Available int32 `json:"available"`
}

// PauseCondition records why and since when a rollout is paused.
type PauseCondition struct {
	Reason    string    `json:"reason"`
	StartTime time.Time `json:"startTime"`
}

// StepInfo describes one canary step (or blue/green stage).
type StepInfo struct {
	Index int32 `json:"index"`
	// Action is the step's kind: setWeight, pause, analysis, setCanaryScale,
	// setHeaderRoute, setMirrorRoute, experiment; for blue/green: preview,
	// promote, postPromotionAnalysis.
	Action string `json:"action"`
	// Detail renders the step for people, e.g. "setWeight 20".
	Detail string `json:"detail,omitempty"`
}

// AnalysisTerminated is the phase of an analysis run stopped before its
// verdict (promoted past, aborted, replaced by a new revision); Message
// says why. Such a run did not pass.
const AnalysisTerminated = "Terminated"

// AnalysisSummary is an analysis run's verdict so far.
type AnalysisSummary struct {
	Name string `json:"name"`
	// Phase is Pending, Running, Successful, Failed, Error, Inconclusive or
	// Terminated (AnalysisTerminated).
	Phase        string `json:"phase"`
	Message      string `json:"message,omitempty"`
	Successful   int32  `json:"successful"`
	Failed       int32  `json:"failed"`
	Inconclusive int32  `json:"inconclusive"`
	Error        int32  `json:"error"`
}

// Measurement is one observation of one metric, with what produced it.
type Measurement struct {
	Metric string `json:"metric"`
	// Phase is Successful, Failed, Inconclusive or Error.
	Phase      string    `json:"phase"`
	Value      string    `json:"value,omitempty"`
	Query      string    `json:"query,omitempty"`
	Provider   string    `json:"provider,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
}
