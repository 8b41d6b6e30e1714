package smi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/kube/smi"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

var web = events.Ref{Namespace: "default", Name: "web"}

func gvr(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: smi.Group, Version: version, Resource: "trafficsplits"}
}

// seed returns a client serving TrafficSplits of version, holding
// manifests.
func seed(t *testing.T, version string, manifests ...string) *dynamicfake.FakeDynamicClient {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, m := range manifests {
		objs = append(objs, kubefake.Object(t, m))
	}
	return kubefake.NewDynamicClient(t, map[schema.GroupVersionResource]string{gvr(version): "TrafficSplitList"},
		map[schema.GroupVersionResource][]*unstructured.Unstructured{gvr(version): objs})
}

func newRouter(t *testing.T, c *dynamicfake.FakeDynamicClient, version string) *smi.Router {
	t.Helper()
	r, err := smi.New(smi.Config{Client: c, APIVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestContract(t *testing.T) {
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) traffic.Router { return newRouter(t, seed(t, "v1alpha3"), "") },
	})
}

func TestApply(t *testing.T) {
	max := int32(1000)
	cases := []struct {
		name     string
		version  string
		existing string // a TrafficSplit stored before the route
		route    func(r *tasks.Route)
		wantName string
		wantSpec string // YAML
	}{
		{
			name: "creates a v1alpha3 TrafficSplit named after the rollout", version: "v1alpha3", wantName: "web",
			wantSpec: `
service: web-stable
backends:
- {service: web-canary, weight: 30}
- {service: web-stable, weight: 70}
`,
		},
		{
			name: "writes v1alpha1 weights as quantities", version: "v1alpha1", wantName: "web",
			wantSpec: `
service: web-stable
backends:
- {service: web-canary, weight: "30"}
- {service: web-stable, weight: "70"}
`,
		},
		{
			name: "uses trafficSplitName, rootService and maxTrafficWeight", version: "v1alpha2", wantName: "split",
			route: func(r *tasks.Route) {
				r.TrafficRouting = &spec.TrafficRouting{SMI: &spec.SMITrafficRouting{TrafficSplitName: "split", RootService: "web"}, MaxTrafficWeight: &max}
			},
			wantSpec: `
service: web
backends:
- {service: web-canary, weight: 30}
- {service: web-stable, weight: 970}
`,
		},
		{
			name: "updates its TrafficSplit and keeps its matches", version: "v1alpha3", wantName: "web",
			existing: `
apiVersion: split.smi-spec.io/v1alpha3
kind: TrafficSplit
metadata: {name: web, namespace: default, annotations: {argo-rollouts.argoproj.io/managed-by-rollouts: web, traffic.sluice.io/route-seq: "3"}}
spec:
  service: web-stable
  matches: [{kind: HTTPRouteGroup, name: api}]
  backends:
  - {service: web-canary, weight: 10}
  - {service: web-stable, weight: 90}
  - {service: web-old, weight: 0}
`,
			wantSpec: `
service: web-stable
matches: [{kind: HTTPRouteGroup, name: api}]
backends: [{service: web-canary, weight: 30}, {service: web-stable, weight: 70}]
`,
		},
		{
			name: "gives each experiment template a backend, its weight taken from the stable's", version: "v1alpha3", wantName: "web",
			route: func(r *tasks.Route) {
				r.Experiments = []tasks.ExperimentRoute{
					{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "baseline", Service: "web-baseline"}, PodHash: "s1", Weight: 10},
					{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "canary", Service: "web-exp-canary"}, PodHash: "c1", Weight: 20},
				}
			},
			wantSpec: `
service: web-stable
backends:
- {service: web-canary, weight: 30}
- {service: web-baseline, weight: 10}
- {service: web-exp-canary, weight: 20}
- {service: web-stable, weight: 40}
`,
		},
		{
			name: "an experiment's backends go when it ends", version: "v1alpha3", wantName: "web",
			existing: `
apiVersion: split.smi-spec.io/v1alpha3
kind: TrafficSplit
metadata: {name: web, namespace: default, annotations: {argo-rollouts.argoproj.io/managed-by-rollouts: web}}
spec:
  service: web-stable
  backends:
  - {service: web-canary, weight: 30}
  - {service: web-baseline, weight: 10}
  - {service: web-stable, weight: 60}
`,
			wantSpec: `
service: web-stable
backends: [{service: web-canary, weight: 30}, {service: web-stable, weight: 70}]
`,
		},
		{
			name: "adopts the TrafficSplit Argo Rollouts created for the rollout", version: "v1alpha1", wantName: "web",
			existing: `
apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata:
  name: web
  namespace: default
  ownerReferences: [{apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: web, uid: u1, controller: true}]
spec:
  service: web-stable
  backends:
  - {service: web-canary, weight: "500m"}
  - {service: web-stable, weight: "9500m"}
`,
			wantSpec: `
service: web-stable
backends: [{service: web-canary, weight: "30"}, {service: web-stable, weight: "70"}]
`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var existing []string
			if tc.existing != "" {
				existing = append(existing, tc.existing)
			}
			c := seed(t, tc.version, existing...)
			r := newRouter(t, c, tc.version)
			route := traffictest.Canary(30)
			if tc.route != nil {
				tc.route(&route)
			}
			w, err := r.Apply(context.Background(), web, 4, route)
			if err != nil {
				t.Fatal(err)
			}
			if w != 30 {
				t.Errorf("weight %d, want 30", w)
			}
			// The stored TrafficSplit has the spec asked for, the annotations
			// of the rollout and this route, and the owners it had.
			want := &unstructured.Unstructured{Object: map[string]any{"spec": kubefake.Value(t, tc.wantSpec)}}
			want.SetAPIVersion(smi.Group + "/" + tc.version)
			want.SetKind("TrafficSplit")
			want.SetAnnotations(map[string]string{spec.AnnotationManagedBy: "web", guard.SeqAnnotation: "4"})
			if tc.existing != "" {
				want.SetOwnerReferences(kubefake.Object(t, tc.existing).GetOwnerReferences())
			}
			got := kubefake.Get(t, c, gvr(tc.version), "default", tc.wantName)
			kubefake.SameField(t, "TrafficSplit", got, want, "spec")
			kubefake.SameField(t, "TrafficSplit", got, want, "metadata", "annotations")
			kubefake.SameField(t, "TrafficSplit", got, want, "metadata", "ownerReferences")
			if got.GetAPIVersion() != want.GetAPIVersion() || got.GetKind() != want.GetKind() {
				t.Errorf("stored %s %s, want %s %s", got.GetAPIVersion(), got.GetKind(), want.GetAPIVersion(), want.GetKind())
			}

			before := kubefake.Writes(c)
			if _, err := r.Apply(context.Background(), web, 4, route); err != nil {
				t.Fatal(err)
			}
			if n := kubefake.Writes(c) - before; n != 0 {
				t.Errorf("the same route again wrote %d times", n)
			}
		})
	}
}

