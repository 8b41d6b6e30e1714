package kube_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	replicaskube "github.com/sluicehq/sluice/services/replicas/kube"
)

// settleBound is how long after the Kubernetes API's faults heal every
// rollout must have settled, its data plane agreeing with its record
// (docs/reliability.md states it).
const settleBound = 90 * time.Second

// faultRollout is one rollout the Kubernetes API fault tests run: its
// Services and router objects, its canary steps, the command it gets
// during its canary, and how to read its canary weight off its router.
type faultRollout struct {
	name    string
	objects []string
	routing string // trafficRouting, indented; "" splits by replica ratio
	steps   string // indented under steps:
	command string // events.TypeRolloutPromote, TypeRolloutAbort, or "" to finish alone
	weight  func(t testing.TB, s *stack) (int64, error)

	v1, v2 string // pod hashes, once known
}

func (f *faultRollout) manifest(version string) string {
	strategy := "    canary:\n"
	if f.routing != "" {
		strategy += "      scaleDownDelaySeconds: 2\n      abortScaleDownDelaySeconds: 2\n" +
			"      stableService: " + f.name + "-stable\n      canaryService: " + f.name + "-canary\n      trafficRouting:\n" + f.routing
	}
	return rollout(f.name, version, 2, strategy+"      steps:\n"+f.steps)
}

// faultRollouts are a canary through NGINX that is promoted at its
// pause, one through Istio that is aborted there, and one split by replica
// ratio that goes through a timed pause on its own.
func faultRollouts(pause string) []*faultRollout {
	service := func(name string) string {
		app := strings.TrimSuffix(strings.TrimSuffix(name, "-stable"), "-canary")
		return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  selector: {app: %s}\n  ports: [{port: 80}]\n", name, app)
	}
	return []*faultRollout{
		{
			name: "shop",
			objects: []string{service("shop-stable"), service("shop-canary"), `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  ingressClassName: nginx
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop-stable, port: {number: 80}}}}`},
			routing: "        nginx: {stableIngress: shop}\n",
			steps:   "      - setWeight: 30\n      - pause: {}\n",
			command: events.TypeRolloutPromote,
			weight: func(t testing.TB, s *stack) (int64, error) {
				ing, err := s.get(t, "networking.k8s.io/v1", "Ingress", "shop-shop-canary")
				if err != nil {
					return 0, err
				}
				return strconv.ParseInt(ing.GetAnnotations()["nginx.ingress.kubernetes.io/canary-weight"], 10, 64)
			},
		},
		{
			name: "cart",
			objects: []string{service("cart-stable"), service("cart-canary"), `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: cart}
spec:
  hosts: [cart.example.com]
  http:
  - name: primary
    route:
    - {destination: {host: cart-stable}, weight: 100}
    - {destination: {host: cart-canary}, weight: 0}`},
			routing: "        istio: {virtualService: {name: cart, routes: [primary]}}\n",
			steps:   "      - setWeight: 30\n      - pause: {}\n",
			command: events.TypeRolloutAbort,
			weight: func(t testing.TB, s *stack) (int64, error) {
				vs, err := s.get(t, "networking.istio.io/v1alpha3", "VirtualService", "cart")
				if err != nil {
					return 0, err
				}
				http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
				if len(http) == 0 {
					return 0, errors.New("no http routes")
				}
				routes, _, _ := unstructured.NestedSlice(http[0].(map[string]any), "route")
				for _, r := range routes {
					m := r.(map[string]any)
					if host, _, _ := unstructured.NestedString(m, "destination", "host"); host == "cart-canary" {
						w, _, _ := unstructured.NestedInt64(m, "weight")
						return w, nil
					}
				}
				return 0, fmt.Errorf("no cart-canary destination in %v", routes)
			},
		},
		{
			name:  "api",
			steps: "      - setWeight: 50\n      - pause: {duration: " + pause + "}\n",
		},
	}
}

