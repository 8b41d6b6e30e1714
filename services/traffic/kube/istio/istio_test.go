package istio_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/istio"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

var (
	vsGVR = schema.GroupVersionResource{Group: istio.Group, Version: "v1alpha3", Resource: "virtualservices"}
	drGVR = schema.GroupVersionResource{Group: istio.Group, Version: "v1alpha3", Resource: "destinationrules"}
	kinds = map[schema.GroupVersionResource]string{vsGVR: "VirtualServiceList", drGVR: "DestinationRuleList"}
	web   = events.Ref{Namespace: "default", Name: "web"}
)

// oneRoute is a VirtualService with one unnamed HTTP route between the
// stable and canary Services.
const oneRoute = `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  http:
  - route:
    - destination: {host: web-stable, port: {number: 8080}}
      weight: 100
    - destination: {host: web-canary.default.svc.cluster.local, port: {number: 8080}}
      weight: 0
`

func newRouter(t *testing.T, c *dynamicfake.FakeDynamicClient) *istio.Router {
	t.Helper()
	r, err := istio.New(istio.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func seed(t *testing.T, manifests ...string) *dynamicfake.FakeDynamicClient {
	t.Helper()
	objs := map[schema.GroupVersionResource][]*unstructured.Unstructured{}
	for _, m := range manifests {
		o := kubefake.Object(t, m)
		gvr := vsGVR
		if o.GetKind() == "DestinationRule" {
			gvr = drGVR
		}
		objs[gvr] = append(objs[gvr], o)
	}
	return kubefake.NewDynamicClient(t, kinds, objs)
}

// canary is a canary route at weight with the given Istio configuration.
func canary(weight int32, is *spec.IstioTrafficRouting, managed ...string) tasks.Route {
	tr := &spec.TrafficRouting{Istio: is}
	for _, m := range managed {
		tr.ManagedRoutes = append(tr.ManagedRoutes, spec.ManagedRoute{Name: m})
	}
	return tasks.Route{
		Strategy: "canary", CanaryService: "web-canary", StableService: "web-stable",
		StableHash: "s1", CanaryHash: "c1", CanaryWeight: weight, TrafficRouting: tr,
	}
}

// experiment is an experiment template's share of a route.
func experiment(template, service string, weight int32) tasks.ExperimentRoute {
	return tasks.ExperimentRoute{
		Pods:    tasks.ExperimentPods{Name: "web-c1-2-1", Template: template, Service: service},
		PodHash: "c1", Weight: weight,
	}
}

func withExperiments(r tasks.Route, e ...tasks.ExperimentRoute) tasks.Route {
	r.Experiments = e
	return r
}

func vs(name string, routes ...string) *spec.IstioTrafficRouting {
	return &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: name, Routes: routes}}
}

func TestContract(t *testing.T) {
	clients := sync.Map{} // *testing.T -> client of the router under test
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) traffic.Router {
			c := seed(t)
			clients.Store(t, c)
			return newRouter(t, c)
		},
		Prepare: func(t *testing.T, ref events.Ref, route *tasks.Route) {
			if route.Strategy == "blueGreen" {
				return
			}
			c, _ := clients.Load(t)
			o := kubefake.Object(t, oneRoute)
			o.SetNamespace(ref.Namespace)
			o.SetName(ref.Name)
			_, err := c.(*dynamicfake.FakeDynamicClient).Resource(vsGVR).Namespace(ref.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			route.TrafficRouting = &spec.TrafficRouting{Istio: vs(ref.Name)}
		},
	})
}

