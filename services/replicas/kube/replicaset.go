package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Labels and annotations on the ReplicaSets and pods the backend manages.
// The rollout.argoproj.io keys are Argo Rollouts' own, so that tools built
// for Argo read Sluice's ReplicaSets the same way.
const (
	// RolloutLabel names the rollout a ReplicaSet belongs to, so the
	// backend lists a rollout's ReplicaSets without owner references (a
	// rollout sent as an event has no cluster object to own them).
	RolloutLabel = "replicas.sluice.io/rollout"
	// AnnotationRevision is the rollout revision a ReplicaSet runs.
	AnnotationRevision = "rollout.argoproj.io/revision"
	// AnnotationEphemeralMetadata records the ephemeral labels and
	// annotations in force on the revision's pods, as JSON, so that they
	// can be removed when the revision changes role.
	AnnotationEphemeralMetadata = "rollout.argoproj.io/ephemeral-metadata"
	// AnnotationRetiredMetadata lists, as JSON, the keys of ephemeral
	// metadata of the revision's earlier roles that its pods may still
	// carry and must lose.
	AnnotationRetiredMetadata = "replicas.sluice.io/retired-metadata"
	// AnnotationSeq is the seq of the last scale task that wrote the
	// ReplicaSet: a lower seq is stale.
	AnnotationSeq = "replicas.sluice.io/seq"
)

// rsName is the ReplicaSet of one revision, named as Argo names it.
func rsName(ref events.Ref, hash string) string { return ref.Name + "-" + hash }

// newReplicaSet is the ReplicaSet that runs rv for the first time: a
// revision's, or an experiment template's (see asExperiment). stable is the
// pod hash of the stable or active revision, for anti-affinity.
func newReplicaSet(ref events.Ref, w tasks.Workload, rv tasks.RevisionScale, stable string, owner *metav1.OwnerReference) (*appsv1.ReplicaSet, error) {
	tmpl := *rv.Template.DeepCopy()
	tmpl.Labels = maps.Clone(tmpl.Labels)
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[spec.LabelPodTemplateHash] = rv.PodHash
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{spec.LabelPodTemplateHash: rv.PodHash}}
	if w.Selector != nil {
		selector = w.Selector.DeepCopy()
		if selector.MatchLabels == nil {
			selector.MatchLabels = map[string]string{}
		}
		selector.MatchLabels[spec.LabelPodTemplateHash] = rv.PodHash
	}
	if w.AntiAffinity != nil && stable != "" && stable != rv.PodHash && (rv.Role == spec.RoleCanary || rv.Role == spec.RolePreview) {
		injectAntiAffinity(&tmpl.Spec, w.AntiAffinity, stable)
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ref.Namespace,
			Name:      rsName(ref, rv.PodHash),
			Labels:    map[string]string{spec.LabelPodTemplateHash: rv.PodHash, RolloutLabel: ref.Name},
			Annotations: map[string]string{
				AnnotationRevision: strconv.FormatInt(rv.Revision, 10),
			},
		},
		Spec: appsv1.ReplicaSetSpec{
			Selector:        selector,
			MinReadySeconds: w.MinReadySeconds,
			Template:        tmpl,
		},
	}
	for k, v := range tmpl.Labels {
		if _, ok := rs.Labels[k]; !ok {
			rs.Labels[k] = v
		}
	}
	if rv.Experiment != nil {
		asExperiment(rs, ref, w, rv)
	}
	if owner != nil {
		rs.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return rs, nil
}

// injectAntiAffinity keeps the pods of ps off the nodes running pods of the
// stable revision, as Argo's antiAffinity does: by node (hostname).
func injectAntiAffinity(ps *corev1.PodSpec, aa *spec.AntiAffinity, stable string) {
	term := corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{spec.LabelPodTemplateHash: stable}},
		TopologyKey:   corev1.LabelHostname,
	}
	if ps.Affinity == nil {
		ps.Affinity = &corev1.Affinity{}
	}
	if ps.Affinity.PodAntiAffinity == nil {
		ps.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{}
	}
	pa := ps.Affinity.PodAntiAffinity
	switch {
	case aa.RequiredDuringSchedulingIgnoredDuringExecution != nil:
		pa.RequiredDuringSchedulingIgnoredDuringExecution = append(pa.RequiredDuringSchedulingIgnoredDuringExecution, term)
	case aa.PreferredDuringSchedulingIgnoredDuringExecution != nil:
		pa.PreferredDuringSchedulingIgnoredDuringExecution = append(pa.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.WeightedPodAffinityTerm{Weight: aa.PreferredDuringSchedulingIgnoredDuringExecution.Weight, PodAffinityTerm: term})
	}
}

// metadata is the ephemeral metadata of one role, as recorded on a
// ReplicaSet.
type metadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func metadataOf(m *spec.PodTemplateMetadata) metadata {
	if m == nil {
		return metadata{}
	}
	return metadata{Labels: maps.Clone(m.Labels), Annotations: maps.Clone(m.Annotations)}
}