// deploy creates each rollout's objects and its first revision, and waits
// until it is Healthy.
func deploy(t *testing.T, s *stack, rollouts []*faultRollout) {
	t.Helper()
	for _, f := range rollouts {
		for _, o := range f.objects {
			s.apply(t, o)
		}
		s.apply(t, f.manifest("v1"))
	}
	for _, f := range rollouts {
		f.v1 = s.waitPhase(t, f.name, "Healthy", -1)["currentPodHash"].(string)
	}
}

// update starts each rollout's second revision, waits until the ones with
// a command are paused at it, and records its pod hash.
func update(t *testing.T, s *stack, rollouts []*faultRollout, within time.Duration) {
	t.Helper()
	for _, f := range rollouts {
		s.setImage(t, f.name, "web:v2")
	}
	for _, f := range rollouts {
		poll.Until(t, "Rollout "+f.name+" at its second revision"+map[bool]string{true: ", paused at step 1", false: ""}[f.command != ""], func() error {
			st := s.rolloutStatus(t, f.name)
			hash, _ := st["currentPodHash"].(string)
			if hash == "" || hash == f.v1 {
				return fmt.Errorf("current pod hash %q (v1 %s)", hash, f.v1)
			}
			if f.command != "" && (st["phase"] != "Paused" || st["currentStepIndex"] != int64(1)) {
				return fmt.Errorf("status phase %v step %v message %q", st["phase"], st["currentStepIndex"], st["message"])
			}
			f.v2 = hash
			return nil
		}, poll.Timeout(within))
	}
}

