package kube_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/replicastest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// The contract runs against a real API server, controller manager and
// fake nodes (kwok): ReplicaSets, pods and their readiness are Kubernetes'
// own, not a stand-in's.
func TestBackendContractOnAControlPlane(t *testing.T) {
	cp := kubetest.Shared(t)
	replicastest.Run(t, replicastest.Harness{
		New:       func(t *testing.T) replicas.Backend { return cpBackend(t, cp) },
		Namespace: func(t *testing.T) string { return cp.Namespace(t) },
		Pods: func(t *testing.T, _ replicas.Backend, ref events.Ref, hash string) []string {
			return podNamesBy(t, cp, ref.Namespace, map[string]string{spec.LabelPodTemplateHash: hash})
		},
	})
}

// A restart on a real control plane evicts one pod at a time with
// maxUnavailable 1: at no point do fewer than 2 of 3 pods serve (ready and
// not being deleted), and every pod ends up new.
func TestRestartKeepsAvailabilityOnAControlPlane(t *testing.T) {
	cp, ns, ref, b := cpRollout(t)
	ctx, cancel := context.WithTimeout(context.Background(), poll.Default)
	defer cancel()
	labels := map[string]string{"app": "web"}
	rv := tasks.RevisionScale{Revision: 1, PodHash: "aaa", Role: spec.RoleStable, Replicas: 3, Template: corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:v1"}}},
	}}
	sc := tasks.Scale{Workload: tasks.Workload{Selector: &metav1.LabelSelector{MatchLabels: labels}}, Revisions: []tasks.RevisionScale{rv}}
	if _, err := b.Apply(ctx, ref, 1, sc); err != nil {
		t.Fatal(err)
	}
	list, err := cp.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=aaa"})
	if err != nil {
		t.Fatal(err)
	}
	serving := map[string]bool{}
	before := map[string]bool{}
	for _, p := range list.Items {
		serving[p.Name] = servingPod(&p)
		before[p.Name] = true
	}
	watch, err := cp.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=aaa", ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	fewest := make(chan int, 1)
	go func() {
		least := len(list.Items)
		defer func() { fewest <- least }()
		for ev := range watch.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			serving[p.Name] = ev.Type != "DELETED" && servingPod(p)
			n := 0
			for _, s := range serving {
				if s {
					n++
				}
			}
			least = min(least, n)
		}
	}()

	sc.Revisions[0].RestartAt, sc.Revisions[0].MaxUnavailable = time.Now(), 1
	if _, err := b.Apply(ctx, ref, 2, sc); err != nil {
		t.Fatal(err)
	}
	watch.Stop()
	if n := <-fewest; n < 2 {
		t.Errorf("%d pods serving at one point of the restart; maxUnavailable 1 of 3 allows no fewer than 2", n)
	}
	after, err := cp.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=aaa"})
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, p := range after.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		live++
		if before[p.Name] {
			t.Errorf("pod %s was not replaced", p.Name)
		}
	}
	if live != 3 {
		t.Errorf("%d pods after the restart, want 3", live)
	}
}

// servingPod reports whether a pod is Ready and not being deleted.
func servingPod(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// A restart whose replacement cannot be scheduled stops with the old pod
// still serving, and the task's message names the pod and why.
func TestStuckRestartSaysWhichPodAndWhy(t *testing.T) {
	cp, ns, ref, b := cpRollout(t)
	ctx, cancel := context.WithTimeout(context.Background(), poll.Default)
	defer cancel()
	labels := map[string]string{"app": "web"}
	sc := tasks.Scale{Workload: tasks.Workload{Selector: &metav1.LabelSelector{MatchLabels: labels}}, Revisions: []tasks.RevisionScale{{
		Revision: 1, PodHash: "aaa", Role: spec.RoleStable, Replicas: 2, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:v1"}}},
		},
	}}}
	if _, err := b.Apply(ctx, ref, 1, sc); err != nil {
		t.Fatal(err)
	}
	// No node takes new pods.
	cordon := func(on bool) {
		t.Helper()
		nodes, err := cp.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			n.Spec.Unschedulable = on
			if _, err := cp.Client.CoreV1().Nodes().Update(context.Background(), &n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	cordon(true)
	t.Cleanup(func() { cordon(false) })

	sc.Revisions[0].RestartAt, sc.Revisions[0].MaxUnavailable = time.Now(), 1
	apply := func() error {
		short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := b.Apply(short, ref, 2, sc)
		return err
	}
	var last error
	poll.Until(t, "the restart stuck on an unschedulable replacement", func() error {
		last = apply()
		if last == nil || !strings.Contains(last.Error(), "unschedulable") {
			return fmt.Errorf("Apply: %v", last)
		}
		return nil
	})
	if !errors.Is(last, replicas.ErrUnavailable) {
		t.Errorf("stuck restart: %v, want ErrUnavailable", last)
	}
	for _, want := range []string{"restarting: 1 pods created before", "1 of 2 pods available", "pod web-aaa-"} {
		if !strings.Contains(last.Error(), want) {
			t.Errorf("message %q lacks %q", last, want)
		}
	}
	pods, err := cp.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=aaa"})
	if err != nil {
		t.Fatal(err)
	}
	serving := 0
	for _, p := range pods.Items {
		if servingPod(&p) {
			serving++
		}
	}
	if serving != 1 {
		t.Errorf("%d pods serving while the restart is stuck, want the old one that stays", serving)
	}
}
