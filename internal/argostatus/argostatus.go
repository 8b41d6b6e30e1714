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

// Rollout is what Argo's status depends on besides the snapshot: the
// cluster object's generation, its spec, and the status it has now (so
// that conditions keep their transition times and what other writers own
// is kept). The notifier, which has no cluster object, passes the spec
// and a nil Status.
type Rollout struct {
	// Generation is metadata.generation (0: none).
	Generation int64
	// WorkloadGeneration is the generation of the Deployment a
	// workloadRef names (0: none).
	WorkloadGeneration int64
	// Spec is the rollout's spec, defaulted (nil: unknown).
	Spec *spec.Rollout
	// Status is the status the object has now (nil: none).
	Status map[string]any
	// Replicas are the counts over the rollout's ReplicaSets, when the
	// caller has them; nil takes the snapshot's.
	Replicas *events.Replicas
}

// Status is the Rollout's whole status as Argo Rollouts' controller writes
// it, after data's snapshot, for ro. now stamps conditions that change.
// Every field is one Argo's CRD schema has: nothing here is pruned.
func Status(data events.StatusData, ro Rollout, now time.Time) map[string]any {
	st := FromSnapshot(data)
	delete(st, "sluice")
	r := data.Status.Replicas
	if ro.Replicas != nil {
		r = *ro.Replicas
	}
	for k, v := range Replicas(r) {
		st[k] = v
	}
	if ro.Spec != nil {
		st["selector"] = Selector(ro.Spec.Spec.Selector)
	}
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