// recordedMetadata is the ephemeral metadata a ReplicaSet says is in force.
func recordedMetadata(rs *appsv1.ReplicaSet) metadata {
	var m metadata
	if v := rs.Annotations[AnnotationEphemeralMetadata]; v != "" {
		_ = json.Unmarshal([]byte(v), &m) // unreadable: treat as none, the next write repairs it
	}
	return m
}

// moveMetadata replaces the ephemeral metadata old with new on an object's
// labels and annotations (a pod or a pod template), leaving every other key
// alone. It reports whether anything changed.
func moveMetadata(labels, annotations *map[string]string, old, new metadata) bool {
	l := moveKeys(labels, old.Labels, new.Labels)
	a := moveKeys(annotations, old.Annotations, new.Annotations)
	return l || a
}

func moveKeys(m *map[string]string, old, new map[string]string) bool {
	changed := false
	for k := range old {
		if _, keep := new[k]; !keep {
			if _, ok := (*m)[k]; ok {
				delete(*m, k)
				changed = true
			}
		}
	}
	for k, v := range new {
		if (*m)[k] != v {
			if *m == nil {
				*m = map[string]string{}
			}
			(*m)[k] = v
			changed = true
		}
	}
	return changed
}

// setScale changes rs (a copy of the stored object) into the desired state
// of rv under seq: replicas, ephemeral metadata on the template, and the
// bookkeeping annotations.
func setScale(rs *appsv1.ReplicaSet, rv tasks.RevisionScale, seq int64) error {
	rs.Spec.Replicas = &rv.Replicas
	want := metadataOf(rv.Metadata)
	moveMetadata(&rs.Spec.Template.Labels, &rs.Spec.Template.Annotations, recordedMetadata(rs), want)
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	retired := retiredMetadata(rs)
	old := recordedMetadata(rs)
	retired.Labels = retire(retired.Labels, old.Labels, want.Labels)
	retired.Annotations = retire(retired.Annotations, old.Annotations, want.Annotations)
	if err := setJSON(rs.Annotations, AnnotationEphemeralMetadata, want, len(want.Labels)+len(want.Annotations) == 0); err != nil {
		return err
	}
	if err := setJSON(rs.Annotations, AnnotationRetiredMetadata, retired, len(retired.Labels)+len(retired.Annotations) == 0); err != nil {
		return err
	}
	rs.Annotations[AnnotationSeq] = strconv.FormatInt(seq, 10)
	rs.Annotations[AnnotationRevision] = strconv.FormatInt(rv.Revision, 10)
	return nil
}

// retiredKeys are the keys of ephemeral metadata a revision no longer has.
type retiredKeys struct {
	Labels      []string `json:"labels,omitempty"`
	Annotations []string `json:"annotations,omitempty"`
}

func retiredMetadata(rs *appsv1.ReplicaSet) retiredKeys {
	var r retiredKeys
	if v := rs.Annotations[AnnotationRetiredMetadata]; v != "" {
		_ = json.Unmarshal([]byte(v), &r) // unreadable: forget it; at worst a stale key stays on old pods
	}
	return r
}

// retire adds the keys of old that want does not have to retired, and
// drops from it the keys want has again. The result is sorted.
func retire(retired []string, old, want map[string]string) []string {
	set := map[string]bool{}
	for _, k := range retired {
		set[k] = true
	}
	for k := range old {
		set[k] = true
	}
	for k := range want {
		delete(set, k)
	}
	return slices.Sorted(maps.Keys(set))
}

// setJSON stores v as JSON under key, or removes key when empty.
func setJSON(ann map[string]string, key string, v any, empty bool) error {
	if empty {
		delete(ann, key)
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("record %s: %w", key, err)
	}
	ann[key] = string(b)
	return nil
}

// podMetadata gives pod (a copy) the ephemeral metadata want of its
// ReplicaSet rs, removing keys of earlier roles unless the pod template has
// them (the user's own labels). It reports whether anything changed.
func podMetadata(pod *corev1.Pod, rs *appsv1.ReplicaSet, want metadata) bool {
	retired := retiredMetadata(rs)
	old := metadata{Labels: map[string]string{}, Annotations: map[string]string{}}
	for _, k := range retired.Labels {
		if _, base := rs.Spec.Template.Labels[k]; !base {
			old.Labels[k] = ""
		}
	}
	for _, k := range retired.Annotations {
		if _, base := rs.Spec.Template.Annotations[k]; !base {
			old.Annotations[k] = ""
		}
	}
	return moveMetadata(&pod.Labels, &pod.Annotations, old, want)
}

// seqOf is the seq recorded on a ReplicaSet, 0 when none.
func seqOf(rs *appsv1.ReplicaSet) int64 {
	v, _ := strconv.ParseInt(rs.Annotations[AnnotationSeq], 10, 64)
	return v
}

// revisionOf is the rollout revision a ReplicaSet runs, 0 when unknown.
func revisionOf(rs *appsv1.ReplicaSet) int64 {
	v, _ := strconv.ParseInt(rs.Annotations[AnnotationRevision], 10, 64)
	return v
}
