package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube"
)

var web = events.Ref{Namespace: "default", Name: "web"}

func template(image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

func workload() tasks.Workload {
	return tasks.Workload{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}
}

func rev(n int64, hash string, role spec.Role, replicas int32) tasks.RevisionScale {
	return tasks.RevisionScale{Revision: n, PodHash: hash, Role: role, Replicas: replicas, Template: template("app:" + hash)}
}

// controller stands in for kube-controller-manager on a fake clientset: it
// makes each ReplicaSet's pods and status match its spec, the way the
// ReplicaSet controller would once pods are ready. Like the real one it is
// driven by a watch of the ReplicaSets (which first replays those that
// exist), so it acts on every change and does nothing in between.
func controller(t *testing.T, ctx context.Context, client *fake.Clientset) {
	t.Helper()
	w, err := client.AppsV1().ReplicaSets("").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sync := func() {
		list, err := client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return
		}
		for _, rs := range list.Items {
			n := *rs.Spec.Replicas
			pods, _ := client.CoreV1().Pods(rs.Namespace).List(ctx, metav1.ListOptions{LabelSelector: spec.LabelPodTemplateHash + "=" + rs.Labels[spec.LabelPodTemplateHash]})
			for i := int32(len(pods.Items)); i < n; i++ {
				yes := true
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
					Namespace: rs.Namespace, Name: rs.Name + "-" + string(rune('a'+i)),
					Labels: rs.Spec.Template.Labels, Annotations: rs.Spec.Template.Annotations,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}},
				}}
				_, _ = client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
			}
			for i := n; i < int32(len(pods.Items)); i++ {
				_ = client.CoreV1().Pods(rs.Namespace).Delete(ctx, pods.Items[i].Name, metav1.DeleteOptions{})
			}
			if rs.Status.Replicas != n || rs.Status.AvailableReplicas != n {
				rs.Status = appsv1.ReplicaSetStatus{Replicas: n, ReadyReplicas: n, AvailableReplicas: n, ObservedGeneration: rs.Generation}
				_, _ = client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, &rs, metav1.UpdateOptions{})
			}
		}
	}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-w.ResultChan():
				if !ok {
					return
				}
				sync()
			}
		}
	}()
}

type env struct {
	client  *fake.Clientset
	backend *kube.Backend
}

func start(t *testing.T, withController bool, objs ...runtime.Object) env {
	t.Helper()
	client := fake.NewClientset(objs...)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if withController {
		controller(t, ctx, client)
	}
	b, err := kube.New(kube.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return env{client, b}
}

func (e env) apply(t *testing.T, seq int64, sc tasks.Scale) ([]tasks.RevisionStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.backend.Apply(ctx, web, seq, sc)
}

func (e env) rs(t *testing.T, name string) *appsv1.ReplicaSet {
	t.Helper()
	rs, err := e.client.AppsV1().ReplicaSets("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestCreatesOneReplicaSetPerRevision(t *testing.T) {
	e := start(t, true)
	st, err := e.apply(t, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 3)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Available != 3 || st[0].PodHash != "abc" {
		t.Errorf("status %+v, want revision abc with 3 available", st)
	}
	rs := e.rs(t, "web-abc")
	if got := rs.Spec.Selector.MatchLabels; got["app"] != "web" || got[spec.LabelPodTemplateHash] != "abc" {
		t.Errorf("selector %v", got)
	}
	if got := rs.Spec.Template.Labels; got["app"] != "web" || got[spec.LabelPodTemplateHash] != "abc" {
		t.Errorf("template labels %v", got)
	}
	if rs.Annotations[kube.AnnotationRevision] != "1" || rs.Labels[kube.RolloutLabel] != "web" {
		t.Errorf("revision annotation or rollout label missing: %v %v", rs.Annotations, rs.Labels)
	}

	// Scaling down to 0 waits until the pods are gone.
	st, err = e.apply(t, 2, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleOld, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := e.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	if len(pods.Items) != 0 || st[0].Replicas != 0 {
		t.Errorf("%d pods left after scaling to 0 (status %+v)", len(pods.Items), st)
	}
}

func TestStaleSeq(t *testing.T) {
	e := start(t, true)
	sc := tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 2)}}
	if _, err := e.apply(t, 5, sc); err != nil {
		t.Fatal(err)
	}
	sc.Revisions[0].Replicas = 7
	_, err := e.apply(t, 4, sc)
	if !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "seq 5") {
		t.Errorf("seq 4 after 5: %v, want ErrStale naming seq 5", err)
	}
	if n := *e.rs(t, "web-abc").Spec.Replicas; n != 2 {
		t.Errorf("a stale task scaled the ReplicaSet to %d", n)
	}
}

