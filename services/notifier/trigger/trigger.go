// Package trigger says which notification triggers a status event fires,
// and builds what templates and conditions see: the rollout as Argo
// Rollouts' object, the configuration's context and Sluice's extras. Pure.
package trigger

import (
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Argo Rollouts' built-in triggers (its notification catalog's names).
const (
	RolloutCompleted     = "on-rollout-completed"
	RolloutStepCompleted = "on-rollout-step-completed"
	RolloutUpdated       = "on-rollout-updated"
	RolloutAborted       = "on-rollout-aborted"
	RolloutPaused        = "on-rollout-paused"
	AnalysisRunRunning   = "on-analysis-run-running"
	AnalysisRunFailed    = "on-analysis-run-failed"
	AnalysisRunError     = "on-analysis-run-error"
	ScalingReplicaSet    = "on-scaling-replica-set"
)

// Sluice's own triggers, for status events Argo has no trigger for.
const (
	RolloutDegraded  = "on-rollout-degraded"
	RolloutRejected  = "on-rollout-rejected"
	RolloutResumed   = "on-rollout-resumed"
	RolloutRestarted = "on-rollout-restarted"
	RolloutDeleted   = "on-rollout-deleted"
	CommandRefused   = "on-command-refused"
)

// Argo lists Argo Rollouts' triggers; Sluice lists Sluice's own.
var (
	Argo = []string{
		RolloutCompleted, RolloutStepCompleted, RolloutUpdated, RolloutAborted, RolloutPaused,
		AnalysisRunRunning, AnalysisRunFailed, AnalysisRunError, ScalingReplicaSet,
	}
	Sluice = []string{RolloutDegraded, RolloutRejected, RolloutResumed, RolloutRestarted, RolloutDeleted, CommandRefused}
)

// All lists every trigger a status event can fire.
func All() []string { return append(append([]string(nil), Argo...), Sluice...) }

// Known reports whether name is one of All.
func Known(name string) bool {
	for _, t := range All() {
		if t == name {
			return true
		}
	}
	return false
}

// Of returns the triggers the status event ev (its data decoded) fires.
// prev is the rollout's snapshot from the status event before ev, nil
// when the caller does not have it (the first event it sees, after a
// restart). The mapping:
//
//   - completed: on-rollout-completed
//   - step.completed of a canary step: on-rollout-step-completed (not a
//     blue/green stage: Argo has no steps there)
//   - accepted of a new revision (its revision differs from prev's, or
//     there is no prev): on-rollout-updated, as Argo's "Rollout updated to
//     revision N"; a request that changes nothing fires nothing
//   - aborted: on-rollout-aborted
//   - paused (a pause step, blue/green's wait for promotion, an
//     inconclusive analysis, an operator's pause, spec.paused):
//     on-rollout-paused
//   - analysis.measured whose run has exactly one measurement so far (the
//     summary's counts add up to 1): on-analysis-run-running, once per run
//     with no state kept, as Argo fires it when a run starts
//   - analysis.completed Failed: on-analysis-run-failed; Error:
//     on-analysis-run-error
//   - any event but deleted and command.refused whose desired or updated
//     replica count differs from prev's: on-scaling-replica-set. There is
//     no status event for a scale alone: the change is seen on the next
//     event, and never without prev
//   - degraded, rejected, resumed, restarted, deleted, command.refused:
//     Sluice's triggers of those names
func Of(ev events.Event, data events.StatusData, prev *events.Snapshot) []string {
	var out []string
	switch ev.Type() {
	case events.TypeRolloutCompleted:
		out = append(out, RolloutCompleted)
	case events.TypeRolloutStepCompleted:
		// Argo's steps are a canary's; blue/green's stages (preview,
		// promote, post-promotion analysis) are Sluice's and have no
		// spec.strategy.canary.steps for the catalog's template to count.
		if data.Status.StepIndex != nil {
			out = append(out, RolloutStepCompleted)
		}
	case events.TypeRolloutAccepted:
		if prev == nil || prev.Revision != data.Status.Revision {
			out = append(out, RolloutUpdated)
		}
	case events.TypeRolloutAborted:
		out = append(out, RolloutAborted)
	case events.TypeRolloutPaused:
		out = append(out, RolloutPaused)
	case events.TypeAnalysisMeasured:
		if a := data.Analysis; a != nil && int64(a.Successful)+int64(a.Failed)+int64(a.Inconclusive)+int64(a.Error) == 1 {
			out = append(out, AnalysisRunRunning)
		}
	case events.TypeAnalysisCompleted:
		if a := data.Analysis; a != nil {
			switch a.Phase {
			case string(spec.AnalysisPhaseFailed):
				out = append(out, AnalysisRunFailed)
			case string(spec.AnalysisPhaseError):
				out = append(out, AnalysisRunError)
			}
		}
	case events.TypeRolloutDegraded:
		out = append(out, RolloutDegraded)
	case events.TypeRolloutRejected:
		out = append(out, RolloutRejected)
	case events.TypeRolloutResumed:
		out = append(out, RolloutResumed)
	case events.TypeRolloutRestarted:
		out = append(out, RolloutRestarted)
	case events.TypeRolloutDeleted:
		out = append(out, RolloutDeleted)
	case events.TypeRolloutRefused:
		out = append(out, CommandRefused)
	}
	switch ev.Type() {
	case events.TypeRolloutDeleted, events.TypeRolloutRefused:
	default:
		if prev != nil && (prev.Replicas.Desired != data.Status.Replicas.Desired || prev.Replicas.Updated != data.Status.Replicas.Updated) {
			out = append(out, ScalingReplicaSet)
		}
	}
	return out
}
