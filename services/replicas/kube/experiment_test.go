package kube_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// cpBackend is a started backend on the shared control plane, reading
// Rollout objects to own what it creates.
func cpBackend(t *testing.T, cp *kubetest.ControlPlane) *kube.Backend {
	t.Helper()
	b, err := kube.New(kube.Config{Client: cp.Client, Dynamic: cp.Dynamic, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), poll.Default)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// cpRollout is rollout web in a fresh namespace of the shared control
// plane, and a backend.
func cpRollout(t *testing.T) (*kubetest.ControlPlane, string, events.Ref, *kube.Backend) {
	t.Helper()
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	return cp, ns, events.Ref{Namespace: ns, Name: "web"}, cpBackend(t, cp)
}

func cpApply(t *testing.T, b *kube.Backend, ref events.Ref, seq int64, sc tasks.Scale) []tasks.RevisionStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), poll.Default)
	defer cancel()
	st, err := b.Apply(ctx, ref, seq, sc)
	if err != nil {
		t.Fatalf("scale task seq %d: %v", seq, err)
	}
	return st
}

// podNamesBy lists the names of the pods selected by sel that are not being
// deleted, sorted.
func podNamesBy(t *testing.T, cp *kubetest.ControlPlane, ns string, sel map[string]string) []string {
	t.Helper()
	pods, err := cp.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// An experiment template with the stable's pod hash (specRef: stable
// without metadata) runs in a ReplicaSet of its own, named and annotated as
// Argo names it, owned by the Rollout object; its Service selects its pods
// and not the stable's; at 0 replicas both go, and the stable revision's
// ReplicaSet and pods are as they were.
func TestExperimentTemplateBesideTheStableOnAControlPlane(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := t.Context()
	if err := cp.InstallCRDs(ctx, cp.CRDDir(kubetest.CRDsArgoRollouts)); err != nil {
		t.Fatal(err)
	}
	ns := cp.Namespace(t)
	ref := events.Ref{Namespace: ns, Name: "web"}
	ro := cp.CreateRollout(t, ns, "web")
	b := cpBackend(t, cp)

	tmpl := template("web:v1")
	tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	stable := tasks.RevisionScale{Revision: 1, PodHash: "6d4f8b7c9", Role: spec.RoleStable, Replicas: 2, Template: tmpl}
	pods := &tasks.ExperimentPods{Name: "web-6d4f8b7c9-2-1", Template: "baseline", Service: "web-baseline"}
	baseline := tasks.RevisionScale{Revision: 2, PodHash: stable.PodHash, Role: spec.RoleExperiment, Replicas: 1, Template: tmpl, Experiment: pods}
	sc := tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{stable, baseline}}

	st := cpApply(t, b, ref, 1, sc)
	want := []tasks.RevisionStatus{
		{Revision: 1, PodHash: stable.PodHash, Replicas: 2, Ready: 2, Available: 2},
		{Revision: 2, PodHash: stable.PodHash, Template: "baseline", Replicas: 1, Ready: 1, Available: 1},
	}
	if !slices.Equal(st, want) {
		t.Errorf("statuses %+v, want %+v", st, want)
	}
	stableRS, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, "web-6d4f8b7c9", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, "web-6d4f8b7c9-2-1-baseline", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the template's ReplicaSet, named <experiment>-<template>: %v", err)
	}
	if rs.Annotations[spec.AnnotationExperimentName] != pods.Name || rs.Annotations[spec.AnnotationExperimentTemplate] != "baseline" {
		t.Errorf("ReplicaSet annotations %v, want Argo's experiment name and template", rs.Annotations)
	}
	if rs.Labels["app"] != "web" || rs.Labels[spec.LabelPodTemplateHash] != stable.PodHash || rs.Labels[kube.RolloutLabel] != "" {
		t.Errorf("ReplicaSet labels %v: want the template's and the pod hash, and not the rollout's revision label", rs.Labels)
	}
	if c := metav1.GetControllerOf(rs); c == nil || c.UID != ro.GetUID() {
		t.Errorf("controller %v, want the Rollout %s", c, ro.GetUID())
	}

	// The pods: two of the stable's, one of the template's, apart.
	stablePods := podNamesBy(t, cp, ns, stableRS.Spec.Selector.MatchLabels)
	mine := podNamesBy(t, cp, ns, rs.Spec.Selector.MatchLabels)
	if len(mine) != 1 || len(stablePods) != 3 {
		// The stable's selector (app, hash) matches the template's pods
		// too, as in Argo: the ReplicaSet controller keeps them apart by
		// owner; the template's selector must match only its own.
		t.Errorf("pods by the template's selector %v (want 1), by the stable's %v (want 3: its 2 and the template's)", mine, stablePods)
	}
	svc, err := cp.Client.CoreV1().Services(ns).Get(ctx, "web-baseline", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the template's Service: %v", err)
	}
	if got := podNamesBy(t, cp, ns, svc.Spec.Selector); !slices.Equal(got, mine) {
		t.Errorf("the Service selects %v, want exactly the template's pods %v", got, mine)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("Service ports %+v, want http 8080 from the container port", svc.Spec.Ports)
	}
	if c := metav1.GetControllerOf(svc); c == nil || c.UID != ro.GetUID() {
		t.Errorf("Service controller %v, want the Rollout", c)
	}
	if svc.Annotations[spec.AnnotationExperimentTemplate] != "baseline" {
		t.Errorf("Service annotations %v", svc.Annotations)
	}
	stableBefore := podNamesBy(t, cp, ns, map[string]string{spec.LabelPodTemplateHash: stable.PodHash})
	stableBefore = slices.DeleteFunc(stableBefore, func(n string) bool { return slices.Contains(mine, n) })

	// Applying it again changes nothing.
	cpApply(t, b, ref, 2, sc)
	if again := podNamesBy(t, cp, ns, rs.Spec.Selector.MatchLabels); !slices.Equal(again, mine) {
		t.Errorf("the template's pods changed on a repeated task: %v, were %v", again, mine)
	}

	// Scaled to 0 and still listed: the ReplicaSet and the Service go, and
	// the task returns once the pods are gone.
	sc.Revisions[1].Replicas = 0
	st = cpApply(t, b, ref, 3, sc)
	if st[1].Template != "baseline" || st[1].Replicas != 0 {
		t.Errorf("status of the scaled-down template %+v", st[1])
	}
	if _, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, rs.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the template's ReplicaSet after scaling to 0: %v, want NotFound", err)
	}
	if _, err := cp.Client.CoreV1().Services(ns).Get(ctx, svc.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the template's Service after scaling to 0: %v, want NotFound", err)
	}
	if left := podNamesBy(t, cp, ns, rs.Spec.Selector.MatchLabels); len(left) != 0 {
		t.Errorf("the template's pods %v left after the task returned", left)
	}
	after, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, stableRS.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != stableRS.UID || *after.Spec.Replicas != 2 || !maps.Equal(after.Spec.Selector.MatchLabels, stableRS.Spec.Selector.MatchLabels) {
		t.Errorf("the stable's ReplicaSet changed: uid %s->%s, replicas %d", stableRS.UID, after.UID, *after.Spec.Replicas)
	}
	if got := podNamesBy(t, cp, ns, map[string]string{spec.LabelPodTemplateHash: stable.PodHash}); !slices.Equal(got, stableBefore) {
		t.Errorf("the stable's pods %v, were %v", got, stableBefore)
	}

	// The orchestrator lists it at 0 until it reports it gone, then drops
	// it: either way nothing comes back.
	cpApply(t, b, ref, 4, sc)
	sc.Revisions = sc.Revisions[:1]
	cpApply(t, b, ref, 5, sc)
	if _, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, rs.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the template's ReplicaSet came back: %v", err)
	}
}

