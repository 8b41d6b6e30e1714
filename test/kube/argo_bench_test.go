package kube_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

// Argo Rollouts' controller's client rate limits (its --qps and --burst
// defaults in v1.10.0), which the benchmark gives Sluice as well: one
// budget shared by all its services' clients, so that neither side wins
// by asking the API server for more.
const (
	argoQPS   = 40
	argoBurst = 80
)

// sluiceAgent is the User-Agent of Sluice's services in the benchmark;
// Argo's controller sets none, so client-go names it after its binary.
const (
	sluiceAgent = "sluice-bench"
	argoAgent   = "rollouts-controller"
)

// BenchmarkVersusArgo updates n canary Rollouts at once (4 replicas, nginx
// routing, 25% and 50% steps, with or without a 1 s pause after each),
// first under Argo Rollouts' own controller (v1.10.0, built from its Go
// module) and then under Sluice, on the same control plane, and reports
// for each the time until every Rollout is Healthy at the new revision
// and the API requests per update, and Sluice's over Argo's.
//
// Requests are counted two ways: the controller's own, from the API
// server's audit log by User-Agent (Argo's controller, or every Sluice
// service), and everything the API server answered in the meantime
// (apiserver_request_total from its /metrics: the ReplicaSet controller,
// the scheduler and kwok making the pods, and the benchmark's own watch,
// too).
//
//	go test -run '^$' -bench 'VersusArgo/rollouts=30/' -benchtime 1x -timeout 60m ./test/kube
func BenchmarkVersusArgo(b *testing.B) {
	cp := benchControlPlane(b)
	for _, n := range []int{1, 30, 300} {
		for _, pauses := range []bool{true, false} {
			b.Run(fmt.Sprintf("rollouts=%d/pauses=%t", n, pauses), func(b *testing.B) {
				argo := measureUpdates(b, cp, argoAgent, n, pauses)
				sluice := measureUpdates(b, cp, sluiceAgent, n, pauses)
				b.ReportMetric(argo.seconds(), "s-argo/update")
				b.ReportMetric(sluice.seconds(), "s-sluice/update")
				b.ReportMetric(sluice.seconds()/argo.seconds(), "time-ratio")
				b.ReportMetric(argo.own(), "req-argo/rollout")
				b.ReportMetric(sluice.own(), "req-sluice/rollout")
				b.ReportMetric(sluice.own()/argo.own(), "req-ratio")
				b.ReportMetric(argo.all(), "req-all-argo/rollout")
				b.ReportMetric(sluice.all(), "req-all-sluice/rollout")
				b.Logf("%d rollouts, pauses %t:\n  argo:   %s\n  sluice: %s", n, pauses, argo, sluice)
			})
		}
	}
}

// benchControlPlane is a control plane of the benchmark's own, which logs
// who made each API request, with room for 300 rollouts' pods and Sluice's
// CRDs (Argo Rollouts' own) installed.
func benchControlPlane(b *testing.B) *kubetest.ControlPlane {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubetest.SharedStartTimeout)
	defer cancel()
	// 300 rollouts of 4 replicas, with the old and the new revision at
	// full size while the old one waits out its scale-down delay, at
	// 250 pods a node.
	cp, err := kubetest.Start(ctx, kubetest.Options{Nodes: 12, Audit: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cp.Stop)
	must(b, installCRDs(cp))
	return cp
}

// updates is what one controller did in one measured round.
type updates struct {
	n       int
	elapsed time.Duration
	// each is each Rollout's time to Healthy, sorted.
	each []time.Duration
	// mine are the controller's requests; everyone all the API server
	// answered meanwhile (apiserver_request_total).
	mine, everyone kubetest.Requests
}

func (u updates) seconds() float64 { return u.elapsed.Seconds() }
func (u updates) own() float64     { return float64(u.mine.Total()) / float64(u.n) }
func (u updates) all() float64     { return float64(u.everyone.Total()) / float64(u.n) }

func (u updates) String() string {
	return fmt.Sprintf("all Healthy in %s (each: p50 %s, max %s); %.1f requests per rollout of its own (%s); %.1f of everyone's",
		u.elapsed.Round(time.Millisecond), u.each[len(u.each)/2].Round(time.Millisecond), u.each[len(u.each)-1].Round(time.Millisecond),
		u.own(), u.mine, u.all())
}

