package kube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

// standalone is a standalone Experiment manifest: templates baseline
// (web:v1, one pod) and canary (web:v2, two pods, with a Service), for
// duration, its pods kept scaleDownDelaySeconds after it ends.
func standalone(name, duration string, scaleDownDelay int) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata:
  name: %[1]s
spec:
  duration: %[2]s
  scaleDownDelaySeconds: %[3]d
  templates:
  - name: baseline
    selector: {matchLabels: {app: %[1]s, variant: baseline}}
    template:
      metadata: {labels: {app: %[1]s, variant: baseline}}
      spec: {containers: [{name: app, image: "web:v1", ports: [{containerPort: 8080}]}]}
  - name: canary
    replicas: 2
    service: {}
    selector: {matchLabels: {app: %[1]s, variant: canary}}
    template:
      metadata: {labels: {app: %[1]s, variant: canary}}
      spec: {containers: [{name: app, image: "web:v2", ports: [{containerPort: 8080}]}]}
`, name, duration, scaleDownDelay)
}

// experimentStatus waits until Experiment name's status satisfies ok
// (nil when it does), and returns it.
func (s *stack) experimentStatus(t testing.TB, name, what string, ok func(st map[string]any) error) map[string]any {
	t.Helper()
	var st map[string]any
	eventually(t, "Experiment "+name+" "+what, func() error {
		u, err := s.get(t, "argoproj.io/v1alpha1", "Experiment", name)
		if err != nil {
			return err
		}
		st, _, _ = unstructured.NestedMap(u.Object, "status")
		if err := ok(st); err != nil {
			b, _ := json.Marshal(st)
			return fmt.Errorf("%v; status %s", err, b)
		}
		return nil
	})
	return st
}

func phase(want string) func(map[string]any) error {
	return func(st map[string]any) error {
		if st["phase"] != want {
			return fmt.Errorf("phase %v, want %s", st["phase"], want)
		}
		return nil
	}
}

// templateStatuses are an Experiment status' templateStatuses as
// name=status replicas/available, by name.
func templateStatuses(st map[string]any) []string {
	var out []string
	list, _ := st["templateStatuses"].([]any)
	for _, e := range list {
		ts, _ := e.(map[string]any)
		out = append(out, fmt.Sprintf("%s=%s %v/%v", ts["name"], ts["status"], ts["replicas"], ts["availableReplicas"]))
	}
	slices.Sort(out)
	return out
}

// templateSets lists the ReplicaSets of Experiment name's templates that
// are not being deleted, as name=ready/replicas, checking that the
// Experiment object uid controls each.
func (s *stack) templateSets(t testing.TB, name string, uid types.UID) []string {
	t.Helper()
	list, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).List(context.Background(), metav1.ListOptions{})
	must(t, err)
	var out []string
	for _, rs := range list.Items {
		if rs.Annotations["experiment.argoproj.io/name"] != name || rs.DeletionTimestamp != nil {
			continue
		}
		if c := metav1.GetControllerOf(&rs); c == nil || c.Kind != "Experiment" || c.UID != uid {
			t.Errorf("ReplicaSet %s controlled by %+v, want the Experiment %s", rs.Name, c, name)
		}
		out = append(out, fmt.Sprintf("%s=%d/%d", rs.Name, rs.Status.ReadyReplicas, *rs.Spec.Replicas))
	}
	slices.Sort(out)
	return out
}

// statusTypes lists the types of Experiment name's status events, oldest
// first, without the analysis events.
func (s *stack) statusTypes(t testing.TB, name string) []string {
	t.Helper()
	h, err := s.bus.History(context.Background(), events.Ref{Namespace: s.ns, Name: name})
	must(t, err)
	var out []string
	for _, e := range h {
		if e.Stream == events.StreamStatus && e.Err == nil && strings.HasPrefix(e.Event.Type(), "io.sluice.experiment.") {
			out = append(out, strings.TrimPrefix(e.Event.Type(), "io.sluice.experiment."))
		}
	}
	return out
}

// A standalone Experiment applied to the cluster runs its templates as
// ReplicaSets <experiment>-<template> owned by it; its status goes
// Pending, Running, then Successful once its duration passed, with Argo's
// templateStatuses and conditions; and deleting it removes its
// ReplicaSets.
func TestStandaloneExperimentOnAControlPlane(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.apply(t, standalone("short", "2s", 600))
	u, err := s.get(t, "argoproj.io/v1alpha1", "Experiment", "short")
	must(t, err)

	st := s.experimentStatus(t, "short", "Successful", phase("Successful"))
	if got := s.statusTypes(t, "short"); strings.Join(got, " ") != "accepted.v1 running.v1 completed.v1" {
		t.Errorf("status events %v, want accepted (Pending), running, completed", got)
	}
	if want := []string{"baseline=Successful 1/1", "canary=Successful 2/2"}; !slices.Equal(templateStatuses(st), want) {
		t.Errorf("templateStatuses %v, want %v (the pods kept for scaleDownDelaySeconds)", templateStatuses(st), want)
	}
	if st["availableAt"] == nil {
		t.Error("no availableAt")
	}
	list, _ := st["templateStatuses"].([]any)
	for _, e := range list {
		ts := e.(map[string]any)
		if ts["podTemplateHash"] == nil || ts["lastTransitionTime"] == nil || ts["name"] == "canary" && ts["serviceName"] != "short-canary" {
			t.Errorf("template status %v: want podTemplateHash, lastTransitionTime, and the canary's Service", ts)
		}
	}
	conds, _ := st["conditions"].([]any)
	if len(conds) != 1 || conds[0].(map[string]any)["reason"] != "ExperimentCompleted" || conds[0].(map[string]any)["status"] != "False" {
		t.Errorf("conditions %v, want Progressing False ExperimentCompleted", conds)
	}
	if got := s.templateSets(t, "short", u.GetUID()); strings.Join(got, " ") != "short-baseline=1/1 short-canary=2/2" {
		t.Errorf("ReplicaSets %v", got)
	}
	svc, err := s.cp.Client.CoreV1().Services(s.ns).Get(context.Background(), "short-canary", metav1.GetOptions{})
	must(t, err)
	if c := metav1.GetControllerOf(svc); c == nil || c.UID != u.GetUID() {
		t.Errorf("the canary's Service controlled by %+v, want the Experiment", c)
	}

	must(t, s.cp.Dynamic.Resource(crd.ExperimentResource).Namespace(s.ns).Delete(context.Background(), "short", metav1.DeleteOptions{}))
	eventually(t, "the deleted Experiment's ReplicaSets and Service gone", func() error {
		if got := s.templateSets(t, "short", u.GetUID()); len(got) > 0 {
			return fmt.Errorf("ReplicaSets left: %v", got)
		}
		if _, err := s.cp.Client.CoreV1().Services(s.ns).Get(context.Background(), "short-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service short-canary: %v", err)
		}
		return nil
	})
	s.waitEvent(t, "short", 0, events.TypeExperimentDeleted, crd.Actor)
}

// A running standalone Experiment terminated with spec.terminate: true
// (what kubectl argo rollouts terminate experiment writes) ends as Argo
// ends one, Successful with the reason, and its ReplicaSets scale down.
func TestStandaloneExperimentTerminatedOnAControlPlane(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.apply(t, standalone("long", "1h", 0))
	u, err := s.get(t, "argoproj.io/v1alpha1", "Experiment", "long")
	must(t, err)
	st := s.experimentStatus(t, "long", "Running with its pods available", func(st map[string]any) error {
		if want := []string{"baseline=Running 1/1", "canary=Running 2/2"}; st["phase"] != "Running" || !slices.Equal(templateStatuses(st), want) {
			return fmt.Errorf("phase %v templates %v, want Running, %v", st["phase"], templateStatuses(st), want)
		}
		return nil
	})
	if st["availableAt"] == nil {
		t.Error("no availableAt while running")
	}
	if got := s.templateSets(t, "long", u.GetUID()); strings.Join(got, " ") != "long-baseline=1/1 long-canary=2/2" {
		t.Errorf("ReplicaSets %v", got)
	}

	_, err = s.cp.Dynamic.Resource(crd.ExperimentResource).Namespace(s.ns).Patch(context.Background(), "long", types.MergePatchType,
		[]byte(`{"spec":{"terminate":true}}`), metav1.PatchOptions{FieldManager: "kubectl-argo-rollouts"})
	must(t, err)
	s.experimentStatus(t, "long", "Successful with the terminate's reason, as Argo ends a terminated experiment", func(st map[string]any) error {
		if msg, _ := st["message"].(string); st["phase"] != "Successful" || !strings.HasPrefix(msg, "Experiment terminated: ") {
			return fmt.Errorf("phase %v message %q", st["phase"], msg)
		}
		return nil
	})
	s.waitEvent(t, "long", 0, events.TypeExperimentTerminated, "kube:kubectl-argo-rollouts")
	eventually(t, "the terminated Experiment's ReplicaSets scaled down", func() error {
		if got := s.templateSets(t, "long", u.GetUID()); len(got) > 0 {
			return fmt.Errorf("ReplicaSets left: %v", got)
		}
		return nil
	})
	s.experimentStatus(t, "long", "with its templates at 0", func(st map[string]any) error {
		if want := []string{"baseline=Successful 0/0", "canary=Successful 0/0"}; !slices.Equal(templateStatuses(st), want) {
			return fmt.Errorf("templates %v, want %v", templateStatuses(st), want)
		}
		return nil
	})
}