// A Service of the template's name that is someone else's is refused, as
// Argo refuses it, and left alone; so is a template whose containers
// declare no port to serve.
func TestExperimentServiceRefusedOnAControlPlane(t *testing.T) {
	cp, ns, ref, b := cpRollout(t)
	ctx := t.Context()
	theirs := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-canary"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if _, err := cp.Client.CoreV1().Services(ns).Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tmpl := template("web:v2")
	tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	entry := tasks.RevisionScale{Revision: 2, PodHash: "77f9c", Role: spec.RoleExperiment, Replicas: 1, Template: tmpl,
		Experiment: &tasks.ExperimentPods{Name: "web-77f9c-2-1", Template: "canary", Service: "web-canary"}}
	apply := func(seq int64, rv tasks.RevisionScale) error {
		ctx, cancel := context.WithTimeout(ctx, poll.Default)
		defer cancel()
		_, err := b.Apply(ctx, ref, seq, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rv}})
		return err
	}
	err := apply(1, entry)
	if !errors.Is(err, replicas.ErrInvalidTemplate) || !strings.Contains(err.Error(), "Service "+ns+"/web-canary exists") {
		t.Errorf("got %v, want ErrInvalidTemplate naming the Service", err)
	}
	svc, err := cp.Client.CoreV1().Services(ns).Get(ctx, "web-canary", metav1.GetOptions{})
	if err != nil || !maps.Equal(svc.Spec.Selector, theirs.Spec.Selector) {
		t.Errorf("their Service changed or went: %v %v", err, svc)
	}

	entry.Experiment = &tasks.ExperimentPods{Name: "web-77f9c-2-1", Template: "portless", Service: "web-portless"}
	entry.Template = template("web:v2")
	err = apply(2, entry)
	if !errors.Is(err, replicas.ErrInvalidTemplate) || !strings.Contains(err.Error(), "containerPort") {
		t.Errorf("got %v, want ErrInvalidTemplate asking for a container port", err)
	}
}