// measureUpdates runs n Rollouts under one controller (agent names it) in
// a namespace of their own, brings them to Healthy, and measures b.N
// rounds of updating all of them at once. The namespace is gone, with its
// pods, when it returns, so the next measurement starts on a quiet
// cluster.
func measureUpdates(b *testing.B, cp *kubetest.ControlPlane, agent string, n int, pauses bool) updates {
	b.Helper()
	ns := benchNamespace(b, cp)
	switch agent {
	case argoAgent:
		argo := cp.StartArgoController(b, ns, "--loglevel", "warn")
		defer argo.Stop()
	default:
		cfg := rest.CopyConfig(cp.Config)
		cfg.UserAgent = sluiceAgent
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(argoQPS, argoBurst)
		startWith(b, cp, ns, stackOptions{config: cfg, quiet: true})
	}
	healthy := watchHealthy(b, cp, ns)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("web-%d", i)
	}
	parallel(b, names, func(name string) error {
		for _, svc := range []string{name + "-stable", name + "-canary"} {
			if _, err := cp.Client.CoreV1().Services(ns).Create(context.Background(), benchService(svc, name), metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	parallel(b, names, func(name string) error {
		if err := applyYAML(cp, ns, strings.ReplaceAll(stableIngress, "web", name)); err != nil {
			return err
		}
		return applyYAML(cp, ns, rollout(name, "1", 4, benchStrategy(name, pauses)))
	})
	stable, _ := healthy.await(b, names, nil)

	var u updates
	u.n = n * b.N
	metricsBefore, err := cp.APIRequests(context.Background())
	must(b, err)
	mark, err := cp.AuditMark()
	must(b, err)
	b.ResetTimer()
	for i := range b.N {
		version := fmt.Sprint(i + 2)
		begin := time.Now()
		parallel(b, names, func(name string) error {
			patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"web:%s"}]`, version)
			_, err := cp.Dynamic.Resource(crd.RolloutResource).Namespace(ns).Patch(context.Background(), name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
			return err
		})
		var ats []time.Time
		stable, ats = healthy.await(b, names, stable)
		for _, at := range ats {
			u.each = append(u.each, at.Sub(begin))
		}
		u.elapsed += time.Since(begin)
	}
	b.StopTimer()
	u.elapsed /= time.Duration(b.N)
	metricsAfter, err := cp.APIRequests(context.Background())
	must(b, err)
	byClient, err := mark.Since()
	must(b, err)
	u.everyone = metricsAfter.Sub(metricsBefore)
	u.mine = byClient[agent]
	slices.Sort(u.each)
	if u.mine.Total() == 0 {
		clients := make([]string, 0, len(byClient))
		for c := range byClient {
			clients = append(clients, c)
		}
		sort.Strings(clients)
		b.Fatalf("the audit log has no request of %s; clients: %v", agent, clients)
	}
	return u
}

// benchNamespace creates a namespace and deletes it when the measurement
// ends, waiting until it is gone.
func benchNamespace(b *testing.B, cp *kubetest.ControlPlane) string {
	b.Helper()
	ctx := context.Background()
	created, err := cp.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	must(b, err)
	ns := created.Name
	b.Cleanup(func() {
		if err := cp.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			b.Errorf("delete namespace %s: %v", ns, err)
			return
		}
		poll.Until(b, "namespace "+ns+" deleted with its pods", func() error {
			_, err := cp.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%v)", err)
		}, poll.Timeout(10*time.Minute))
	})
	poll.Until(b, "the default ServiceAccount of "+ns, func() error {
		_, err := cp.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}, poll.Timeout(time.Minute))
	return ns
}

func benchService(name, app string) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}}
	svc.Spec.Selector = map[string]string{"app": app}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
	return svc
}

// benchStrategy is the canary the issue measured: 4 replicas routed by
// nginx, 25% and 50%, each followed by a 1 s pause when pauses is set.
func benchStrategy(name string, pauses bool) string {
	pause := ""
	if pauses {
		pause = "      - pause: {duration: 1s}\n"
	}
	return `    canary:
      stableService: ` + name + `-stable
      canaryService: ` + name + `-canary
      trafficRouting:
        nginx: {stableIngress: ` + name + `}
      steps:
      - setWeight: 25
` + pause + `      - setWeight: 50
` + pause
}

// parallel runs do for every name, 16 at a time, failing b on an error.
func parallel(b *testing.B, names []string, do func(name string) error) {
	b.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
		sem  = make(chan struct{}, 16)
	)
	for _, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := do(name); err != nil {
				mu.Lock()
				errs = append(errs, name+": "+err.Error())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		b.Fatalf("%d of %d failed: %s", len(errs), len(names), strings.Join(errs, "; "))
	}
}

// healthyWatch sees, through one watch of the namespace's Rollouts (no
// polling of the API server, which would count), when each Rollout is
// Healthy at each revision.
type healthyWatch struct {
	mu sync.Mutex
	// at is when each name was first seen Healthy at each pod hash.
	at map[string]map[string]time.Time
}

func watchHealthy(b *testing.B, cp *kubetest.ControlPlane, ns string) *healthyWatch {
	b.Helper()
	h := &healthyWatch{at: map[string]map[string]time.Time{}}
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(cp.Dynamic, 0, ns, nil)
	inf := factory.ForResource(crd.RolloutResource).Informer()
	seen := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		if hash, ok := healthyHash(u); ok {
			h.mu.Lock()
			if h.at[u.GetName()] == nil {
				h.at[u.GetName()] = map[string]time.Time{}
			}
			if _, dup := h.at[u.GetName()][hash]; !dup {
				h.at[u.GetName()][hash] = time.Now()
			}
			h.mu.Unlock()
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, o any) { seen(o) }}); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	b.Cleanup(func() { close(stop); factory.Shutdown() })
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	return h
}

// healthyHash is the pod hash of the revision a Rollout is Healthy at:
// its status says Healthy, its stable revision is its current one, and
// every replica of that revision is updated and available. The old
// revision's pods may still run: both controllers keep them for the
// scale-down delay (30 s by default with traffic routing), which is not
// the update's time.
func healthyHash(u *unstructured.Unstructured) (string, bool) {
	st, _, _ := unstructured.NestedMap(u.Object, "status")
	hash, _ := st["stableRS"].(string)
	if st["phase"] != "Healthy" || hash == "" || hash != st["currentPodHash"] {
		return "", false
	}
	want, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	if n, _ := st["updatedReplicas"].(int64); n != want {
		return "", false
	}
	return hash, true
}

// await waits until every name is Healthy at a revision other than the
// one was (nil: any), and returns those revisions' pod hashes and when
// each became Healthy.
func (h *healthyWatch) await(b *testing.B, names []string, was map[string]string) (map[string]string, []time.Time) {
	b.Helper()
	var (
		hashes map[string]string
		out    []time.Time
	)
	poll.Until(b, fmt.Sprintf("%d Rollouts Healthy at a new revision", len(names)), func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		hashes, out = map[string]string{}, out[:0]
		var missing []string
		for _, name := range names {
			for hash, at := range h.at[name] {
				if hash != was[name] {
					hashes[name] = hash
					out = append(out, at)
				}
			}
			if _, ok := hashes[name]; !ok {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d not yet, e.g. %s", len(missing), missing[0])
		}
		return nil
	}, poll.Timeout(20*time.Minute), poll.Every(50*time.Millisecond))
	return hashes, out
}

// applyYAML creates or updates a namespaced object from YAML, as
// stack.apply does, returning its error (for parallel).
func applyYAML(cp *kubetest.ControlPlane, ns, manifest string) error {
	var u unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(manifest), &u.Object); err != nil {
		return err
	}
	gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
	if err != nil {
		return err
	}
	gvr := gv.WithResource(map[string]string{"Rollout": "rollouts", "Ingress": "ingresses"}[u.GetKind()])
	u.SetNamespace(ns)
	_, err = cp.Dynamic.Resource(gvr).Namespace(ns).Create(context.Background(), &u, metav1.CreateOptions{})
	return err
}
