package kubetest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
)

func configMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": "v"}}
}

// TestFaultProxyAnswersWithTheFaultsItsRulesName checks each fault as a
// client sees it, that the rules can change at run time, and that a watch
// through the proxy streams events as they happen.
func TestFaultProxyAnswersWithTheFaultsItsRulesName(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	proxy := cp.StartFaultProxy(t)
	client, err := kubernetes.NewForConfig(proxy.Config)
	if err != nil {
		t.Fatal(err)
	}
	cms := client.CoreV1().ConfigMaps(ns)

	// No rules: everything passes, watches included.
	w, err := cms.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch through the proxy: %v", err)
	}
	defer w.Stop()
	if _, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, configMap("a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for seen := false; !seen; { // kube-root-ca.crt may come first
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch through the proxy ended before the ConfigMap created directly came")
			}
			cm, _ := ev.Object.(*corev1.ConfigMap)
			seen = ev.Type == watch.Added && cm != nil && cm.Name == "a"
		case <-ctx.Done():
			t.Fatal("watch through the proxy: no event for a ConfigMap created directly")
		}
	}
	cm, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get through the proxy without rules: %v", err)
	}

	cases := []struct {
		name  string
		rule  kubetest.Rule
		call  func(context.Context) error
		check func(error) bool
	}{
		{"409 on update", kubetest.Rule{Verbs: []string{"update"}, Resources: []string{"configmaps"}, Fault: kubetest.FaultConflict, Probability: 1},
			func(ctx context.Context) error { _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); return err }, apierrors.IsConflict},
		{"500 on create", kubetest.Rule{Verbs: []string{"create"}, Fault: kubetest.FaultInternalError, Probability: 1},
			func(ctx context.Context) error {
				_, err := cms.Create(ctx, configMap("b"), metav1.CreateOptions{})
				return err
			}, apierrors.IsInternalError},
		{"503 on delete", kubetest.Rule{Verbs: []string{"delete"}, Resources: []string{"configmaps"}, Fault: kubetest.FaultUnavailable, Probability: 1},
			func(ctx context.Context) error { return cms.Delete(ctx, "a", metav1.DeleteOptions{}) }, apierrors.IsServiceUnavailable},
		{"503 on watch", kubetest.Rule{Verbs: []string{"watch"}, Fault: kubetest.FaultUnavailable, Probability: 1},
			func(ctx context.Context) error {
				w, err := cms.Watch(ctx, metav1.ListOptions{})
				if err == nil {
					w.Stop()
				}
				return err
			}, apierrors.IsServiceUnavailable},
		{"504 after a held list", kubetest.Rule{Verbs: []string{"list"}, Fault: kubetest.FaultTimeout, Probability: 1, Hold: 100 * time.Millisecond},
			func(ctx context.Context) error { _, err := cms.List(ctx, metav1.ListOptions{}); return err }, apierrors.IsTimeout},
		{"a get held until the client gives up", kubetest.Rule{Verbs: []string{"get"}, Fault: kubetest.FaultTimeout, Probability: 1},
			func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				_, err := cms.Get(ctx, "a", metav1.GetOptions{})
				return err
			}, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{"a subresource is not its object", kubetest.Rule{Resources: []string{"configmaps/status"}, Fault: kubetest.FaultInternalError, Probability: 1},
			func(ctx context.Context) error { _, err := cms.Get(ctx, "a", metav1.GetOptions{}); return err }, func(err error) bool { return err == nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := proxy.SetRules(c.rule); err != nil {
				t.Fatal(err)
			}
			if err := c.call(ctx); !c.check(err) {
				t.Errorf("got %v", err)
			}
			// The same call goes through once the rule is gone.
			if err := proxy.SetRules(); err != nil {
				t.Fatal(err)
			}
		})
	}

	// 429 with Retry-After: client-go waits and tries again by itself, so
	// the call succeeds once the throttling ends.
	if err := proxy.SetRules(kubetest.Rule{Verbs: []string{"get"}, Fault: kubetest.FaultTooManyRequests, Probability: 1, RetryAfter: time.Second}); err != nil {
		t.Fatal(err)
	}
	before := proxy.Injected()[kubetest.FaultTooManyRequests]
	got := make(chan error, 1)
	go func() { _, err := cms.Get(ctx, "a", metav1.GetOptions{}); got <- err }()
	poll.True(t, "a 429 injected", func() bool { return proxy.Injected()[kubetest.FaultTooManyRequests] > before }, poll.Context(ctx))
	if err := proxy.SetRules(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("get after 429 with Retry-After: %v, want client-go to retry it", err)
	}

	injected := proxy.Injected()
	for _, f := range kubetest.Faults {
		if injected[f] == 0 {
			t.Errorf("no %s counted: %v", f, injected)
		}
	}
	t.Logf("injected:\n%s", proxy.Report())
}

func TestFaultProxyRefusesInvalidRules(t *testing.T) {
	cp := kubetest.Shared(t)
	proxy := cp.StartFaultProxy(t)
	for _, r := range []kubetest.Rule{
		{Fault: "teapot", Probability: 1},
		{Fault: kubetest.FaultConflict},
		{Fault: kubetest.FaultConflict, Probability: 1.5},
		{Fault: kubetest.FaultConflict, Probability: 1, Verbs: []string{"fetch"}},
	} {
		if err := proxy.SetRules(r); !errors.Is(err, kubetest.ErrInvalidRule) {
			t.Errorf("SetRules(%+v) = %v, want ErrInvalidRule", r, err)
		}
	}
}

// TestRestartKeepsDataAndWatchesResume restarts etcd and kube-apiserver of
// a control plane of its own: what was written before is still there, and
// a watch through the fault proxy, ended by the restart, can be opened
// again and sees what is written after.
func TestRestartKeepsDataAndWatchesResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cp, err := kubetest.Start(ctx, kubetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop) // after the namespace's deletion
	ns := cp.Namespace(t)
	proxy := cp.StartFaultProxy(t)
	client, err := kubernetes.NewForConfig(proxy.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, configMap("before"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	if err := cp.RestartEtcd(ctx, time.Second); err != nil {
		t.Fatalf("restart etcd: %v", err)
	}
	if err := cp.RestartAPIServer(ctx, time.Second); err != nil {
		t.Fatalf("restart kube-apiserver: %v", err)
	}
	// The restart ended the watch.
	for range w.ResultChan() {
	}
	if _, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Fatalf("ConfigMap written before the restarts, read through the proxy after: %v", err)
	}
	poll.Until(t, "a new watch through the proxy sees a ConfigMap created after the restarts", func() error {
		w, err := client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "0", TimeoutSeconds: ptr.To[int64](10)})
		if err != nil {
			return err
		}
		defer w.Stop()
		if _, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, configMap("after"), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		for ev := range w.ResultChan() {
			if cm, ok := ev.Object.(*corev1.ConfigMap); ok && cm.Name == "after" {
				return nil
			}
		}
		return fmt.Errorf("the watch ended without the ConfigMap")
	}, poll.Context(ctx))
}
