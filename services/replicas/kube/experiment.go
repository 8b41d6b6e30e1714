package kube

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
)

// An experiment template's pods (tasks.RevisionScale.Experiment) run in a
// ReplicaSet of their own, named as Argo names it (<experiment>-<template>)
// and annotated with Argo's experiment annotations, beside the revision's
// ReplicaSet even when both have the same pod hash (a specRef: stable
// template without metadata has the stable's). Two things keep them apart
// where Argo's own experiments overlap with the stable revision:
//
//   - ExperimentLabel on the ReplicaSet's pods and in its selector, so the
//     template's ReplicaSet and Service select exactly its pods, and the
//     revision's pods are those with the pod hash and without the label;
//   - ExperimentOfLabel instead of RolloutLabel on the ReplicaSet, so that
//     whatever counts a rollout's ReplicaSets (the Rollout's status, undo,
//     pruning beyond revisionHistoryLimit) does not count the
//     experiment's, as Argo's Rollout does not count its Experiment's.
//
// A template at 0 replicas that the task still lists has its Service and
// ReplicaSet deleted (its pods go with it).
const (
	// ExperimentLabel marks the pods of one experiment template (and its
	// ReplicaSet); the value is the ReplicaSet's name (shortened with a
	// hash when longer than a label value may be).
	ExperimentLabel = "replicas.sluice.io/experiment"
	// ExperimentOfLabel names the rollout an experiment template's
	// ReplicaSet and Service belong to.
	ExperimentOfLabel = "replicas.sluice.io/experiment-of"
)

// standalone reports whether scale is a standalone Experiment's (a task
// with OwnerKind Experiment, whose Ref names the experiment): its
// templates are the experiment ref itself. A canary step's experiment is
// named <rollout>-<pod hash>-<revision>-<step>, never its rollout's name,
// so the scale alone tells the two apart and the backend's interface
// needs no owner kind. Such a scale has no Rollout object to look for.
func standalone(ref events.Ref, scale tasks.Scale) bool {
	for _, rv := range scale.Revisions {
		if rv.Experiment != nil && rv.Experiment.Name == ref.Name {
			return true
		}
	}
	return false
}

// entryName is the ReplicaSet of one scale entry: the revision's, or the
// experiment template's.
func entryName(ref events.Ref, rv tasks.RevisionScale) string {
	if rv.Experiment != nil {
		return rv.Experiment.ReplicaSetName()
	}
	return rsName(ref, rv.PodHash)
}

// entryWhat names a scale entry in messages.
func entryWhat(rv tasks.RevisionScale) string {
	if rv.Experiment != nil {
		return fmt.Sprintf("experiment %s template %s (%s)", rv.Experiment.Name, rv.Experiment.Template, rv.PodHash)
	}
	return fmt.Sprintf("revision %d (%s)", rv.Revision, rv.PodHash)
}