func TestApply(t *testing.T) {
	beta := spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{
		{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}},
		{HeaderName: "User-Agent", HeaderValue: &spec.StringMatch{Regex: ".*Firefox.*"}},
	}}
	fifty := int32(50)
	shadow := spec.SetMirrorRoute{Name: "shadow", Percentage: &fifty, Match: []spec.RouteMatch{
		{Method: &spec.StringMatch{Exact: "GET"}, Path: &spec.StringMatch{Prefix: "/api/"}},
		{Headers: map[string]spec.StringMatch{"X-Shadow": {Prefix: "y"}}},
	}}
	withRoutes := func(r tasks.Route, f func(*tasks.Route)) tasks.Route { f(&r); return r }

	cases := []struct {
		name    string
		objects []string
		route   tasks.Route
		want    []string // manifests whose spec the stored objects must have
		weight  int32
	}{
		{
			name:    "sets the weights of the only HTTP route",
			objects: []string{oneRoute},
			route:   canary(30, vs("web")),
			weight:  30,
			want:    []string{strings.NewReplacer("weight: 100", "weight: 70", "weight: 0", "weight: 30").Replace(oneRoute)},
		},
		{
			name: "sets the named HTTP routes, removes other destinations, keeps other routes",
			objects: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - name: primary
    route:
    - destination: {host: web-stable}
      weight: 80
    - destination: {host: web-canary}
      weight: 10
    - destination: {host: web-experiment}
      weight: 10
  - name: static
    route:
    - destination: {host: cdn}
`},
			route:  canary(25, vs("web", "primary")),
			weight: 25,
			want: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - name: primary
    route:
    - destination: {host: web-stable}
      weight: 75
    - destination: {host: web-canary}
      weight: 25
  - name: static
    route:
    - destination: {host: cdn}
`},
		},
		{
			name: "sets TLS routes by port and SNI hosts and TCP routes by port",
			objects: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  tls:
  - match: [{port: 443, sniHosts: [a.example.com, b.example.com]}]
    route:
    - destination: {host: web-stable}
      weight: 100
    - destination: {host: web-canary}
  - match: [{port: 443, sniHosts: [other.example.com]}]
    route:
    - destination: {host: other}
  tcp:
  - match: [{port: 5432}]
    route:
    - destination: {host: web-stable}
    - destination: {host: web-canary}
  - match: [{port: 6379}]
    route:
    - destination: {host: redis}
`},
			route: canary(40, &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{
				Name:      "web",
				TLSRoutes: []spec.TLSRoute{{Port: 443, SNIHosts: []string{"b.example.com", "a.example.com"}}},
				TCPRoutes: []spec.TCPRoute{{Port: 5432}},
			}}),
			weight: 40,
			want: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  tls:
  - match: [{port: 443, sniHosts: [a.example.com, b.example.com]}]
    route:
    - destination: {host: web-stable}
      weight: 60
    - destination: {host: web-canary}
      weight: 40
  - match: [{port: 443, sniHosts: [other.example.com]}]
    route:
    - destination: {host: other}
  tcp:
  - match: [{port: 5432}]
    route:
    - destination: {host: web-stable}
      weight: 60
    - destination: {host: web-canary}
      weight: 40
  - match: [{port: 6379}]
    route:
    - destination: {host: redis}
`},
		},
		{
			name: "splits by DestinationRule subsets and labels them with the pod hashes",
			objects: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - route:
    - destination: {host: web, subset: stable}
      weight: 100
    - destination: {host: web, subset: canary}
      weight: 0
`, `
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  subsets:
  - name: canary
    labels: {app: web, rollouts-pod-template-hash: old}
  - name: stable
  - name: debug
    labels: {app: web, track: debug}
`},
			route: withRoutes(canary(10, &spec.IstioTrafficRouting{
				VirtualService:  &spec.IstioVirtualService{Name: "web"},
				DestinationRule: &spec.IstioDestinationRule{Name: "web", CanarySubsetName: "canary", StableSubsetName: "stable"},
			}), func(r *tasks.Route) { r.CanaryService, r.StableService = "", "" }),
			weight: 10,
			want: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - route:
    - destination: {host: web, subset: stable}
      weight: 90
    - destination: {host: web, subset: canary}
      weight: 10
`, `
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  subsets:
  - name: canary
    labels: {app: web, rollouts-pod-template-hash: c1}
  - name: stable
    labels: {rollouts-pod-template-hash: s1}
  - name: debug
    labels: {app: web, track: debug}
`},
		},
		{
			name:    "adds header and mirror routes first, in managedRoutes order",
			objects: []string{oneRoute},
			route: withRoutes(canary(30, vs("web"), "shadow", "beta"), func(r *tasks.Route) {
				r.HeaderRoutes = []spec.SetHeaderRoute{beta}
				r.MirrorRoutes = []spec.SetMirrorRoute{shadow}
			}),
			weight: 30,
			want: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  http:
  - name: shadow
    match:
    - method: {exact: GET}
      uri: {prefix: /api/}
    - headers:
        X-Shadow: {prefix: "y"}
    route:
    - destination: {host: web-stable, port: {number: 8080}}
      weight: 70
    - destination: {host: web-canary.default.svc.cluster.local, port: {number: 8080}}
      weight: 30
    mirror: {host: web-canary.default.svc.cluster.local, port: {number: 8080}}
    mirrorPercentage: {value: 50}
  - name: beta
    match:
    - headers:
        X-Beta: {exact: "1"}
        User-Agent: {regex: ".*Firefox.*"}
    route:
    - destination: {host: web-canary.default.svc.cluster.local, port: {number: 8080}}
      weight: 100
  - route:
    - destination: {host: web-stable, port: {number: 8080}}
      weight: 70
    - destination: {host: web-canary.default.svc.cluster.local, port: {number: 8080}}
      weight: 30
`},
		},
		{
			name: "header routes go to the canary subset",
			objects: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - name: primary
    route:
    - destination: {host: web, subset: stable}
    - destination: {host: web, subset: canary}
`, `
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  subsets: [{name: canary}, {name: stable}]
`},
			route: withRoutes(canary(0, &spec.IstioTrafficRouting{
				VirtualService:  &spec.IstioVirtualService{Name: "web", Routes: []string{"primary"}},
				DestinationRule: &spec.IstioDestinationRule{Name: "web", CanarySubsetName: "canary", StableSubsetName: "stable"},
			}, "beta"), func(r *tasks.Route) {
				r.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Prefix: "yes"}}}}}
			}),
			weight: 0,
			want: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - name: beta
    match:
    - headers:
        X-Beta: {prefix: "yes"}
    route:
    - destination: {host: web, subset: canary}
      weight: 100
  - name: primary
    route:
    - destination: {host: web, subset: stable}
      weight: 100
    - destination: {host: web, subset: canary}
      weight: 0
