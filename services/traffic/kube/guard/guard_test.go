package guard_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
)

func setup(t *testing.T) *fake.Clientset {
	t.Helper()
	c := fake.NewClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}})
	return c
}

func setLabel(v string) func(*corev1.Service) error {
	return func(s *corev1.Service) error {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels["x"] = v
		return nil
	}
}

var svcGR = schema.GroupResource{Resource: "services"}

// failUpdates makes the next n updates fail with err.
func failUpdates(c *fake.Clientset, n int, err error) *int {
	calls := new(int)
	c.PrependReactor("update", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		*calls++
		if *calls <= n {
			return true, nil, err
		}
		return false, nil, nil
	})
	return calls
}

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		prepare func(c *fake.Clientset)
		seq     int64
		mutate  func(*corev1.Service) error
		wantErr error
		wantMsg string
		want    string // label x afterwards
	}{
		{name: "writes and records the seq", seq: 3, mutate: setLabel("a"), want: "a"},
		{name: "a conflict re-reads and writes", seq: 3, mutate: setLabel("a"), want: "a",
			prepare: func(c *fake.Clientset) { failUpdates(c, 2, apierrors.NewConflict(svcGR, "web", errors.New("changed"))) }},
		{name: "a transient failure is retried", seq: 3, mutate: setLabel("a"), want: "a",
			prepare: func(c *fake.Clientset) { failUpdates(c, 1, apierrors.NewServiceUnavailable("etcd leader change")) }},
		{name: "a lower seq is stale", seq: 1, mutate: setLabel("b"), want: "a", wantErr: tasks.ErrStale,
			wantMsg: "written by route seq 2, this route's seq is 1",
			prepare: func(c *fake.Clientset) {
				if _, err := guard.Update(ctx, c.CoreV1().Services("default"), "web", "Service default/web", 2, setLabel("a")); err != nil {
					panic(err)
				}
			}},
		{name: "a missing object is rejected", seq: 1, mutate: setLabel("a"), wantErr: traffic.ErrRejected,
			wantMsg: "Service default/web does not exist",
			prepare: func(c *fake.Clientset) { _ = c.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}) }},
		{name: "a rejection from mutate is kept", seq: 1, wantErr: traffic.ErrRejected, wantMsg: "port missing",
			mutate: func(*corev1.Service) error { return fmt.Errorf("%w: port missing", traffic.ErrRejected) }},
		{name: "a forbidden write is returned at once", seq: 1, mutate: setLabel("a"), wantMsg: "forbidden",
			prepare: func(c *fake.Clientset) {
				failUpdates(c, 1, apierrors.NewForbidden(svcGR, "web", errors.New("no RBAC")))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t)
			if tc.prepare != nil {
				tc.prepare(c)
			}
			_, err := guard.Update(ctx, c.CoreV1().Services("default"), "web", "Service default/web", tc.seq, tc.mutate)
			if (err == nil) != (tc.wantErr == nil && tc.wantMsg == "") {
				t.Fatalf("err %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err %q does not say %q", err, tc.wantMsg)
			}
			svc, gerr := c.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
			if gerr != nil {
				return
			}
			if svc.Labels["x"] != tc.want {
				t.Errorf("label x = %q, want %q", svc.Labels["x"], tc.want)
			}
			if err == nil && guard.Seq(svc) != tc.seq {
				t.Errorf("recorded seq %d, want %d", guard.Seq(svc), tc.seq)
			}
		})
	}
}

func TestUnchangedObjectIsNotWritten(t *testing.T) {
	c := setup(t)
	ctx := context.Background()
	for range 3 {
		if _, err := guard.Update(ctx, c.CoreV1().Services("default"), "web", "Service default/web", 5, setLabel("a")); err != nil {
			t.Fatal(err)
		}
	}
	if updates := kubefake.Count(c, "update"); updates != 1 {
		t.Errorf("%d updates, want 1", updates)
	}
}