func TestUnavailableSaysWhy(t *testing.T) {
	e := start(t, false) // no controller: nothing becomes available
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := e.backend.Apply(ctx, web, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 2)}})
	if !errors.Is(err, replicas.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 2 pods available") {
		t.Errorf("got %v, want ErrUnavailable saying 0 of 2 pods available", err)
	}
}

func TestInvalidTemplate(t *testing.T) {
	e := start(t, false)
	e.client.PrependReactor("create", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}, "web-abc",
			field.ErrorList{field.Required(field.NewPath("spec", "template", "spec", "containers"), "")})
	})
	_, err := e.apply(t, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 1)}})
	if !errors.Is(err, replicas.ErrInvalidTemplate) || !strings.Contains(err.Error(), "spec.template.spec.containers") {
		t.Errorf("got %v, want ErrInvalidTemplate naming the field", err)
	}
}

func TestEphemeralMetadataMovesWithTheRole(t *testing.T) {
	e := start(t, true)
	canaryMeta := &spec.PodTemplateMetadata{Labels: map[string]string{"role": "canary"}, Annotations: map[string]string{"canary": "yes"}}
	stableMeta := &spec.PodTemplateMetadata{Labels: map[string]string{"role": "stable"}}
	canary := rev(2, "new", spec.RoleCanary, 2)
	canary.Metadata = canaryMeta
	if _, err := e.apply(t, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{canary}}); err != nil {
		t.Fatal(err)
	}
	checkPods := func(wantRole string, wantCanaryAnn bool) {
		t.Helper()
		pods, _ := e.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		if len(pods.Items) != 2 {
			t.Fatalf("%d pods, want 2", len(pods.Items))
		}
		for _, p := range pods.Items {
			if p.Labels["role"] != wantRole || p.Labels["app"] != "web" {
				t.Errorf("pod %s labels %v, want role=%s and app=web", p.Name, p.Labels, wantRole)
			}
			if _, ok := p.Annotations["canary"]; ok != wantCanaryAnn {
				t.Errorf("pod %s annotations %v: canary annotation present %v, want %v", p.Name, p.Annotations, ok, wantCanaryAnn)
			}
		}
	}
	checkPods("canary", true)

	// Promoted: the same pods become stable.
	stable := rev(2, "new", spec.RoleStable, 2)
	stable.Metadata = stableMeta
	if _, err := e.apply(t, 2, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{stable}}); err != nil {
		t.Fatal(err)
	}
	checkPods("stable", false)
	if got := e.rs(t, "web-new").Spec.Template.Labels["role"]; got != "stable" {
		t.Errorf("template role label %q, want stable for new pods", got)
	}
}