// settled reports how each rollout disagrees with what it must end as: a
// promoted or unattended rollout Healthy at its second revision, an
// aborted one Degraded on its first. Its record (the Rollout's status, as
// the status writer wrote the orchestrator's state) and its data plane
// must agree: exactly one ReplicaSet at the rollout's replicas, the stable
// one, labelled with its own pod hash, every other one at 0 and without
// pods; the stable Service selecting it; the router's canary weight the
// status's and 0.
func settled(t testing.TB, s *stack, rollouts []*faultRollout) error {
	var errs []error
	for _, f := range rollouts {
		if err := f.agrees(t, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	return errors.Join(errs...)
}

func (f *faultRollout) agrees(t testing.TB, s *stack) error {
	st := s.rolloutStatus(t, f.name)
	wantPhase, wantStable := "Healthy", f.v2
	if f.command == events.TypeRolloutAbort {
		wantPhase, wantStable = "Degraded", f.v1
		if st["abort"] != true {
			return fmt.Errorf("status abort %v, want true", st["abort"])
		}
	}
	if st["phase"] != wantPhase || st["stableRS"] != wantStable || st["currentPodHash"] != f.v2 {
		return fmt.Errorf("status phase %v stableRS %v currentPodHash %v (message %q), want %s, %s, %s",
			st["phase"], st["stableRS"], st["currentPodHash"], st["message"], wantPhase, wantStable, f.v2)
	}
	if st["availableReplicas"] != int64(2) {
		return fmt.Errorf("status availableReplicas %v, want 2", st["availableReplicas"])
	}

	rsets, err := s.cp.Client.AppsV1().ReplicaSets(s.ns).List(context.Background(), metav1.ListOptions{LabelSelector: replicaskube.RolloutLabel + "=" + f.name})
	if err != nil {
		return err
	}
	var stable []string
	for _, rs := range rsets.Items {
		hash := rs.Labels[spec.LabelPodTemplateHash]
		if rs.Name != f.name+"-"+hash || rs.Spec.Template.Labels[spec.LabelPodTemplateHash] != hash || rs.Spec.Selector.MatchLabels[spec.LabelPodTemplateHash] != hash {
			return fmt.Errorf("ReplicaSet %s: labelled with pod hash %q, its template %q, its selector %q", rs.Name, hash,
				rs.Spec.Template.Labels[spec.LabelPodTemplateHash], rs.Spec.Selector.MatchLabels[spec.LabelPodTemplateHash])
		}
		want := int32(0)
		if hash == wantStable {
			want = 2
			stable = append(stable, rs.Name)
		}
		if *rs.Spec.Replicas != want || rs.Status.Replicas != want || rs.Status.AvailableReplicas != want {
			return fmt.Errorf("ReplicaSet %s: %d replicas wanted, %d running, %d available; the record says %d", rs.Name,
				*rs.Spec.Replicas, rs.Status.Replicas, rs.Status.AvailableReplicas, want)
		}
	}
	if len(stable) != 1 {
		return fmt.Errorf("ReplicaSets of the stable revision %s: %v, want exactly one", wantStable, stable)
	}
	for _, hash := range []string{f.v1, f.v2} {
		want := 0
		if hash == wantStable {
			want = 2
		}
		if n := len(s.readyPods(t, hash)); n != want {
			return fmt.Errorf("%d ready pods of revision %s, want %d", n, hash, want)
		}
	}

	if f.weight == nil {
		return nil
	}
	if got := s.selectorHash(t, f.name+"-stable"); got != wantStable {
		return fmt.Errorf("Service %s-stable selects %q, the stable revision is %s", f.name, got, wantStable)
	}
	w, err := f.weight(t, s)
	if err != nil {
		return err
	}
	recorded, found, _ := unstructured.NestedInt64(st, "canary", "weights", "canary", "weight")
	if w != 0 || found && recorded != w {
		return fmt.Errorf("router sends %d%% to the canary, the record says %d%% (recorded: %v), want 0", w, recorded, found)
	}
	return nil
}

// command sends each rollout its command.
func command(t *testing.T, s *stack, rollouts []*faultRollout) {
	t.Helper()
	for _, f := range rollouts {
		switch f.command {
		case events.TypeRolloutPromote:
			s.command(t, f.name, f.command, events.PromoteData{})
		case events.TypeRolloutAbort:
			s.command(t, f.name, f.command, nil)
		}
	}
}

// waitSettled waits until every rollout settled and agrees with its
// record, within settleBound, and returns how long that took.
func waitSettled(t *testing.T, s *stack, rollouts []*faultRollout) time.Duration {
	t.Helper()
	healed := time.Now()
	poll.Until(t, "every rollout settled, its ReplicaSets, Services and router agreeing with its record", func() error {
		return settled(t, s, rollouts)
	}, poll.Timeout(settleBound), poll.Every(200*time.Millisecond))
	return time.Since(healed)
}

// apiFaults are the Kubernetes API faults the services get: conflicts on
// writes, throttling with Retry-After, server errors, failed watches and
// reads, and requests held until they time out as the API server's
// --request-timeout ends them (3 s here rather than its 60 s).
var apiFaults = []kubetest.Rule{
	{Verbs: []string{"update", "patch"}, Fault: kubetest.FaultConflict, Probability: 0.25},
	{Fault: kubetest.FaultTooManyRequests, Probability: 0.1, RetryAfter: time.Second},
	{Verbs: []string{"create", "update", "patch", "delete"}, Fault: kubetest.FaultInternalError, Probability: 0.1},
	{Verbs: []string{"get", "list", "watch"}, Fault: kubetest.FaultUnavailable, Probability: 0.1},
	{Verbs: []string{"get", "list", "create", "update", "patch", "delete"}, Fault: kubetest.FaultTimeout, Probability: 0.05, Hold: 3 * time.Second},
}

// faultWindow is how long the faults go on after the commands.
const faultWindow = 20 * time.Second

// TestRolloutsSettleAfterKubeAPIFaults runs three canaries with Sluice's
// services reaching the API server only through the fault proxy: the
// second revisions start, reach their pause, and are promoted or aborted
// while the proxy answers a share of the services' requests with 409,
// 429, 500, 503 or holds them until they time out. Once the faults end,
// every rollout must settle within settleBound, and its ReplicaSets,
// Services and router objects must agree with its record.
func TestRolloutsSettleAfterKubeAPIFaults(t *testing.T) {
	t.Parallel()
	cp := controlPlane(t)
	proxy := cp.StartFaultProxy(t)
	s := startThrough(t, cp, cp.Namespace(t), proxy.Config)
	rollouts := faultRollouts("2s")
	deploy(t, s, rollouts)

	must(t, proxy.SetRules(apiFaults...))
	update(t, s, rollouts, 3*time.Minute)
	command(t, s, rollouts)
	// The fault schedule, not a wait for a result: the commands are
	// carried out while the faults go on.
	select {
	case <-time.After(faultWindow):
	case <-t.Context().Done():
	}
	must(t, proxy.SetRules())

	took := waitSettled(t, s, rollouts)
	injected := proxy.Injected()
	t.Logf("faults injected (by fault, verb, resource):\n%s", proxy.Report())
	t.Logf("every rollout settled %s after the faults ended", took.Round(100*time.Millisecond))
	for _, f := range kubetest.Faults {
		if injected[f] == 0 {
			t.Errorf("no %s fault was injected: the test did not try it", f)
		}
	}

	// The check can fail: a router sending traffic the record does not
	// know of is reported.
	_, err := s.cp.Client.NetworkingV1().Ingresses(s.ns).Patch(context.Background(), "shop-shop-canary", types.MergePatchType,
		[]byte(`{"metadata":{"annotations":{"nginx.ingress.kubernetes.io/canary-weight":"50"}}}`), metav1.PatchOptions{})
	must(t, err)
	if err := settled(t, s, rollouts); err == nil || !strings.Contains(err.Error(), "router sends 50% to the canary") {
		t.Errorf("after the canary Ingress was set to 50%% by hand, the check found: %v", err)
	}
}

// TestRolloutsSettleAfterAPIServerAndEtcdRestart restarts etcd, then
// kube-apiserver, of a control plane of its own while three canaries are
// at their pauses, and sends the promote and the abort while each is
// down. Once both are back, every rollout must settle within settleBound
// and agree with its record.
func TestRolloutsSettleAfterAPIServerAndEtcdRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cp, err := kubetest.Start(ctx, kubetest.Options{})
	must(t, err)
	t.Cleanup(cp.Stop)
	must(t, installCRDs(cp))
	s := startIn(t, cp, cp.Namespace(t))
	// The timed pause outlasts both restarts.
	rollouts := faultRollouts("20s")
	deploy(t, s, rollouts)
	update(t, s, rollouts, 2*time.Minute)

	// A write, since kube-apiserver answers reads from its cache while
	// etcd is down.
	down := func() error {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := cp.Client.CoreV1().ConfigMaps(s.ns).Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}}, metav1.CreateOptions{})
		if err == nil {
			return errors.New("the API server still takes writes")
		}
		return nil
	}
	restart := func(what string, restart func(context.Context, time.Duration) error, during func()) {
		done := make(chan error, 1)
		go func() { done <- restart(ctx, 3*time.Second) }()
		poll.Until(t, what+" down", down, poll.Timeout(time.Minute))
		during()
		if err := <-done; err != nil {
			t.Fatalf("restart %s: %v", what, err)
		}
	}
	byCommand := func(typ string) []*faultRollout {
		return slices.DeleteFunc(slices.Clone(rollouts), func(f *faultRollout) bool { return f.command != typ })
	}
	start := time.Now()
	restart("etcd", cp.RestartEtcd, func() { command(t, s, byCommand(events.TypeRolloutPromote)) })
	restart("kube-apiserver", cp.RestartAPIServer, func() { command(t, s, byCommand(events.TypeRolloutAbort)) })
	t.Logf("etcd and kube-apiserver restarted, each down 3 s, in %s", time.Since(start).Round(100*time.Millisecond))

	took := waitSettled(t, s, rollouts)
	t.Logf("every rollout settled %s after kube-apiserver was ready again", took.Round(100*time.Millisecond))
}
