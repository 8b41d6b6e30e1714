package basic_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/basic"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

var web = events.Ref{Namespace: "default", Name: "web"}

func service(ns, name string, ann map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}},
	}
}

func newRouter(t *testing.T, objs ...*corev1.Service) (*basic.Router, *fake.Clientset) {
	t.Helper()
	// Concurrent writes conflict as on an API server, as the contract's
	// concurrent seqs need: the plain fake lets a lower seq overwrite.
	client := kubefake.NewClientset()
	for _, o := range objs {
		if _, err := client.CoreV1().Services(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := basic.New(basic.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	return r, client
}

func selector(t *testing.T, client *fake.Clientset, name string) map[string]string {
	t.Helper()
	svc, err := client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.Selector
}

func TestContract(t *testing.T) {
	var client *fake.Clientset
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) traffic.Router {
			r, c := newRouter(t)
			client = c
			return r
		},
		Prepare: func(t *testing.T, ref events.Ref, route *tasks.Route) {
			// Each rollout has its own Services, as the router requires.
			for _, name := range []*string{&route.StableService, &route.CanaryService, &route.ActiveService, &route.PreviewService} {
				if *name != "" {
					*name = ref.Name + "-" + *name
				}
			}
			for _, name := range []string{route.StableService, route.CanaryService, route.ActiveService, route.PreviewService} {
				if name == "" {
					continue
				}
				_, err := client.CoreV1().Services(ref.Namespace).Create(context.Background(), service(ref.Namespace, name, nil), metav1.CreateOptions{})
				if err != nil && !strings.Contains(err.Error(), "already exists") {
					t.Fatal(err)
				}
			}
		},
	})
}

func TestSelectors(t *testing.T) {
	cases := []struct {
		name  string
		route tasks.Route
		want  map[string]string // service -> pod hash
	}{
		{"canary points each Service at its revision", traffictest.Canary(20),
			map[string]string{"web-stable": "s1", "web-canary": "c1"}},
		{"canary Service follows stable before the canary exists",
			tasks.Route{Strategy: "canary", StableService: "web-stable", CanaryService: "web-canary", StableHash: "s1"},
			map[string]string{"web-stable": "s1", "web-canary": "s1"}},
		{"blue/green preview", traffictest.BlueGreen("s1", "c1"),
			map[string]string{"web": "s1", "web-preview": "c1"}},
		{"blue/green without a preview revision points preview at active", traffictest.BlueGreen("s1", ""),
			map[string]string{"web": "s1", "web-preview": "s1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, client := newRouter(t,
				service("default", "web-stable", nil), service("default", "web-canary", nil),
				service("default", "web", nil), service("default", "web-preview", nil))
			if _, err := r.Apply(context.Background(), web, 1, tc.route); err != nil {
				t.Fatal(err)
			}
			for name, hash := range tc.want {
				sel := selector(t, client, name)
				if sel[spec.LabelPodTemplateHash] != hash || sel["app"] != "web" {
					t.Errorf("Service %s selector %v, want app=web and %s=%s", name, sel, spec.LabelPodTemplateHash, hash)
				}
			}
		})
	}
}

func TestRedeliveryWritesNothing(t *testing.T) {
	r, client := newRouter(t, service("default", "web-stable", nil), service("default", "web-canary", nil))
	for range 2 {
		if _, err := r.Apply(context.Background(), web, 3, traffictest.Canary(10)); err != nil {
			t.Fatal(err)
		}
	}
	if updates := kubefake.Count(client, "update"); updates != 2 {
		t.Errorf("%d updates for two Services applied twice, want 2", updates)
	}
}

func TestRejects(t *testing.T) {
	t.Run("missing Service", func(t *testing.T) {
		r, _ := newRouter(t, service("default", "web-stable", nil))
		_, err := r.Apply(context.Background(), web, 1, traffictest.Canary(10))
		if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), "Service default/web-canary does not exist") {
			t.Errorf("got %v, want a rejection naming Service default/web-canary", err)
		}
	})
	t.Run("Service of another rollout", func(t *testing.T) {
		r, client := newRouter(t, service("default", "web-stable", map[string]string{spec.AnnotationManagedBy: "shop"}), service("default", "web-canary", nil))
		_, err := r.Apply(context.Background(), web, 1, traffictest.Canary(10))
		if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), `managed by rollout "shop"`) {
			t.Errorf("got %v, want a rejection naming rollout shop", err)
		}
		if sel := selector(t, client, "web-stable"); sel[spec.LabelPodTemplateHash] != "" {
			t.Errorf("the other rollout's Service was changed: %v", sel)
		}
	})
}

// Deleting the rollout releases its Services: they stay, with their
// selectors, and no longer name the rollout, so a rollout of the same name
// created later takes them again from seq 1.
func TestRemoveReleasesTheServices(t *testing.T) {
	r, client := newRouter(t, service("default", "web-stable", nil), service("default", "web-canary", nil), service("default", "other", map[string]string{spec.AnnotationManagedBy: "shop"}))
	route := traffictest.Canary(20)
	if _, err := r.Apply(context.Background(), web, 7, route); err != nil {
		t.Fatal(err)
	}
	rm := traffictest.Remove(route)
	rm.ActiveService = "other" // another rollout's Service is left alone
	if _, err := r.Apply(context.Background(), web, 8, rm); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-stable", "web-canary"} {
		svc, err := client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(svc.Annotations) != 0 {
			t.Errorf("Service %s annotations after remove %v, want none", name, svc.Annotations)
		}
		if svc.Spec.Selector[spec.LabelPodTemplateHash] == "" || svc.Spec.Selector["app"] != "web" {
			t.Errorf("Service %s selector after remove %v, want it left", name, svc.Spec.Selector)
		}
	}
	if other, _ := client.CoreV1().Services("default").Get(context.Background(), "other", metav1.GetOptions{}); other.Annotations[spec.AnnotationManagedBy] != "shop" {
		t.Errorf("another rollout's Service changed: %v", other.Annotations)
	}
	if _, err := r.Apply(context.Background(), web, 1, route); err != nil {
		t.Errorf("a new rollout of the same name at seq 1: %v", err)
	}
}

// Only the anchor Service (the stable one) is written on every route; the
// canary Service is written when its selector changes, and a late route
// after a later one that left it alone cannot point it back.
func TestCanaryServiceWrittenOnlyWhenItsSelectorChanges(t *testing.T) {
	r, client := newRouter(t, service("default", "web-stable", nil), service("default", "web-canary", nil))
	ctx := context.Background()
	before := kubefake.Count(client, "update")
	for seq, weight := range []int32{0, 10, 20, 50} {
		if _, err := r.Apply(ctx, web, int64(seq+1), traffictest.Canary(weight)); err != nil {
			t.Fatal(err)
		}
	}
	if updates := kubefake.Count(client, "update") - before; updates != 5 {
		t.Errorf("%d updates for four routes with the same revisions, want 5 (both Services once, then the stable Service)", updates)
	}
	abort := traffictest.Canary(0)
	abort.CanaryHash = abort.StableHash
	_, err := r.Apply(ctx, web, 3, abort)
	if !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("late route 3 pointing the canary Service back: %v, want stale", err)
	}
	if sel := selector(t, client, "web-canary"); sel[spec.LabelPodTemplateHash] != traffictest.Canary(0).CanaryHash {
		t.Errorf("canary Service selector %v after the late route, want the canary's hash", sel)
	}
}
