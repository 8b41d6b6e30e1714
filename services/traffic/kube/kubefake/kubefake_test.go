package kubefake_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
)

// update changes a label of name through get and update twice: once with
// the resourceVersion read, which must succeed with a new one, and once
// more with the same (now stale) one, which must conflict.
func update[T metav1.Object](t *testing.T, get func() (T, error), update func(T) (T, error)) {
	t.Helper()
	obj, err := get()
	if err != nil {
		t.Fatal(err)
	}
	read := obj.GetResourceVersion()
	obj.SetLabels(map[string]string{"x": "1"})
	stored, err := update(obj)
	if err != nil {
		t.Fatalf("update with the stored resourceVersion: %v", err)
	}
	if stored.GetResourceVersion() == read {
		t.Errorf("the update kept resourceVersion %q", read)
	}
	obj.SetResourceVersion(read)
	if _, err := update(obj); !apierrors.IsConflict(err) {
		t.Errorf("update with a stale resourceVersion: %v, want a conflict", err)
	}
}

func TestClientset(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "seeded"}})
	services := c.CoreV1().Services("default")
	created, err := services.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "created"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.ResourceVersion == "" {
		t.Error("a create gave no resourceVersion")
	}
	for _, name := range []string{"seeded", "created"} {
		update(t,
			func() (*corev1.Service, error) { return services.Get(ctx, name, metav1.GetOptions{}) },
			func(s *corev1.Service) (*corev1.Service, error) {
				return services.Update(ctx, s, metav1.UpdateOptions{})
			})
	}
	if n, w := kubefake.Count(c, "update"), kubefake.Writes(c); n != 4 || w != 5 {
		t.Errorf("%d updates and %d writes, want 4 and 5", n, w)
	}
}

func TestDynamicClient(t *testing.T) {
	ctx := context.Background()
	gvr := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	seeded := kubefake.Object(t, `
apiVersion: example.com/v1
kind: Widget
metadata: {name: seeded, namespace: default}
spec: {size: 3}
`)
	c := kubefake.NewDynamicClient(t, map[schema.GroupVersionResource]string{gvr: "WidgetList"},
		map[schema.GroupVersionResource][]*unstructured.Unstructured{gvr: {seeded}})
	if n := len(c.Actions()); n != 0 {
		t.Errorf("%d actions after seeding, want none", n)
	}
	got := kubefake.Get(t, c, gvr, "default", "seeded")
	if got.GetResourceVersion() == "" {
		t.Error("the seeded object has no resourceVersion")
	}
	if size, _, _ := unstructured.NestedFieldNoCopy(got.Object, "spec", "size"); size != int64(3) {
		t.Errorf("spec.size %#v, want int64 3", size)
	}
	kubefake.SameField(t, "Widget", got, seeded, "spec")
	widgets := c.Resource(gvr).Namespace("default")
	update(t,
		func() (*unstructured.Unstructured, error) { return widgets.Get(ctx, "seeded", metav1.GetOptions{}) },
		func(u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
			return widgets.Update(ctx, u, metav1.UpdateOptions{})
		})
	if w := kubefake.Writes(c); w != 2 {
		t.Errorf("%d writes, want 2", w)
	}
}

func TestDiff(t *testing.T) {
	if d := kubefake.Diff(map[string]string{}, map[string]string(nil)); d != "" {
		t.Errorf("an empty and a nil map differ: %s", d)
	}
	if d := kubefake.Diff([]int{1}, []int{2}); d == "" {
		t.Error("[1] and [2] do not differ")
	}
}

// failures records what a helper reports instead of failing the test.
type failures struct {
	testing.TB
	errors []string
}

func (f *failures) Helper() {}

func (f *failures) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func TestRejected(t *testing.T) {
	rejected := fmt.Errorf("%w: Service default/web: it is managed by rollout %q", traffic.ErrRejected, "shop")
	cases := []struct {
		name   string
		err    error
		writes int
		says   []string
		want   int // failures reported
	}{
		{name: "rejected, saying it, nothing written", err: rejected, says: []string{"default/web", `"shop"`}},
		{name: "not rejected", err: errors.New("connection refused"), want: 1},
		{name: "no error", says: []string{"default/web"}, want: 2},
		{name: "rejected without saying it", err: rejected, says: []string{"default/web", "default/shop"}, want: 1},
		{name: "rejected after a write", err: rejected, writes: 1, want: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := kubefake.NewClientset()
			for i := range tc.writes {
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprint("s", i)}}
				if _, err := c.CoreV1().Services("default").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			f := &failures{TB: t}
			kubefake.Rejected(f, c, tc.err, tc.says...)
			if len(f.errors) != tc.want {
				t.Errorf("%d failures %q, want %d", len(f.errors), f.errors, tc.want)
			}
		})
	}
}