// experimentValue is the ExperimentLabel value of e's pods.
func experimentValue(e tasks.ExperimentPods) string {
	name := e.ReplicaSetName()
	if len(validation.IsValidLabelValue(name)) == 0 {
		return name
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return fmt.Sprintf("%s-%08x", name[:validation.LabelValueMaxLength-9], h.Sum32())
}

// entrySelector selects the pods of one scale entry among those the pod
// informer holds: the pod hash, and the experiment template's label or,
// for a revision, its absence.
func entrySelector(rv tasks.RevisionScale) labels.Selector {
	hash, _ := labels.NewRequirement(spec.LabelPodTemplateHash, selection.Equals, []string{rv.PodHash})
	var exp *labels.Requirement
	if rv.Experiment != nil {
		exp, _ = labels.NewRequirement(ExperimentLabel, selection.Equals, []string{experimentValue(*rv.Experiment)})
	} else {
		exp, _ = labels.NewRequirement(ExperimentLabel, selection.DoesNotExist, nil)
	}
	return labels.NewSelector().Add(*hash, *exp)
}

// entryPods lists the pods of one scale entry from the cache.
func (b *Backend) entryPods(namespace string, rv tasks.RevisionScale) ([]*corev1.Pod, error) {
	return b.pods.Pods(namespace).List(entrySelector(rv))
}

// isExperiment reports whether rs runs an experiment template's pods.
func isExperiment(rs *appsv1.ReplicaSet) bool {
	_, ok := rs.Annotations[spec.AnnotationExperimentName]
	return ok || rs.Labels[ExperimentOfLabel] != ""
}

// experimentOf reports whether rs is the ReplicaSet of an experiment
// template of ref (created by this backend).
func experimentOf(rs *appsv1.ReplicaSet, ref events.Ref) bool {
	return rs.Labels[ExperimentOfLabel] == ref.Name
}

// asExperiment turns rs, the ReplicaSet newReplicaSet made for an
// experiment entry, into the template's: its name, selector, labels and
// Argo's annotations.
func asExperiment(rs *appsv1.ReplicaSet, ref events.Ref, w tasks.Workload, rv tasks.RevisionScale) {
	e := *rv.Experiment
	value := experimentValue(e)
	rs.Name = e.ReplicaSetName()
	rs.Spec.Template.Labels[ExperimentLabel] = value
	sel := w.Selector
	if e.Selector != nil {
		sel = e.Selector
	}
	selector := &metav1.LabelSelector{}
	if sel != nil {
		selector = sel.DeepCopy()
	}
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[spec.LabelPodTemplateHash] = rv.PodHash
	selector.MatchLabels[ExperimentLabel] = value
	rs.Spec.Selector = selector
	rs.Labels = maps.Clone(rs.Spec.Template.Labels)
	rs.Labels[ExperimentOfLabel] = ref.Name
	rs.Annotations[spec.AnnotationExperimentName] = e.Name
	rs.Annotations[spec.AnnotationExperimentTemplate] = e.Template
}

// ensureService gives an experiment template with Service its Service, as
// Argo does: named Service, selecting the template's pods by their labels,
// with a port per container port; owned like the ReplicaSet. A Service of
// that name that is not the template's is an error (as in Argo), and so is
// a template without container ports (a Service needs a port).
func (b *Backend) ensureService(ctx context.Context, ref events.Ref, rv tasks.RevisionScale, owner *metav1.OwnerReference) error {
	e := rv.Experiment
	name := e.Service
	svcs := b.cfg.Client.CoreV1().Services(ref.Namespace)
	cur, err := svcs.Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		if !serviceOf(cur, ref, *e) {
			return fmt.Errorf("%w: Service %s/%s exists and is not the one of experiment %s template %s; delete or rename it", replicas.ErrInvalidTemplate, ref.Namespace, name, e.Name, e.Template)
		}
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("read Service %s/%s: %w", ref.Namespace, name, err)
	}
	var ports []corev1.ServicePort
	for _, c := range rv.Template.Spec.Containers {
		for _, p := range c.Ports {
			ports = append(ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.ContainerPort, TargetPort: intstr.FromInt32(p.ContainerPort)})
		}
	}
	if len(ports) == 0 {
		return fmt.Errorf("%w: experiment %s template %s: Service %s needs a port, and the pod template's containers declare none (ports[].containerPort)", replicas.ErrInvalidTemplate, e.Name, e.Template, name)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ref.Namespace, Name: name,
			Labels:      map[string]string{ExperimentOfLabel: ref.Name},
			Annotations: map[string]string{spec.AnnotationExperimentName: e.Name, spec.AnnotationExperimentTemplate: e.Template},
		},
		Spec: corev1.ServiceSpec{Selector: podLabels(rv), Ports: ports},
	}
	if owner != nil {
		svc.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	_, err = svcs.Create(ctx, svc, metav1.CreateOptions{FieldManager: "sluice-replicas"})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Created since our read: read it again and judge it then.
		return apierrors.NewConflict(corev1.Resource("services"), name, err)
	case apierrors.IsInvalid(err):
		return fmt.Errorf("%w: Service %s/%s of experiment %s template %s: %v", replicas.ErrInvalidTemplate, ref.Namespace, name, e.Name, e.Template, err)
	case err != nil:
		return fmt.Errorf("create Service %s/%s: %w", ref.Namespace, name, err)
	}
	b.log.Info("experiment Service created", "rollout", ref.String(), "service", name, "experiment", e.Name, "template", e.Template)
	return nil
}

