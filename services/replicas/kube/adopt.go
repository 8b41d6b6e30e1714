package kube

import (
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/pkg/events"
)

// A rollout's ReplicaSets are those labelled RolloutLabel with its name
// (every ReplicaSet the backend created) and those its Rollout object
// controls: Argo Rollouts' controller creates ReplicaSets with the same
// name, pod hash and revision annotation, owned by the Rollout, but without
// Sluice's label. The backend adopts them on its first write (adding the
// label and its bookkeeping annotations, never touching the pod template's
// hash), so that taking over a Rollout from Argo keeps its pods, and an
// undo to a revision Argo made reuses that revision's ReplicaSet.

// belongs reports whether rs is one of ref's revision ReplicaSets (an
// experiment template's never is: see experimentOf). owner, when
// known, is the Rollout object now: a ReplicaSet controlled by an earlier
// Rollout of the same name (another uid) is not this one's; the garbage
// collector deletes it.
func belongs(rs *appsv1.ReplicaSet, ref events.Ref, owner *metav1.OwnerReference) bool {
	if isExperiment(rs) {
		return false // an experiment template's, not a revision's
	}
	if rs.Labels[RolloutLabel] == ref.Name {
		return true
	}
	c := metav1.GetControllerOf(rs)
	if c == nil || c.Kind != "Rollout" || c.Name != ref.Name {
		return false
	}
	gv, err := schema.ParseGroupVersion(c.APIVersion)
	if err != nil || gv.Group != RolloutResource.Group {
		return false
	}
	return owner == nil || owner.UID == c.UID
}

// adopt marks rs (a copy) as the backend's, for rollout ref.
func adopt(rs *appsv1.ReplicaSet, ref events.Ref) {
	if rs.Labels == nil {
		rs.Labels = map[string]string{}
	}
	rs.Labels[RolloutLabel] = ref.Name
}

// replicaSetsOf lists ref's ReplicaSets from the cache, adopted or not.
func (b *Backend) replicaSetsOf(ref events.Ref) ([]*appsv1.ReplicaSet, error) {
	all, err := b.rsets.ReplicaSets(ref.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []*appsv1.ReplicaSet
	for _, rs := range all {
		if belongs(rs, ref, nil) {
			out = append(out, rs)
		}
	}
	return out, nil
}