func TestAntiAffinityOnTheCanary(t *testing.T) {
	for name, aa := range map[string]spec.AntiAffinity{
		"preferred": {PreferredDuringSchedulingIgnoredDuringExecution: &spec.PreferredDuringSchedulingIgnoredDuringExecution{Weight: 40}},
		"required":  {RequiredDuringSchedulingIgnoredDuringExecution: &spec.RequiredDuringSchedulingIgnoredDuringExecution{}},
	} {
		t.Run(name, func(t *testing.T) {
			e := start(t, true)
			w := workload()
			w.AntiAffinity = &aa
			if _, err := e.apply(t, 1, tasks.Scale{Workload: w, Revisions: []tasks.RevisionScale{rev(1, "old", spec.RoleStable, 1), rev(2, "new", spec.RoleCanary, 1)}}); err != nil {
				t.Fatal(err)
			}
			if e.rs(t, "web-old").Spec.Template.Spec.Affinity != nil {
				t.Error("the stable revision got anti-affinity")
			}
			pa := e.rs(t, "web-new").Spec.Template.Spec.Affinity.PodAntiAffinity
			var term corev1.PodAffinityTerm
			switch name {
			case "preferred":
				if len(pa.PreferredDuringSchedulingIgnoredDuringExecution) != 1 || pa.PreferredDuringSchedulingIgnoredDuringExecution[0].Weight != 40 {
					t.Fatalf("preferred terms %+v", pa.PreferredDuringSchedulingIgnoredDuringExecution)
				}
				term = pa.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
			case "required":
				if len(pa.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
					t.Fatalf("required terms %+v", pa.RequiredDuringSchedulingIgnoredDuringExecution)
				}
				term = pa.RequiredDuringSchedulingIgnoredDuringExecution[0]
			}
			if term.LabelSelector.MatchLabels[spec.LabelPodTemplateHash] != "old" || term.TopologyKey != corev1.LabelHostname {
				t.Errorf("term %+v, want the stable pods by hostname", term)
			}
		})
	}
}

func TestRevisionHistoryLimit(t *testing.T) {
	e := start(t, true)
	w := workload()
	two := int32(2)
	w.RevisionHistoryLimit = &two
	hashes := []string{"r1", "r2", "r3", "r4", "r5"}
	for i, h := range hashes {
		revs := []tasks.RevisionScale{rev(int64(i+1), h, spec.RoleStable, 1)}
		if i > 0 {
			revs = append(revs, rev(int64(i), hashes[i-1], spec.RoleOld, 0))
		}
		if _, err := e.apply(t, int64(i+1), tasks.Scale{Workload: w, Revisions: revs}); err != nil {
			t.Fatal(err)
		}
	}
	// One more task after the caches saw the last scale-down prunes.
	if _, err := e.apply(t, 6, tasks.Scale{Workload: w, Revisions: []tasks.RevisionScale{rev(5, "r5", spec.RoleStable, 1)}}); err != nil {
		t.Fatal(err)
	}
	list, _ := e.client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{})
	var names []string
	for _, rs := range list.Items {
		names = append(names, rs.Name)
	}
	if strings.Join(names, ",") != "web-r3,web-r4,web-r5" {
		t.Errorf("ReplicaSets %v, want the current one and 2 old ones (web-r3, web-r4, web-r5)", names)
	}
}

func TestOwnedByTheRolloutObject(t *testing.T) {
	client := fake.NewClientset()
	ro := &unstructured.Unstructured{}
	ro.SetAPIVersion("argoproj.io/v1alpha1")
	ro.SetKind("Rollout")
	ro.SetNamespace("default")
	ro.SetName("web")
	ro.SetUID("uid-1")
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.RolloutResource: "RolloutList"}, ro)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	controller(t, ctx, client)
	b, _ := kube.New(kube.Config{Client: client, Dynamic: dyn})
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(ctx, web, 1, tasks.Scale{Workload: workload(), Revisions: []tasks.RevisionScale{rev(1, "abc", spec.RoleStable, 1)}}); err != nil {
		t.Fatal(err)
	}
	rs, _ := client.AppsV1().ReplicaSets("default").Get(ctx, "web-abc", metav1.GetOptions{})
	owner := metav1.GetControllerOf(rs)
	if owner == nil || owner.Kind != "Rollout" || owner.UID != "uid-1" {
		t.Errorf("owner %+v, want the Rollout web", owner)
	}
}