// podLabels are the labels every pod of an experiment template has: its
// template's, the pod hash and ExperimentLabel (a Service selects them, as
// Argo's selects its ReplicaSet's labels).
func podLabels(rv tasks.RevisionScale) map[string]string {
	l := maps.Clone(rv.Template.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[spec.LabelPodTemplateHash] = rv.PodHash
	l[ExperimentLabel] = experimentValue(*rv.Experiment)
	return l
}

// serviceOf reports whether svc is the Service of experiment template e of
// ref.
func serviceOf(svc *corev1.Service, ref events.Ref, e tasks.ExperimentPods) bool {
	return svc.Labels[ExperimentOfLabel] == ref.Name &&
		svc.Annotations[spec.AnnotationExperimentName] == e.Name &&
		svc.Annotations[spec.AnnotationExperimentTemplate] == e.Template
}

// retireExperiment deletes the Service and ReplicaSet of an experiment
// template at 0 replicas (its pods go with the ReplicaSet, by garbage
// collection), unless a later task wrote the ReplicaSet. What is not the
// template's is left alone.
func (b *Backend) retireExperiment(ctx context.Context, ref events.Ref, seq int64, rv tasks.RevisionScale) error {
	e := *rv.Experiment
	name := e.ReplicaSetName()
	rsClient := b.cfg.Client.AppsV1().ReplicaSets(ref.Namespace)
	cur, err := rsClient.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return err
	case seqOf(cur) > seq:
		return fmt.Errorf("%w: ReplicaSet %s/%s was scaled by task seq %d, this task's seq is %d", tasks.ErrStale, ref.Namespace, name, seqOf(cur), seq)
	case !experimentOf(cur, ref):
		cur = nil
	}
	if e.Service != "" {
		svc, err := b.cfg.Client.CoreV1().Services(ref.Namespace).Get(ctx, e.Service, metav1.GetOptions{})
		if err == nil && serviceOf(svc, ref, e) {
			uid := svc.UID
			err = b.cfg.Client.CoreV1().Services(ref.Namespace).Delete(ctx, e.Service, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		}
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete Service %s/%s: %w", ref.Namespace, e.Service, err)
		}
	}
	if cur == nil {
		return nil
	}
	uid := cur.UID
	background := metav1.DeletePropagationBackground
	err = rsClient.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete ReplicaSet %s/%s: %w", ref.Namespace, name, err)
	}
	b.log.Info("experiment template scaled down: ReplicaSet deleted", "rollout", ref.String(), "replicaset", name, "seq", seq)
	return nil
}

// removeExperimentServices deletes every experiment Service of ref (the
// rollout is being removed).
func (b *Backend) removeExperimentServices(ctx context.Context, ref events.Ref) error {
	svcs := b.cfg.Client.CoreV1().Services(ref.Namespace)
	list, err := svcs.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{ExperimentOfLabel: ref.Name}).String()})
	if err != nil {
		return fmt.Errorf("list experiment Services of %s: %w", ref, err)
	}
	for _, svc := range list.Items {
		uid := svc.UID
		err := svcs.Delete(ctx, svc.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete Service %s/%s: %w", ref.Namespace, svc.Name, err)
		}
	}
	return nil
}

// staleAgainst refuses seq when any ReplicaSet of the rollout in the
// cache, a revision's or an experiment template's, was written by a later
// task. Each write checks its own ReplicaSet too; this check also covers
// a template's ReplicaSet that a later task deleted (scaled to 0), which
// would otherwise take its seq with it and let a late task create it
// again.
func (b *Backend) staleAgainst(ref events.Ref, seq int64) error {
	all, err := b.rsets.ReplicaSets(ref.Namespace).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, rs := range all {
		if (belongs(rs, ref, nil) || experimentOf(rs, ref)) && seqOf(rs) > seq {
			return fmt.Errorf("%w: ReplicaSet %s/%s was scaled by task seq %d, this task's seq is %d", tasks.ErrStale, ref.Namespace, rs.Name, seqOf(rs), seq)
		}
	}
	return nil
}

// templateOf is the experiment template an entry's status reports.
func templateOf(rv tasks.RevisionScale) string {
	if rv.Experiment == nil {
		return ""
	}
	return rv.Experiment.Template
}
