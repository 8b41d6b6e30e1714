package kube_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic/kube"
	"github.com/sluicehq/sluice/services/traffic/kube/basic"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

var (
	virtualServices = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	trafficSplits   = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha3", Resource: "trafficsplits"}
)

// Experiment weights through Istio and SMI on a real API server (the
// CRDs' schemas, server-side defaults and resourceVersions): the
// templates' Services get their weights beside the canary's, out of the
// stable's share, and lose them when the experiment ends.
func TestExperimentWeightsOnAControlPlane(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := t.Context()
	if err := cp.InstallCRDs(ctx, cp.CRDDir(kubetest.CRDsIstio), cp.CRDDir(kubetest.CRDsSMI)); err != nil {
		t.Fatal(err)
	}
	ns := cp.Namespace(t)
	ref := events.Ref{Namespace: ns, Name: "web"}
	for _, name := range []string{"web-stable", "web-canary", "web-baseline", "web-exp-canary"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if _, err := cp.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	vs := kubefake.Object(t, `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - route:
    - destination: {host: web-stable}
      weight: 100
    - destination: {host: web-canary}
      weight: 0
`)
	if _, err := cp.Dynamic.Resource(virtualServices).Namespace(ns).Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := kube.New(kube.Config{Client: cp.Client, Dynamic: cp.Dynamic, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	route := traffictest.Canary(20)
	route.TrafficRouting = &spec.TrafficRouting{
		Istio: &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web"}},
		SMI:   &spec.SMITrafficRouting{},
	}
	route.Experiments = []tasks.ExperimentRoute{
		{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "baseline", Service: "web-baseline"}, PodHash: "s1", Weight: 10},
		{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "canary", Service: "web-exp-canary"}, PodHash: "c1", Weight: 10},
	}
	apply := func(seq int64, route tasks.Route) {
		t.Helper()
		w, err := r.Apply(context.Background(), ref, seq, route)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if w != route.CanaryWeight {
			t.Errorf("seq %d: canary weight %d in effect, want %d", seq, w, route.CanaryWeight)
		}
	}
	// weights reads the weight per destination host of the VirtualService
	// and per backend Service of the TrafficSplit.
	weights := func() (istio, smi map[string]int64) {
		t.Helper()
		istio, smi = map[string]int64{}, map[string]int64{}
		got := kubefake.Get(t, cp.Dynamic, virtualServices, ns, "web")
		http, _, _ := unstructured.NestedSlice(got.Object, "spec", "http")
		dests, _ := http[0].(map[string]any)["route"].([]any)
		for _, d := range dests {
			host, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "host")
			w, _, _ := unstructured.NestedInt64(d.(map[string]any), "weight")
			istio[host] = w
		}
		split := kubefake.Get(t, cp.Dynamic, trafficSplits, ns, "web")
		backends, _, _ := unstructured.NestedSlice(split.Object, "spec", "backends")
		for _, b := range backends {
			svc, _, _ := unstructured.NestedString(b.(map[string]any), "service")
			w, _, _ := unstructured.NestedInt64(b.(map[string]any), "weight")
			smi[svc] = w
		}
		return istio, smi
	}
	same := func(what string, got, want map[string]int64) {
		t.Helper()
		if d := kubefake.Diff(want, got); d != "" {
			t.Errorf("%s weights (-want +got):\n%s", what, d)
		}
	}

	apply(1, route)
	want := map[string]int64{"web-stable": 60, "web-canary": 20, "web-baseline": 10, "web-exp-canary": 10}
	istio, smi := weights()
	same("VirtualService", istio, want)
	same("TrafficSplit", smi, want)

	// The experiment ends: the weights go back, its destinations go.
	route.Experiments = nil
	apply(2, route)
	want = map[string]int64{"web-stable": 80, "web-canary": 20}
	istio, smi = weights()
	same("VirtualService", istio, want)
	same("TrafficSplit", smi, want)
}

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// Two replicas of the traffic service on a real API server, each with its
// own memory of the Services: replica B holds a late route (seq 6, the
// canary Service back on the stable pods) that has passed its check when
// replica A applies the later route 7, which changes only the weight and
// so leaves the canary Service alone. B's write of the canary Service then
// goes through (nothing changed it since B read it); B's write of the
// stable Service, the anchor, conflicts with A's, and B finds seq 7 there,
// puts the canary Service back to what route 7 recorded and reports
// stale. Without the repair the canary Service would stay on the stable
// pods under route 7, undone by route 6.
func TestLateRouteOnAnotherReplicaCannotUndoALaterOne(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := t.Context()
	ns := cp.Namespace(t)
	ref := events.Ref{Namespace: ns, Name: "web"}
	for _, name := range []string{"web-stable", "web-canary"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if _, err := cp.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := basic.New(basic.Config{Client: cp.Client, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	later := traffictest.Canary(50)
	var raced atomic.Bool
	cfg := rest.CopyConfig(cp.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/services/web-canary") && raced.CompareAndSwap(false, true) {
				if _, err := a.Apply(req.Context(), ref, 7, later); err != nil {
					t.Errorf("route 7 on replica A: %v", err)
				}
			}
			return rt.RoundTrip(req)
		})
	}
	clientB, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := basic.New(basic.Config{Client: clientB, Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := a.Apply(ctx, ref, 5, traffictest.Canary(20)); err != nil {
		t.Fatal(err)
	}
	late := traffictest.Canary(0)
	late.CanaryHash = late.StableHash
	_, err = b.Apply(ctx, ref, 6, late)
	if !raced.Load() {
		t.Fatalf("replica B never wrote the canary Service (%v): the race was not run", err)
	}
	if !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("late route 6 on replica B: %v, want stale", err)
	}
	canary, err := cp.Client.CoreV1().Services(ns).Get(ctx, "web-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := canary.Spec.Selector[spec.LabelPodTemplateHash]; got != later.CanaryHash {
		t.Errorf("canary Service selects %s=%q after the late route, want %q (route 7's)", spec.LabelPodTemplateHash, got, later.CanaryHash)
	}

	// Replica A's memory of the stable Service is behind B's repair: its
	// next route reads again and still applies.
	next := traffictest.Canary(80)
	next.CanaryHash = "c2"
	if _, err := a.Apply(ctx, ref, 8, next); err != nil {
		t.Fatalf("route 8 on replica A: %v", err)
	}
	canary, err = cp.Client.CoreV1().Services(ns).Get(ctx, "web-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := canary.Spec.Selector[spec.LabelPodTemplateHash]; got != "c2" {
		t.Errorf("canary Service selects %q after route 8, want c2", got)
	}
}
