package machine

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// State is everything the orchestrator knows about one rollout. It is plain
// data: it survives a JSON round trip unchanged, and the zero State is a
// rollout nobody has requested yet.
//
// The service needs Version (to tell a changed state from an unchanged
// one), Ref (the rollout), NextWakeup (when to call Next with a Tick) and
// Snapshot (to render the status). The other fields are the machine's own
// bookkeeping and may change between releases.
//
// Spec is read-only: the machine replaces it and never changes it in
// place, so the state Next returns shares it with the state it was given,
// and so may its effects. A change to the machine that modifies it in
// place must copy it first (harness_test.go checks
// that Next leaves its input as it was).
type State struct {
	// Version increases by one on every change.
	Version int64      `json:"version"`
	Ref     events.Ref `json:"ref"`

	// Kind is spec.KindExperiment for a standalone Experiment (see
	// standalone.go), empty for a Rollout. ExperimentSpec is then the
	// accepted Experiment, defaulted; read-only, as Spec.
	Kind           string           `json:"kind,omitempty"`
	ExperimentSpec *spec.Experiment `json:"experimentSpec,omitempty"`

	// Spec is the latest accepted Rollout, defaulted, without its pod
	// template (History keeps templates), its status or the
	// kubectl.kubernetes.io/last-applied-configuration annotation.
	Spec *spec.Rollout `json:"spec,omitempty"`

	// Revision and PodHash name the revision being rolled out;
	// StableRevision and StableHash the one that serves when it is not.
	// They are equal when no update is in progress.
	Revision       int64  `json:"revision,omitempty"`
	PodHash        string `json:"podHash,omitempty"`
	StableRevision int64  `json:"stableRevision,omitempty"`
	StableHash     string `json:"stableHash,omitempty"`
	// History holds the templates of the current and stable revisions, of
	// every revision that still has pods, and of the last
	// revisionHistoryLimit others, oldest first.
	History []RevisionRecord `json:"history,omitempty"`

	// Step is the index of the current step of the plan: the canary steps,
	// or blue/green's preview, promote and postPromotionAnalysis stages.
	// It equals the plan's length once every step is done.
	Step int32 `json:"step,omitempty"`
	// StepPaused records that the current step has paused the rollout
	// once, so that a lifted pause is not added again.
	StepPaused bool `json:"stepPaused,omitempty"`
	// PauseUntil ends a timed pause (a pause step with a duration, or
	// blue/green autoPromotionSeconds).
	PauseUntil      time.Time               `json:"pauseUntil,omitzero"`
	PauseConditions []events.PauseCondition `json:"pauseConditions,omitempty"`
	// UserPaused is spec.paused or a pause command, lifted by resume or
	// promote.
	UserPaused  bool `json:"userPaused,omitempty"`
	PromoteFull bool `json:"promoteFull,omitempty"`

	Aborted     bool      `json:"aborted,omitempty"`
	AbortedAt   time.Time `json:"abortedAt,omitzero"`
	AbortReason string    `json:"abortReason,omitempty"`
	// AbortPending holds the aborted event back until the abort's routing
	// is in effect (or its route task failed), so that the event's
	// snapshot shows the traffic back on the stable revision.
	AbortPending bool `json:"abortPending,omitempty"`
	// AbortScaleDownAt is when an aborted canary or preview is scaled
	// down (abortScaleDownDelaySeconds after the abort; unset keeps it).
	AbortScaleDownAt time.Time `json:"abortScaleDownAt,omitzero"`
	// Failure says why a task could not be carried out when there was no
	// update to abort (or the abort itself failed).
	Failure string `json:"failure,omitempty"`
	// Completed is set once the current revision is stable and in place;
	// the completed event has been published.
	Completed bool `json:"completed,omitempty"`
	// Retries counts restarts of the current revision's plan (retry,
	// changed steps); it names their analysis runs apart.
	Retries int32 `json:"retries,omitempty"`

	// Phase and Message are the status Snapshot reports.
	Phase   string `json:"phase,omitempty"`
	Message string `json:"message,omitempty"`

	// Pods lists every revision that may have pods: the replicas last asked
	// for and the counts last reported.
	Pods []PodRecord `json:"pods,omitempty"`
	// Scale and Route are the latest task sent to the replicas and the
	// traffic service; each supersedes the ones before.
	Scale *TaskRecord `json:"scale,omitempty"`
	Route *TaskRecord `json:"route,omitempty"`
	// Routing is the routing table in effect: the content of the last route
	// task that finished.
	Routing *tasks.Route `json:"routing,omitempty"`
	// Runs are the analysis runs of the current revision, and older runs
	// still being terminated.
	Runs []RunRecord `json:"runs,omitempty"`
	// Experiments are the experiment steps' experiments that may still
	// have pods: the current step's, and ended ones until their pods are
	// gone, oldest first.
	Experiments []ExperimentRecord `json:"experiments,omitempty"`
	// LastAnalysis summarises the analysis run that reported last.
	LastAnalysis *events.AnalysisSummary `json:"lastAnalysis,omitempty"`
	// Seq is the last task sequence number used per worker service.
	Seq Seqs `json:"seq"`
	// EvaluatedAt is when deadlines were last evaluated; NextWakeup only
	// reports deadlines after it.
	EvaluatedAt time.Time `json:"evaluatedAt,omitzero"`

	// UpdateID is the id of the request (or undo command) that started the
	// current update: every status event carries it as its correlationid.
	UpdateID string `json:"updateId,omitempty"`
	// AbortCause is the abort command the pending aborted event answers.
	AbortCause Cause `json:"abortCause,omitzero"`
	// Restart is the restart of the stable revision's pods, in progress or
	// last done.
	Restart Restart `json:"restart,omitzero"`
	// Deleting means a delete command is being carried out: every revision
	// and route is being removed, and then the state is forgotten but for
	// Ref, Version and Seq. DeleteCause is that command.
	Deleting    bool  `json:"deleting,omitempty"`
	DeleteCause Cause `json:"deleteCause,omitzero"`
}