func TestReportsTheWeightStored(t *testing.T) {
	c := seed(t, "v1alpha3")
	// A mutating webhook rewrites the weights the router creates: the
	// weight reported is the canary's share of what is stored.
	c.PrependReactor("create", "trafficsplits", func(a k8stesting.Action) (bool, runtime.Object, error) {
		split := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		_ = unstructured.SetNestedSlice(split.Object, []any{
			map[string]any{"service": "web-canary", "weight": int64(1)},
			map[string]any{"service": "web-stable", "weight": int64(3)},
		}, "spec", "backends")
		return false, nil, nil
	})
	if w, err := newRouter(t, c, "v1alpha3").Apply(context.Background(), web, 1, traffictest.Canary(10)); err != nil || w != 25 {
		t.Fatalf("Apply: %d, %v; want the 25 stored", w, err)
	}
}

func TestRejects(t *testing.T) {
	other := `
apiVersion: split.smi-spec.io/v1alpha3
kind: TrafficSplit
metadata: {name: web, namespace: default, annotations: {argo-rollouts.argoproj.io/managed-by-rollouts: shop}}
spec: {service: web}
`
	mine := `
apiVersion: split.smi-spec.io/v1alpha3
kind: TrafficSplit
metadata: {name: web, namespace: default}
spec: {service: web}
`
	cases := []struct {
		name     string
		existing []string
		route    func(*tasks.Route)
		wantMsg  string
	}{
		{name: "no smi configuration", route: func(r *tasks.Route) { r.TrafficRouting = &spec.TrafficRouting{Istio: &spec.IstioTrafficRouting{}} },
			wantMsg: "no trafficRouting.smi"},
		{name: "a header route", route: func(r *tasks.Route) {
			r.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X", HeaderValue: &spec.StringMatch{Exact: "1"}}}}}
		}, wantMsg: `header route "beta": an SMI TrafficSplit splits by weight only; remove the setHeaderRoute steps`},
		{name: "a mirror route", route: func(r *tasks.Route) {
			r.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "GET"}}}}}
		}, wantMsg: `mirror route "shadow": an SMI TrafficSplit cannot mirror requests`},
		{name: "experiment weights above maxTrafficWeight with the canary's", route: func(r *tasks.Route) {
			r.Experiments = []tasks.ExperimentRoute{{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "a", Service: "web-a"}, Weight: 95}}
		}, wantMsg: "the canary weight 10 and the experiment templates' weights add up to 105, above 100"},
		{name: "an experiment template without a Service", route: func(r *tasks.Route) {
			r.Experiments = []tasks.ExperimentRoute{{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "a"}, Weight: 5}}
		}, wantMsg: "experiment web-c1-2-1 template a has a weight and no Service to send it to"},
		{name: "a TrafficSplit of another rollout", existing: []string{other}, wantMsg: `TrafficSplit default/web: route rejected: it is managed by rollout "shop"`},
		{name: "a TrafficSplit no rollout created", existing: []string{mine}, wantMsg: `it was not created for rollout "web"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := seed(t, "v1alpha3", tc.existing...)
			route := traffictest.Canary(10)
			if tc.route != nil {
				tc.route(&route)
			}
			_, err := newRouter(t, c, "v1alpha3").Apply(context.Background(), web, 1, route)
			kubefake.Rejected(t, c, err, tc.wantMsg)
		})
	}
}

func TestHeaderRouteRemovalIsAccepted(t *testing.T) {
	// A setHeaderRoute step without match removes the route, which a
	// TrafficSplit never had.
	c := seed(t, "v1alpha3")
	route := traffictest.Canary(10)
	route.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta"}}
	if _, err := newRouter(t, c, "v1alpha3").Apply(context.Background(), web, 1, route); err != nil {
		t.Fatal(err)
	}
}

func TestMissingCRDIsRejected(t *testing.T) {
	c := seed(t, "v1alpha3")
	c.PrependReactor("create", "trafficsplits", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(gvr("v1alpha3").GroupResource(), "")
	})
	_, err := newRouter(t, c, "v1alpha3").Apply(context.Background(), web, 1, traffictest.Canary(10))
	if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), "does not serve split.smi-spec.io/v1alpha3 TrafficSplits") {
		t.Errorf("error %v, want ErrRejected naming the missing API", err)
	}
}

func TestLowerSeqDoesNotOverwrite(t *testing.T) {
	c := seed(t, "v1alpha3")
	r := newRouter(t, c, "v1alpha3")
	if _, err := r.Apply(context.Background(), web, 5, traffictest.Canary(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(context.Background(), web, 4, traffictest.Canary(50)); !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("seq 4 after 5: %v", err)
	}
	if s := guard.Seq(kubefake.Get(t, c, gvr("v1alpha3"), "default", "web")); s != 5 {
		t.Errorf("stored seq %d, want 5", s)
	}
}

func TestBlueGreenChangesNothing(t *testing.T) {
	c := seed(t, "v1alpha3")
	w, err := newRouter(t, c, "").Apply(context.Background(), web, 1, traffictest.BlueGreen("s1", "c1"))
	if err != nil || w != 0 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Errorf("%d API calls, want none", n)
	}
}

func TestConfig(t *testing.T) {
	if _, err := smi.New(smi.Config{}); err == nil {
		t.Error("New without a client succeeded")
	}
	if _, err := smi.New(smi.Config{Client: seed(t, "v1alpha3"), APIVersion: "v1beta1"}); err == nil || !strings.Contains(err.Error(), `"v1beta1"`) {
		t.Errorf("New with API version v1beta1: %v", err)
	}
}

// Deleting the rollout deletes the TrafficSplit the router created.
func TestRemoveDeletesTheTrafficSplit(t *testing.T) {
	c := seed(t, "v1alpha3")
	r := newRouter(t, c, "v1alpha3")
	web := events.Ref{Namespace: "default", Name: "web"}
	if _, err := r.Apply(context.Background(), web, 1, traffictest.Canary(30)); err != nil {
		t.Fatal(err)
	}
	kubefake.Get(t, c, gvr("v1alpha3"), "default", "web")
	if _, err := r.Apply(context.Background(), web, 2, traffictest.Remove(traffictest.Canary(30))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resource(gvr("v1alpha3")).Namespace("default").Get(context.Background(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("TrafficSplit after remove: %v, want it deleted", err)
	}
}