// Removing the rollout removes its experiment templates too, Service
// included, when the rollout reached Sluice only through the bus (no
// Rollout object whose deletion would collect them).
func TestRemoveTakesTheExperimentOnAControlPlane(t *testing.T) {
	cp, ns, ref, b := cpRollout(t)
	ctx := t.Context()
	tmpl := template("web:v1")
	tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	stable := tasks.RevisionScale{Revision: 1, PodHash: "5b7d", Role: spec.RoleStable, Replicas: 1, Template: tmpl}
	exp := stable
	exp.Role, exp.Experiment = spec.RoleExperiment, &tasks.ExperimentPods{Name: "web-5b7d-1-0", Template: "baseline", Service: "web-5b7d-1-0-baseline"}
	cpApply(t, b, ref, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{stable, exp}})

	stable.Replicas = 0
	cpApply(t, b, ref, 2, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{stable}, Remove: true})
	rsets, err := cp.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rsets.Items) != 0 {
		t.Errorf("%d ReplicaSets left after removal, first %s", len(rsets.Items), rsets.Items[0].Name)
	}
	if _, err := cp.Client.CoreV1().Services(ns).Get(ctx, exp.Experiment.Service, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the experiment's Service after removal: %v, want NotFound", err)
	}
	if left := podNamesBy(t, cp, ns, map[string]string{"app": "web"}); len(left) != 0 {
		t.Errorf("pods left after removal: %v", left)
	}
}

// A task older than one that deleted a template's ReplicaSet (scaled it to
// 0) is stale, even though the seq that ReplicaSet carried went with it:
// the late task does not bring the template back.
func TestLateTaskDoesNotBringATemplateBackOnAControlPlane(t *testing.T) {
	cp, ns, ref, b := cpRollout(t)
	stable := tasks.RevisionScale{Revision: 1, PodHash: "abc", Role: spec.RoleStable, Replicas: 1, Template: template("web:v1")}
	exp := stable
	exp.Role, exp.Experiment = spec.RoleExperiment, &tasks.ExperimentPods{Name: "web-abc-2-1", Template: "baseline"}
	// The template first: a write in list order would reach it before the
	// stable's ReplicaSet, which carries the later seq.
	cpApply(t, b, ref, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{exp, stable}})
	gone := exp
	gone.Replicas = 0
	cpApply(t, b, ref, 3, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{gone, stable}})

	ctx, cancel := context.WithTimeout(t.Context(), poll.Default)
	defer cancel()
	_, err := b.Apply(ctx, ref, 2, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{exp, stable}})
	if !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "seq 3") {
		t.Errorf("seq 2 after 3: %v, want ErrStale naming seq 3", err)
	}
	if _, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, exp.Experiment.ReplicaSetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the late task brought the template's ReplicaSet back: %v", err)
	}
}

// A standalone Experiment's templates (the scale of a task whose Ref names
// the experiment) are owned by its Experiment object, ReplicaSet and
// Service, even when a Rollout of the same name exists: that Rollout is
// not looked up. An experiment with no object gets no owner.
func TestStandaloneExperimentOwnedByItsObjectOnAControlPlane(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := t.Context()
	if err := cp.InstallCRDs(ctx, cp.CRDDir(kubetest.CRDsArgoRollouts)); err != nil {
		t.Fatal(err)
	}
	ns := cp.Namespace(t)
	ex := cp.CreateExperiment(t, ns, "exp")
	cp.CreateRollout(t, ns, "exp")
	b := cpBackend(t, cp)

	tmpl := template("web:v1")
	tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	entry := func(experiment string) tasks.RevisionScale {
		return tasks.RevisionScale{Revision: 1, PodHash: "7c9d5", Role: spec.RoleExperiment, Replicas: 1, Template: tmpl,
			Experiment: &tasks.ExperimentPods{Name: experiment, Template: "baseline", Service: experiment + "-baseline"}}
	}
	cpApply(t, b, events.Ref{Namespace: ns, Name: "exp"}, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{entry("exp")}})

	yes := true
	want := []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Experiment", Name: "exp", UID: ex.GetUID(), Controller: &yes, BlockOwnerDeletion: &yes}}
	rs, err := cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, "exp-baseline", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the template's ReplicaSet <experiment>-<template>: %v", err)
	}
	if !equality.Semantic.DeepEqual(rs.OwnerReferences, want) {
		t.Errorf("the ReplicaSet's owners %+v, want the Experiment %+v", rs.OwnerReferences, want)
	}
	if rs.Annotations[spec.AnnotationExperimentName] != "exp" || rs.Annotations[spec.AnnotationExperimentTemplate] != "baseline" {
		t.Errorf("the ReplicaSet's annotations %v, want Argo's experiment name and template", rs.Annotations)
	}
	svc, err := cp.Client.CoreV1().Services(ns).Get(ctx, "exp-baseline", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(svc.OwnerReferences, want) {
		t.Errorf("the Service's owners %+v, want the Experiment %+v", svc.OwnerReferences, want)
	}

	cpApply(t, b, events.Ref{Namespace: ns, Name: "bus"}, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{entry("bus")}})
	rs, err = cp.Client.AppsV1().ReplicaSets(ns).Get(ctx, "bus-baseline", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.OwnerReferences) != 0 {
		t.Errorf("the ReplicaSet of an experiment without an object: owners %+v, want none", rs.OwnerReferences)
	}
}