`},
		},
		{
			name:    "experiment templates get a destination each, their weights taken from the stable",
			objects: []string{oneRoute},
			route:   withExperiments(canary(20, vs("web")), experiment("baseline", "web-baseline", 10), experiment("canary", "web-exp-canary", 15)),
			weight:  20,
			want: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  http:
  - route:
    - destination: {host: web-stable, port: {number: 8080}}
      weight: 55
    - destination: {host: web-canary.default.svc.cluster.local, port: {number: 8080}}
      weight: 20
    - destination: {host: web-baseline}
      weight: 10
    - destination: {host: web-exp-canary}
      weight: 15
`},
		},
		{
			name: "an experiment template's destination already there keeps its place, fields and gets its weight; with subsets too",
			objects: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - route:
    - destination: {host: web-baseline.default.svc.cluster.local, port: {number: 80}}
      weight: 3
    - destination: {host: web, subset: stable}
      weight: 97
    - destination: {host: web, subset: canary}
`, `
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  subsets: [{name: stable}, {name: canary}]
`},
			route: withExperiments(canary(0, &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web"},
				DestinationRule: &spec.IstioDestinationRule{Name: "web", CanarySubsetName: "canary", StableSubsetName: "stable"}}),
				experiment("baseline", "web-baseline", 5)),
			weight: 0,
			want: []string{`
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - route:
    - destination: {host: web-baseline.default.svc.cluster.local, port: {number: 80}}
      weight: 5
    - destination: {host: web, subset: stable}
      weight: 95
    - destination: {host: web, subset: canary}
      weight: 0
`},
		},
		{
			name:    "a VirtualService in another namespace is named name.namespace",
			objects: []string{strings.Replace(oneRoute, "namespace: default", "namespace: mesh", 1)},
			route:   canary(5, vs("web.mesh")),
			weight:  5,
			want:    []string{strings.NewReplacer("namespace: default", "namespace: mesh", "weight: 100", "weight: 95", "weight: 0", "weight: 5").Replace(oneRoute)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := seed(t, tc.objects...)
			r := newRouter(t, c)
			w, err := r.Apply(context.Background(), web, 7, tc.route)
			if err != nil {
				t.Fatal(err)
			}
			if w != tc.weight {
				t.Errorf("weight %d, want %d", w, tc.weight)
			}
			for _, m := range tc.want {
				want := kubefake.Object(t, m)
				gvr := vsGVR
				if want.GetKind() == "DestinationRule" {
					gvr = drGVR
				}
				got := kubefake.Get(t, c, gvr, want.GetNamespace(), want.GetName())
				kubefake.SameField(t, want.GetKind(), got, want, "spec")
				if s := guard.Seq(got); s != 7 {
					t.Errorf("%s records seq %d, want 7", want.GetKind(), s)
				}
				if owner := got.GetAnnotations()[spec.AnnotationManagedBy]; owner != "web" {
					t.Errorf("%s managed by %q, want web", want.GetKind(), owner)
				}
			}

			// Applying the same route again writes nothing.
			before := kubefake.Writes(c)
			if _, err := r.Apply(context.Background(), web, 7, tc.route); err != nil {
				t.Fatal(err)
			}
			if n := kubefake.Writes(c) - before; n != 0 {
				t.Errorf("the same route again wrote %d times", n)
			}
		})
	}
}

// httpNames lists the names of the HTTP routes of VirtualService web, ""
// for an unnamed one.
func httpNames(t *testing.T, c *dynamicfake.FakeDynamicClient) []string {
	t.Helper()
	routes, _, _ := unstructured.NestedSlice(kubefake.Get(t, c, vsGVR, "default", "web").Object, "spec", "http")
	var names []string
	for _, r := range routes {
		n, _ := r.(map[string]any)["name"].(string)
		names = append(names, n)
	}
	return names
}

func TestManagedRoutesFollowTheRoute(t *testing.T) {
	c := seed(t, oneRoute)
	r := newRouter(t, c)
	header := func(name string) spec.SetHeaderRoute {
		return spec.SetHeaderRoute{Name: name, Match: []spec.HeaderRoutingMatch{{HeaderName: "X-" + name, HeaderValue: &spec.StringMatch{Exact: "1"}}}}
	}
	mirror := spec.SetMirrorRoute{Name: "m", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "POST"}}}}
	steps := []struct {
		headers []spec.SetHeaderRoute
		mirrors []spec.SetMirrorRoute
		want    []string
	}{
		{headers: []spec.SetHeaderRoute{header("b")}, want: []string{"b", ""}},
		{headers: []spec.SetHeaderRoute{header("b"), header("a")}, mirrors: []spec.SetMirrorRoute{mirror}, want: []string{"a", "m", "b", ""}},
		{headers: []spec.SetHeaderRoute{header("a"), {Name: "b"}}, mirrors: []spec.SetMirrorRoute{mirror}, want: []string{"a", "m", ""}},
		{want: []string{""}},
	}
	for i, s := range steps {
		route := canary(20, vs("web"), "a", "m", "b")
		route.HeaderRoutes, route.MirrorRoutes = s.headers, s.mirrors
		if _, err := r.Apply(context.Background(), web, int64(i+1), route); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := httpNames(t, c); !slices.Equal(got, s.want) {
			t.Errorf("step %d: HTTP routes %q, want %q", i, got, s.want)
		}
	}
}

func TestRejects(t *testing.T) {
	twoRoutes := `
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  http:
  - name: a
    route: [{destination: {host: web-stable}}, {destination: {host: web-canary}}]
  - name: b
    route: [{destination: {host: web-stable}}]
`
	dr := `
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  subsets: [{name: stable}]
`
	header := spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}
	cases := []struct {
		name    string
		objects []string
		route   func() tasks.Route
		wantMsg string
	}{
		{name: "no istio configuration", objects: []string{oneRoute},
			route: func() tasks.Route {
				r := canary(10, nil)
				r.TrafficRouting = &spec.TrafficRouting{SMI: &spec.SMITrafficRouting{}}
				return r
			},
			wantMsg: "no trafficRouting.istio"},
		{name: "a missing VirtualService", route: func() tasks.Route { return canary(10, vs("web")) },
			wantMsg: "VirtualService default/web does not exist"},
		{name: "a missing named route", objects: []string{twoRoutes}, route: func() tasks.Route { return canary(10, vs("web", "c")) },
			wantMsg: `has no HTTP route named "c"`},
		{name: "several HTTP routes and none named", objects: []string{twoRoutes}, route: func() tasks.Route { return canary(10, vs("web")) },
			wantMsg: "it has 2 HTTP routes; name the ones to weight in virtualService.routes"},
		{name: "a route without the canary", objects: []string{twoRoutes}, route: func() tasks.Route { return canary(10, vs("web", "a", "b")) },
			wantMsg: `its HTTP route "b" has no destination with host "web-canary" (canaryService)`},
		{name: "a TLS route that matches nothing", objects: []string{oneRoute},
			route: func() tasks.Route {
				return canary(10, &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web", TLSRoutes: []spec.TLSRoute{{Port: 443}}}})
			},
			wantMsg: "it has no TLS route matching port 443"},
		{name: "maxTrafficWeight", objects: []string{oneRoute},
			route: func() tasks.Route {
				r := canary(10, vs("web"))
				max := int32(1000)
				r.TrafficRouting.MaxTrafficWeight = &max
				return r
			},
			wantMsg: "Istio weights are percentages"},
		{name: "a header route not in managedRoutes", objects: []string{oneRoute},
			route: func() tasks.Route {
				r := canary(10, vs("web"))
				r.HeaderRoutes = []spec.SetHeaderRoute{header}
				return r
			},
			wantMsg: `header route "beta" is not listed in trafficRouting.managedRoutes`},
		{name: "experiment weights above 100 with the canary's", objects: []string{oneRoute},
			route: func() tasks.Route {
				return withExperiments(canary(60, vs("web")), experiment("a", "web-a", 30), experiment("b", "web-b", 20))
			},
			wantMsg: "the canary weight 60 and the experiment templates' weights add up to 110, above 100"},
		{name: "an experiment template without a Service", objects: []string{oneRoute},
			route:   func() tasks.Route { return withExperiments(canary(10, vs("web")), experiment("a", "", 10)) },
			wantMsg: "experiment web-c1-2-1 template a has a weight and no Service to send it to"},
		{name: "an experiment template sent to the stable Service", objects: []string{oneRoute},
			route:   func() tasks.Route { return withExperiments(canary(10, vs("web")), experiment("a", "web-stable", 10)) },
			wantMsg: `its Service "web-stable" is the rollout's canary or stable Service`},
		{name: "a VirtualService another rollout manages",
			objects: []string{strings.Replace(oneRoute, "metadata: {name: web, namespace: default}", "metadata: {name: web, namespace: default, annotations: {argo-rollouts.argoproj.io/managed-by-rollouts: shop}}", 1)},
			route:   func() tasks.Route { return canary(10, vs("web")) },
			wantMsg: `it is managed by rollout "shop"`},
		{name: "a DestinationRule without the canary subset", objects: []string{oneRoute, dr},
			route: func() tasks.Route {
				return canary(10, &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web"},
					DestinationRule: &spec.IstioDestinationRule{Name: "web", CanarySubsetName: "canary", StableSubsetName: "stable"}})
			},
			wantMsg: `DestinationRule default/web: route rejected: it has no subset "canary"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := seed(t, tc.objects...)
			_, err := newRouter(t, c).Apply(context.Background(), web, 1, tc.route())
			kubefake.Rejected(t, c, err, tc.wantMsg)
		})
	}
}

func TestRejectedRouteChangesNoObject(t *testing.T) {
	bySubset := strings.NewReplacer("host: web-stable,", "host: web, subset: stable,", "host: web-canary.default.svc.cluster.local,", "host: web, subset: canary,").Replace(oneRoute)
	second := strings.Replace(bySubset, "name: web,", "name: web-internal,", 1)
	dr := `
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  subsets: [{name: canary}, {name: stable}]
`
	c := seed(t, bySubset, second, dr)
	route := canary(50, &spec.IstioTrafficRouting{
		VirtualServices: []spec.IstioVirtualService{{Name: "web"}, {Name: "web-internal", Routes: []string{"missing"}}},
		DestinationRule: &spec.IstioDestinationRule{Name: "web", CanarySubsetName: "canary", StableSubsetName: "stable"},
	})
	_, err := newRouter(t, c).Apply(context.Background(), web, 1, route)
	kubefake.Rejected(t, c, err, "VirtualService default/web-internal")
}

func TestSetsEveryVirtualService(t *testing.T) {
	second := strings.Replace(oneRoute, "name: web,", "name: web-internal,", 1)
	c := seed(t, oneRoute, second)
	route := canary(60, &spec.IstioTrafficRouting{VirtualServices: []spec.IstioVirtualService{{Name: "web"}, {Name: "web-internal"}}})
	if w, err := newRouter(t, c).Apply(context.Background(), web, 1, route); err != nil || w != 60 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	for _, name := range []string{"web", "web-internal"} {
		routes, _, _ := unstructured.NestedSlice(kubefake.Get(t, c, vsGVR, "default", name).Object, "spec", "http")
		dests := routes[0].(map[string]any)["route"].([]any)
		if w := dests[1].(map[string]any)["weight"]; w != int64(60) {
			t.Errorf("%s canary weight %v, want 60", name, w)
		}
	}
}

func TestBlueGreenChangesNothing(t *testing.T) {
	c := seed(t, oneRoute)
	w, err := newRouter(t, c).Apply(context.Background(), web, 1, traffictest.BlueGreen("s1", "c1"))
	if err != nil || w != 0 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Errorf("%d API calls, want none", n)
	}
}

func TestConfig(t *testing.T) {
	if _, err := istio.New(istio.Config{}); err == nil {
		t.Error("New without a client succeeded")
	}
	if _, err := istio.New(istio.Config{Client: seed(t), APIVersion: "v2"}); err == nil || !strings.Contains(err.Error(), `"v2"`) {
		t.Errorf("New with API version v2: %v", err)
	}
	c := kubefake.NewDynamicClient(t, map[schema.GroupVersionResource]string{
		{Group: istio.Group, Version: "v1", Resource: "virtualservices"}: "VirtualServiceList",
	}, map[schema.GroupVersionResource][]*unstructured.Unstructured{
		{Group: istio.Group, Version: "v1", Resource: "virtualservices"}: {kubefake.Object(t, oneRoute)},
	})
	r, err := istio.New(istio.Config{Client: c, APIVersion: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := r.Apply(context.Background(), web, 1, canary(15, vs("web"))); err != nil || w != 15 {
		t.Errorf("Apply with networking.istio.io/v1: %d, %v", w, err)
	}
}

// Deleting the rollout leaves the user's VirtualService routing everything
// to the stable Service, without the rollout's header routes.
func TestRemoveSendsEverythingBackToStable(t *testing.T) {
	c := seed(t, oneRoute)
	r := newRouter(t, c)
	route := canary(40, vs("web"), "beta")
	route.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}}
	if _, err := r.Apply(context.Background(), web, 1, route); err != nil {
		t.Fatal(err)
	}
	if got := httpNames(t, c); !slices.Equal(got, []string{"beta", ""}) {
		t.Fatalf("HTTP routes before remove %q", got)
	}
	if _, err := r.Apply(context.Background(), web, 2, traffictest.Remove(route)); err != nil {
		t.Fatal(err)
	}
	if got := httpNames(t, c); !slices.Equal(got, []string{""}) {
		t.Errorf("HTTP routes after remove %q, want only the user's", got)
	}
	want := kubefake.Object(t, oneRoute)
	got := kubefake.Get(t, c, vsGVR, "default", "web")
	kubefake.SameField(t, "VirtualService", got, want, "spec")
}

// After a removal the VirtualService no longer carries the rollout's seq:
// a rollout of the same name created later starts from seq 1.
func TestRemoveReleasesTheSeq(t *testing.T) {
	c := seed(t, oneRoute)
	r := newRouter(t, c)
	if _, err := r.Apply(context.Background(), web, 9, canary(40, vs("web"))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(context.Background(), web, 10, traffictest.Remove(canary(40, vs("web")))); err != nil {
		t.Fatal(err)
	}
	ann := kubefake.Get(t, c, vsGVR, "default", "web").GetAnnotations()
	if _, ok := ann[guard.SeqAnnotation]; ok {
		t.Error("the VirtualService still carries the removed rollout's seq")
	}
	if _, ok := ann[spec.AnnotationManagedBy]; ok {
		t.Error("the VirtualService is still claimed by the removed rollout")
	}
	if w, err := r.Apply(context.Background(), web, 1, canary(30, vs("web"))); err != nil || w != 30 {
		t.Errorf("a new rollout at seq 1: weight %d, %v", w, err)
	}
}
