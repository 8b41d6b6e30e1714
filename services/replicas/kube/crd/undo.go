package crd

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// UndoRevision returns the revision (its rollout.argoproj.io/revision) of
// the ReplicaSet among rsets whose pod template the Rollout's spec.template
// now is, as `kubectl argo rollouts undo` copies it back: with the API
// server's defaults filled in and without the rollouts-pod-template-hash
// label. The ephemeral metadata Sluice put on the ReplicaSet's template
// is ignored too. ok is false when none matches, or the match is the
// revision the status already runs (currentPodHash): that is no undo.
func UndoRevision(template map[string]any, currentPodHash string, rsets []*appsv1.ReplicaSet) (revision int64, ok bool) {
	var want corev1.PodTemplateSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(template, &want); err != nil {
		return 0, false
	}
	for _, rs := range rsets {
		hash := rs.Labels[spec.LabelPodTemplateHash]
		if rs.DeletionTimestamp != nil || hash == "" || hash == currentPodHash {
			continue
		}
		n, err := strconv.ParseInt(rs.Annotations[kube.AnnotationRevision], 10, 64)
		if err != nil {
			continue
		}
		eph := ephemeralOf(rs)
		have, w := normalTemplate(rs.Spec.Template, eph), normalTemplate(want, eph)
		if equality.Semantic.DeepEqual(have, w) && n > revision {
			revision, ok = n, true
		}
	}
	return revision, ok
}

// ephemeral is the ephemeral metadata a ReplicaSet records in force on its
// template (kube.AnnotationEphemeralMetadata).
type ephemeral struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func ephemeralOf(rs *appsv1.ReplicaSet) ephemeral {
	var e ephemeral
	if v := rs.Annotations[kube.AnnotationEphemeralMetadata]; v != "" {
		_ = json.Unmarshal([]byte(v), &e) // unreadable: none, as the backend reads it
	}
	return e
}

// normalTemplate is t without the pod-template hash label and the
// ephemeral labels and annotations eph.
func normalTemplate(t corev1.PodTemplateSpec, eph ephemeral) corev1.PodTemplateSpec {
	t = *t.DeepCopy()
	t.Labels = maps.Clone(t.Labels)
	t.Annotations = maps.Clone(t.Annotations)
	delete(t.Labels, spec.LabelPodTemplateHash)
	for k := range eph.Labels {
		delete(t.Labels, k)
	}
	for k := range eph.Annotations {
		delete(t.Annotations, k)
	}
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	if len(t.Annotations) == 0 {
		t.Annotations = nil
	}
	t.CreationTimestamp = metav1.Time{}
	return t
}

// undo reports the revision that u's changed spec.template rolls back to,
// from the rollout's ReplicaSets (see UndoRevision); ok is false when the
// change is no undo, or the watcher has no Kubernetes client.
func (w *Watcher) undo(ctx context.Context, u *unstructured.Unstructured) (int64, bool, error) {
	if w.cfg.Client == nil {
		return 0, false, nil
	}
	template, found, _ := unstructured.NestedMap(u.Object, "spec", "template")
	if !found {
		return 0, false, nil
	}
	// From Counts' cache when it has synced: a revision an undo goes back
	// to was created long before, and the cache has it.
	var list []*appsv1.ReplicaSet
	cachedList, ok := w.cached.replicaSets(u.GetNamespace(), u.GetName())
	if ok {
		list = cachedList
	} else {
		all, err := w.cfg.Client.AppsV1().ReplicaSets(u.GetNamespace()).List(ctx, metav1.ListOptions{
			LabelSelector: labels.SelectorFromSet(labels.Set{kube.RolloutLabel: u.GetName()}).String(),
		})
		if err != nil {
			return 0, false, err
		}
		for i := range all.Items {
			list = append(list, &all.Items[i])
		}
	}
	rsets := make([]*appsv1.ReplicaSet, 0, len(list))
	for _, rs := range list {
		if owned(rs, u) {
			rsets = append(rsets, rs)
		}
	}
	current, _, _ := unstructured.NestedString(u.Object, "status", "currentPodHash")
	rev, ok := UndoRevision(template, current, rsets)
	return rev, ok, nil
}

// owned reports whether rs belongs to the Rollout object u: owned by it,
// or by no object (a rollout published before the object existed).
func owned(rs *appsv1.ReplicaSet, u *unstructured.Unstructured) bool {
	for _, o := range rs.OwnerReferences {
		if o.Controller != nil && *o.Controller {
			return o.UID == u.GetUID()
		}
	}
	return true
}