// Restart is a restart of the stable revision's pods, as Argo's
// spec.restartAt: pods started before At are replaced.
type Restart struct {
	At time.Time `json:"at,omitzero"`
	// Pending holds the restarted event until the scale task that carries
	// At has finished; Cause is the command (or request) it answers.
	Pending bool  `json:"pending,omitempty"`
	Cause   Cause `json:"cause,omitzero"`
	// Due is a spec.restartAt still in the future: the restart starts then.
	Due time.Time `json:"due,omitzero"`
}

// RevisionRecord is one revision of the pod template.
type RevisionRecord struct {
	Number   int64                  `json:"number"`
	Hash     string                 `json:"hash"`
	Template corev1.PodTemplateSpec `json:"template"`
}

// PodRecord is one revision's pods.
type PodRecord struct {
	Revision int64  `json:"revision"`
	Hash     string `json:"hash"`
	// Replicas is the count last asked for.
	Replicas int32 `json:"replicas"`
	// Current, Ready and Available were last reported by the replicas
	// service (Available is assumed to be Replicas after a scale task
	// succeeded without a report).
	Current   int32 `json:"current,omitempty"`
	Ready     int32 `json:"ready,omitempty"`
	Available int32 `json:"available,omitempty"`
	// ScaleDownAt delays the scale-down of a former stable revision.
	ScaleDownAt time.Time `json:"scaleDownAt,omitzero"`
}

// TaskRecord tracks one task sent to a worker, across its attempts. Its
// content is kept without pod templates and rollout annotations, which are added from the state when the task is sent.
type TaskRecord struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Seq      int64     `json:"seq"`
	Revision int64     `json:"revision"`
	Attempt  int       `json:"attempt"`
	SentAt   time.Time `json:"sentAt"`
	// StartBy is the start deadline, zero once Started.
	StartBy time.Time `json:"startBy,omitzero"`
	// FinishBy is the finish deadline (route timeout, progress deadline).
	FinishBy time.Time `json:"finishBy,omitzero"`
	Started  bool      `json:"started,omitempty"`
	// Done means finished with OutcomeSucceeded.
	Done bool `json:"done,omitempty"`
	// Failed means every attempt failed; Message says why.
	Failed bool `json:"failed,omitempty"`
	// Overdue means a scale task passed the progress deadline.
	Overdue bool   `json:"overdue,omitempty"`
	Message string `json:"message,omitempty"`

	Scale    *tasks.Scale    `json:"scale,omitempty"`
	Route    *tasks.Route    `json:"route,omitempty"`
	Analysis *tasks.Analysis `json:"analysis,omitempty"`
}

// active reports whether the task still waits for a worker.
func (t *TaskRecord) active() bool { return t != nil && !t.Done && !t.Failed }

// RunRecord is one analysis run.
type RunRecord struct {
	Name    string `json:"name"`
	Purpose string `json:"purpose"`
	// Step is the canary step of a step run.
	Step int32 `json:"step,omitempty"`
	// Phase is the run's verdict so far (Pending until the analyzer reports).
	Phase   string                  `json:"phase"`
	Summary *events.AnalysisSummary `json:"summary,omitempty"`
	// Measured is the highest measurement index reported per metric.
	Measured map[string]int `json:"measured,omitempty"`
	// Skipped marks an inconclusive run a promote moved past.
	Skipped bool        `json:"skipped,omitempty"`
	Task    TaskRecord  `json:"task"`
	Stop    *TaskRecord `json:"stop,omitempty"`
}

// finished reports whether the run has a final verdict.
func (r *RunRecord) finished() bool { return spec.AnalysisPhase(r.Phase).Completed() }

// Seqs is the last sequence number of each worker service's tasks.
type Seqs struct {
	Replicas int64 `json:"replicas,omitempty"`
	Traffic  int64 `json:"traffic,omitempty"`
	Analyzer int64 `json:"analyzer,omitempty"`
}

// NextWakeup returns the earliest deadline in the state after the last
// evaluation: a pause's end, a task's start or finish deadline, a delayed
// scale-down. The service calls Next with a Tick at that time. It returns
// false when nothing is scheduled. A deadline reached while something else
// holds its action back (a user pause, traffic still on a revision) is not
// reported again: the observation that lifts the hold re-evaluates it.
func (s State) NextWakeup() (time.Time, bool) {
	var best time.Time
	consider := func(t time.Time) {
		if t.IsZero() || !t.After(s.EvaluatedAt) {
			return
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	task := func(t *TaskRecord) {
		if !t.active() {
			return
		}
		if !t.Started {
			consider(t.StartBy)
		}
		if !t.Overdue {
			consider(t.FinishBy)
		}
	}
	task(s.Scale)
	task(s.Route)
	for i := range s.Runs {
		task(&s.Runs[i].Task)
		task(s.Runs[i].Stop)
	}
	consider(s.PauseUntil)
	consider(s.AbortScaleDownAt)
	consider(s.Restart.Due)
	for _, p := range s.Pods {
		if p.Replicas > 0 {
			consider(p.ScaleDownAt)
		}
	}
	for _, ex := range s.Experiments {
		consider(ex.EndsAt)
		for _, t := range ex.Templates {
			if t.Asked > 0 {
				consider(ex.ScaleDownAt)
			}
		}
	}
	return best, !best.IsZero()
}
