package kube_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

// argoReplicaSet is a ReplicaSet as Argo Rollouts' controller leaves it:
// owned by the Rollout, annotated with its revision, without Sluice's label.
func argoReplicaSet(hash string, revision string, replicas int32) *appsv1.ReplicaSet {
	yes := true
	tpl := template("app:" + hash)
	tpl.Labels[spec.LabelPodTemplateHash] = hash
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "default", Name: "web-" + hash, UID: types.UID("rs-web-" + hash),
			Labels:      map[string]string{"app": "web", spec.LabelPodTemplateHash: hash},
			Annotations: map[string]string{kube.AnnotationRevision: revision, "rollout.argoproj.io/desired-replicas": fmt.Sprint(replicas)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web", UID: "uid-1", Controller: &yes, BlockOwnerDeletion: &yes,
			}},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", spec.LabelPodTemplateHash: hash}},
			Template: tpl,
		},
	}
}

func (e env) podNames(t *testing.T, hash string) []string {
	t.Helper()
	pods, err := e.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=" + hash})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// Taking over from Argo: its ReplicaSet for the pod hash is adopted and
// scaled, not refused or replaced, and its pod template is left as it is
// (so no pod is replaced); an older revision's ReplicaSet Argo scaled down
// is reused when the rollout goes back to it.
func TestAdoptsArgoReplicaSets(t *testing.T) {
	current, previous := argoReplicaSet("abc", "2", 2), argoReplicaSet("old", "1", 0)
	e := start(t, true, current, previous)
	poll.Until(t, "Argo's pods running", func() error {
		if n := len(e.podNames(t, "abc")); n != 2 {
			return fmt.Errorf("%d pods", n)
		}
		if n := e.rs(t, "web-abc").Status.AvailableReplicas; n != 2 {
			return fmt.Errorf("%d available", n)
		}
		return nil
	})
	before := e.podNames(t, "abc")

	if _, err := e.apply(t, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(2, "abc", spec.RoleStable, 2)}}); err != nil {
		t.Fatalf("take over: %v", err)
	}
	rs := e.rs(t, "web-abc")
	if rs.UID != current.UID || rs.Labels[kube.RolloutLabel] != "web" || rs.Annotations[kube.AnnotationRevision] != "2" {
		t.Errorf("ReplicaSet uid %s labels %v annotations %v, want Argo's, labelled for rollout web at revision 2", rs.UID, rs.Labels, rs.Annotations)
	}
	if !equality.Semantic.DeepEqual(rs.Spec.Template, current.Spec.Template) {
		t.Errorf("the pod template changed on adoption:\n%+v\nwant\n%+v", rs.Spec.Template, current.Spec.Template)
	}
	if after := e.podNames(t, "abc"); !slices.Equal(after, before) {
		t.Errorf("pods %v after the takeover, want %v untouched", after, before)
	}

	// Back to Argo's revision 1 (an undo): its ReplicaSet runs again.
	_, err := e.apply(t, 2, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{
		rev(2, "abc", spec.RoleStable, 2), rev(3, "old", spec.RoleCanary, 1),
	}})
	if err != nil {
		t.Fatalf("undo: %v", err)
	}
	if rs := e.rs(t, "web-old"); rs.UID != previous.UID || *rs.Spec.Replicas != 1 || rs.Annotations[kube.AnnotationRevision] != "3" {
		t.Errorf("ReplicaSet web-old uid %s replicas %d revision %s, want Argo's, at 1 replica, revision 3", rs.UID, *rs.Spec.Replicas, rs.Annotations[kube.AnnotationRevision])
	}
}

// A ReplicaSet of the same name that neither carries the rollout's label
// nor is controlled by its Rollout is someone else's: refused, untouched.
func TestRefusesAReplicaSetOfAnotherOwner(t *testing.T) {
	foreign := argoReplicaSet("abc", "1", 1)
	foreign.OwnerReferences[0].Name = "shop"
	e := start(t, false, foreign)
	_, err := e.apply(t, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 3)}})
	if !errors.Is(err, replicas.ErrInvalidTemplate) || !strings.Contains(err.Error(), "does not belong to rollout default/web") {
		t.Errorf("got %v, want a refusal saying the ReplicaSet is not the rollout's", err)
	}
	if n := *e.rs(t, "web-abc").Spec.Replicas; n != 1 {
		t.Errorf("the foreign ReplicaSet was scaled to %d", n)
	}
}

// namespaceTerminating is the API server's refusal to create an object in
// a namespace being deleted.
func namespaceTerminating(k8stesting.Action) (bool, runtime.Object, error) {
	err := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "web-abc",
		errors.New("unable to create new content in namespace default because it is being terminated"))
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Message: "namespace default is being terminated", Field: "metadata.namespace"}}
	return true, nil, err
}

// In a namespace that is gone or being deleted, a revision that must run
// cannot be created: the task ends with ErrGone saying so, at once, instead
// of failing as an infrastructure error to be retried. A scale-down there
// has nothing left to do and succeeds.
func TestNamespaceGone(t *testing.T) {
	for name, reactor := range map[string]k8stesting.ReactionFunc{
		"terminating": namespaceTerminating,
		"deleted": func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "default")
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := start(t, false)
			e.client.PrependReactor("create", "replicasets", reactor)
			_, err := e.apply(t, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 2)}})
			if !errors.Is(err, replicas.ErrGone) || !strings.Contains(err.Error(), "ReplicaSet default/web-abc of revision 1 cannot be created") {
				t.Errorf("scale up: %v, want ErrGone naming the ReplicaSet", err)
			}
			if _, err := e.apply(t, 2, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 0)}}); err != nil {
				t.Errorf("scale down: %v, want done", err)
			}
		})
	}
}

// A ReplicaSet deleted while its task waits (the namespace controller
// deleting a namespace's objects) is created again; when the namespace is
// being deleted that fails, and the task ends with ErrGone instead of
// waiting for pods that cannot come.
func TestReplicaSetDeletedWhileWaiting(t *testing.T) {
	e := start(t, false) // no controller: the task waits for pods
	var terminating atomic.Bool
	// Installed before the backend runs: the fake's reactor chain is not
	// safe to change while it is in use.
	e.client.PrependReactor("create", "replicasets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if terminating.Load() {
			return namespaceTerminating(a)
		}
		return false, nil, nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.apply(t, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 2)}})
		done <- err
	}()
	poll.Until(t, "ReplicaSet web-abc created", func() error {
		_, err := e.client.AppsV1().ReplicaSets("default").Get(context.Background(), "web-abc", metav1.GetOptions{})
		return err
	})
	terminating.Store(true)
	if err := e.client.AppsV1().ReplicaSets("default").Delete(context.Background(), "web-abc", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, replicas.ErrGone) || !strings.Contains(err.Error(), "being terminated") {
		t.Errorf("got %v, want ErrGone saying the namespace is being deleted", err)
	}
}
