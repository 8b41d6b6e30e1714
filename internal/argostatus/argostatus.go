// Package argostatus maps a Sluice status snapshot onto Argo Rollouts'
// Rollout status fields. The CRD status writer (services/replicas/kube/crd)
// writes them into cluster objects, and the notifier renders templates
// against them; both use this one mapping so the two never drift.
package argostatus

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// FromSnapshot returns Argo's status fields that data's snapshot owns:
// phase, message, currentPodHash, stableRS, abort, currentStepIndex (when
// the rollout is on a step), pauseConditions, canary.weights (canary
// only), and Sluice's own under "sluice" (updatedAt, revision,
// stableRevision, reason, errors). It leaves out the replica counts
// (Replicas) and what belongs to a cluster object (observedGeneration,
// selector, restartedAt). Integers are int64, as in unstructured objects.
func FromSnapshot(data events.StatusData) map[string]any {
	snap := data.Status
	st := map[string]any{
		"phase":          snap.Phase,
		"message":        snap.Message,
		"currentPodHash": snap.PodHash,
		"stableRS":       snap.StablePodHash,
		"abort":          snap.Aborted,
	}
	if snap.StepIndex != nil {
		st["currentStepIndex"] = int64(*snap.StepIndex)
	}
	if len(snap.PauseConditions) > 0 {
		var pcs []any
		for _, pc := range snap.PauseConditions {
			pcs = append(pcs, map[string]any{"reason": pc.Reason, "startTime": pc.StartTime.UTC().Format(time.RFC3339)})
		}
		st["pauseConditions"] = pcs
	}
	if snap.Strategy == string(spec.StrategyCanary) {
		st["canary"] = map[string]any{"weights": map[string]any{
			"canary": map[string]any{"weight": int64(snap.CanaryWeight), "podTemplateHash": snap.PodHash},
			"stable": map[string]any{"weight": int64(snap.StableWeight), "podTemplateHash": snap.StablePodHash},
		}}
	}
	sl := map[string]any{
		"updatedAt":      snap.UpdatedAt.UTC().Format(time.RFC3339Nano),
		"revision":       snap.Revision,
		"stableRevision": snap.StableRevision,
	}
	if data.Reason != "" {
		sl["reason"] = data.Reason
	}
	if len(data.Errors) > 0 {
		errs := make([]any, len(data.Errors))
		for i, e := range data.Errors {
			errs[i] = e
		}
		sl["errors"] = errs
	}
	st["sluice"] = sl
	return st
}

// Replicas returns Argo's replica count fields (replicas, updatedReplicas,
// readyReplicas, availableReplicas) from a snapshot's counts. The CRD
// writer takes them from the ReplicaSets instead; the notifier from the
// snapshot.
func Replicas(r events.Replicas) map[string]any {
	return map[string]any{
		"replicas":          int64(r.Current),
		"updatedReplicas":   int64(r.Updated),
		"readyReplicas":     int64(r.Ready),
		"availableReplicas": int64(r.Available),
	}
}

// Selector renders a Rollout's spec.selector as Argo's status.selector
// ("app=shop"); "" when it is unset or invalid.
func Selector(sel *metav1.LabelSelector) string {
	if sel == nil {
		return ""
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	return s.String()
}
