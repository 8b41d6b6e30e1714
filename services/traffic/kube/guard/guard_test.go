package guard_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
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
		{name: "a lower seq is stale", seq: 1, mutate: setLabel("b"), want: "a", wantErr: traffic.ErrStale,
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
	updates := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "update" {
			updates++
		}
	}
	if updates != 1 {
		t.Errorf("%d updates, want 1", updates)
	}
}