func TestUpdateAll(t *testing.T) {
	ctx := context.Background()
	services := func(c *fake.Clientset) guard.Client[*corev1.Service] { return c.CoreV1().Services("default") }
	changes := func(c *fake.Clientset, second func(*corev1.Service) error) []guard.Change[*corev1.Service] {
		return []guard.Change[*corev1.Service]{
			{Client: services(c), Name: "a", What: "Service default/a", Mutate: setLabel("1")},
			{Client: services(c), Name: "b", What: "Service default/b", Mutate: second},
		}
	}
	cases := []struct {
		name    string
		prepare func(c *fake.Clientset)
		second  func(*corev1.Service) error
		wantErr error
		wantMsg string
	}{
		{name: "writes every object and returns them in order", second: setLabel("2")},
		{name: "a conflict while writing re-reads and writes", second: setLabel("2"),
			prepare: func(c *fake.Clientset) { failUpdates(c, 1, apierrors.NewConflict(svcGR, "a", errors.New("changed"))) }},
		{name: "a rejection of the second writes neither", wantErr: traffic.ErrRejected, wantMsg: "Service default/b: route rejected: port missing",
			second: func(*corev1.Service) error { return fmt.Errorf("%w: port missing", traffic.ErrRejected) }},
		{name: "a missing second writes neither", second: setLabel("2"), wantErr: traffic.ErrRejected, wantMsg: "Service default/b does not exist",
			prepare: func(c *fake.Clientset) { _ = c.CoreV1().Services("default").Delete(ctx, "b", metav1.DeleteOptions{}) }},
		{name: "a second written by a later route writes neither", second: setLabel("2"), wantErr: tasks.ErrStale,
			wantMsg: "Service default/b was written by route seq 9, this route's seq is 3",
			prepare: func(c *fake.Clientset) {
				if _, err := guard.Update(ctx, services(c), "b", "Service default/b", 9, setLabel("9")); err != nil {
					panic(err)
				}
			}},
		{name: "a failed read writes nothing", second: setLabel("2"), wantMsg: "read Service default/a: connection refused",
			prepare: func(c *fake.Clientset) {
				c.PrependReactor("get", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, errors.New("connection refused")
				})
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := kubefake.NewClientset(
				&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "a"}},
				&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "b"}})
			if tc.prepare != nil {
				tc.prepare(c)
			}
			before := kubefake.Count(c, "update")
			stored, err := guard.UpdateAll(ctx, 3, changes(c, tc.second))
			if tc.wantErr == nil && tc.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(stored) != 2 || stored[0].Name != "a" || stored[1].Name != "b" {
					t.Fatalf("stored %v, want a and b in order", stored)
				}
				for i, want := range []string{"1", "2"} {
					if stored[i].Labels["x"] != want || guard.Seq(stored[i]) != 3 {
						t.Errorf("stored %s: label x %q, seq %d; want %q, 3", stored[i].Name, stored[i].Labels["x"], guard.Seq(stored[i]), want)
					}
				}
				return
			}
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err %v, want %v saying %q", err, tc.wantErr, tc.wantMsg)
			}
			if n := kubefake.Count(c, "update") - before; n != 0 {
				t.Errorf("%d updates, want none", n)
			}
		})
	}
}

// The check is no transaction: an object a later route writes between the
// check and its own write is refused then, and the objects before it stay
// written.
func TestUpdateAllChangedBetweenCheckAndWrite(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "a"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "b"}})
	services := c.CoreV1().Services("default")
	calls := 0
	mutateA := func(s *corev1.Service) error {
		// Called by the check, then by the write of a: a later route
		// writes b in between.
		if calls++; calls == 2 {
			if _, err := guard.Update(ctx, services, "b", "Service default/b", 9, setLabel("9")); err != nil {
				return err
			}
		}
		return setLabel("1")(s)
	}
	_, err := guard.UpdateAll(ctx, 3, []guard.Change[*corev1.Service]{
		{Client: services, Name: "a", What: "Service default/a", Mutate: mutateA},
		{Client: services, Name: "b", What: "Service default/b", Mutate: setLabel("2")},
	})
	if !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "Service default/b was written by route seq 9") {
		t.Fatalf("err %v, want b stale", err)
	}
	for name, want := range map[string]string{"a": "1", "b": "9"} {
		svc, err := services.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Labels["x"] != want {
			t.Errorf("Service %s label x %q, want %q", name, svc.Labels["x"], want)
		}
	}
}

func TestListAt(t *testing.T) {
	obj := map[string]any{"spec": map[string]any{
		"list":   []any{"a"},
		"null":   nil,
		"string": "a",
	}}
	cases := []struct {
		path    []string
		want    []any
		wantMsg string // of an error wrapping traffic.ErrRejected
	}{
		{path: []string{"spec", "list"}, want: []any{"a"}},
		{path: []string{"spec", "absent"}},
		{path: []string{"spec", "null"}},
		{path: []string{"spec", "string"}, wantMsg: "spec.string is not a list"},
		{path: []string{"spec", "string", "deeper"}, wantMsg: "spec.string.deeper: "},
	}
	for _, tc := range cases {
		got, err := guard.ListAt(obj, tc.path...)
		if tc.wantMsg == "" {
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%v: %v, %v; want %v", tc.path, got, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), tc.wantMsg) || got != nil {
			t.Errorf("%v: %v, %v; want a rejection saying %q", tc.path, got, err, tc.wantMsg)
		}
	}
}

func TestGetRetriesTransientFailures(t *testing.T) {
	c := setup(t)
	calls := 0
	c.PrependReactor("get", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		switch calls {
		case 1:
			return true, nil, apierrors.NewInternalError(errors.New("etcd leader change"))
		case 2:
			return true, nil, apierrors.NewTimeoutError("request held", 0)
		}
		return false, nil, nil
	})
	svc, err := guard.Get(context.Background(), guard.Getter[*corev1.Service](c.CoreV1().Services("default")), "web", "Service default/web")
	if err != nil || svc.Name != "web" || calls != 3 {
		t.Fatalf("Get = %v, %v after %d calls; want the Service on the third", svc, err, calls)
	}

	_, err = guard.Get(context.Background(), guard.Getter[*corev1.Service](c.CoreV1().Services("default")), "gone", "Service default/gone")
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "read Service default/gone") {
		t.Errorf("missing object: %v, want NotFound naming it", err)
	}
}
