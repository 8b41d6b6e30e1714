package gatewayapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
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
	"github.com/sluicehq/sluice/services/traffic/kube/gatewayapi"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

var web = events.Ref{Namespace: "default", Name: "web"}

// simple is an HTTPRoute with one rule between the stable and canary.
const simple = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gateway}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    backendRefs:
    - {name: web-stable, port: 80, weight: 100}
    - {name: web-canary, port: 80, weight: 0}
`

func seed(t *testing.T, manifests ...string) *dynamicfake.FakeDynamicClient {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, m := range manifests {
		objs = append(objs, kubefake.Object(t, m))
	}
	return kubefake.NewDynamicClient(t, map[schema.GroupVersionResource]string{gatewayapi.HTTPRoutes: "HTTPRouteList"},
		map[schema.GroupVersionResource][]*unstructured.Unstructured{gatewayapi.HTTPRoutes: objs})
}

func newRouter(t *testing.T, c *dynamicfake.FakeDynamicClient) *gatewayapi.Router {
	t.Helper()
	r, err := gatewayapi.New(gatewayapi.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// canary is a canary route at weight with the plugin configuration
// config (JSON).
func canary(weight int32, config string, managed ...string) tasks.Route {
	tr := &spec.TrafficRouting{Plugins: spec.RouterPlugins{spec.GatewayAPIPlugin: json.RawMessage(config)}}
	for _, m := range managed {
		tr.ManagedRoutes = append(tr.ManagedRoutes, spec.ManagedRoute{Name: m})
	}
	return tasks.Route{
		Strategy: "canary", CanaryService: "web-canary", StableService: "web-stable",
		StableHash: "s1", CanaryHash: "c1", CanaryWeight: weight, TrafficRouting: tr,
	}
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
			o := kubefake.Object(t, simple)
			o.SetNamespace(ref.Namespace)
			o.SetName(ref.Name)
			_, err := c.(*dynamicfake.FakeDynamicClient).Resource(gatewayapi.HTTPRoutes).Namespace(ref.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			route.TrafficRouting = canary(0, `{"httpRoute":"`+ref.Name+`"}`).TrafficRouting
		},
	})
}

func TestApply(t *testing.T) {
	fifty := int32(50)
	max := int32(1000)
	with := func(r tasks.Route, f func(*tasks.Route)) tasks.Route { f(&r); return r }
	cases := []struct {
		name    string
		objects []string
		route   tasks.Route
		want    []string // HTTPRoutes as they must be stored (spec and managed-rules)
		weight  int32
	}{
		{
			name: "sets the weights of every rule with both Services",
			objects: []string{`
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs:
    - {name: web-stable, port: 80, weight: 100}
    - {name: web-canary, port: 80, weight: 0}
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs:
    - {name: web-canary, port: 8080}
    - {name: web-stable, port: 8080}
  - matches: [{path: {type: PathPrefix, value: /static}}]
    backendRefs: [{name: web-stable, port: 80, weight: 5}]
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: admin, port: 80}]
`},
			route:  canary(30, `{"httpRoute":"web"}`),
			weight: 30,
			want: []string{`
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs:
    - {name: web-stable, port: 80, weight: 70}
    - {name: web-canary, port: 80, weight: 30}
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs:
    - {name: web-canary, port: 8080, weight: 30}
    - {name: web-stable, port: 8080, weight: 70}
  - matches: [{path: {type: PathPrefix, value: /static}}]
    backendRefs: [{name: web-stable, port: 80, weight: 5}]
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: admin, port: 80}]
`},
		},
		{
			name:    "weights are out of maxTrafficWeight",
			objects: []string{simple},
			route:   with(canary(300, `{"httpRoute":"web"}`), func(r *tasks.Route) { r.TrafficRouting.MaxTrafficWeight = &max }),
			weight:  300,
			want:    []string{strings.NewReplacer("weight: 100", "weight: 700", "weight: 0", "weight: 300").Replace(simple)},
		},
		{
			name: "a header rule copies the first weighted rule, adds the headers and sends to the canary",
			objects: []string{`
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  rules:
  - matches:
    - path: {type: PathPrefix, value: /app}
      method: GET
      queryParams: [{name: v, value: "2"}]
      headers: [{name: X-Tenant, value: acme}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: X-Via, value: gw}]}
    backendRefs:
    - {name: web-stable, port: 80, weight: 100}
    - {name: web-canary, port: 8080, weight: 0}
`},
			route: with(canary(30, `{"httpRoute":"web"}`, "beta"), func(r *tasks.Route) {
				r.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{
					{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}},
					{HeaderName: "X-Group", HeaderValue: &spec.StringMatch{Prefix: "beta.users"}},
					{HeaderName: "User-Agent", HeaderValue: &spec.StringMatch{Regex: ".*Firefox.*"}},
				}}}
			}),
			weight: 30,
			want: []string{`
kind: HTTPRoute
metadata: {name: web, namespace: default, annotations: {traffic.sluice.io/managed-rules: beta}}
spec:
  rules:
  - name: beta
    matches:
    - path: {type: PathPrefix, value: /app}
      method: GET
      queryParams: [{name: v, type: Exact, value: "2"}]
      headers:
      - {name: X-Tenant, type: Exact, value: acme}
      - {name: X-Beta, type: Exact, value: "1"}
      - {name: X-Group, type: RegularExpression, value: "^beta\\.users.*"}
      - {name: User-Agent, type: RegularExpression, value: ".*Firefox.*"}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: X-Via, value: gw}]}
    backendRefs:
    - {group: "", kind: Service, name: web-canary, port: 8080, weight: 1}
  - matches:
    - path: {type: PathPrefix, value: /app}
      method: GET
      queryParams: [{name: v, value: "2"}]
      headers: [{name: X-Tenant, value: acme}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: X-Via, value: gw}]}
    backendRefs:
    - {name: web-stable, port: 80, weight: 70}
    - {name: web-canary, port: 8080, weight: 30}
`},
		},
		{
			name: "a mirror rule keeps the weights and mirrors to the canary",
			objects: []string{`
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  rules:
  - backendRefs:
    - {name: web-stable, port: 80}
    - {name: web-canary, port: 80}
`},
			route: with(canary(20, `{"httpRoute":"web"}`, "shadow", "beta"), func(r *tasks.Route) {
				r.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}}
				r.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Percentage: &fifty, Match: []spec.RouteMatch{
					{Method: &spec.StringMatch{Exact: "GET"}, Path: &spec.StringMatch{Prefix: "/api"}},
					{Headers: map[string]spec.StringMatch{"X-Shadow": {Exact: "1"}}},
				}}}
			}),
			weight: 20,
			want: []string{`
kind: HTTPRoute
metadata: {name: web, namespace: default, annotations: {traffic.sluice.io/managed-rules: "shadow,beta"}}
spec:
  rules:
  - name: shadow
    matches:
    - path: {type: PathPrefix, value: /api}
      method: GET
    - path: {type: PathPrefix, value: /}
      headers: [{name: X-Shadow, type: Exact, value: "1"}]
    backendRefs:
    - {name: web-stable, port: 80, weight: 80}
    - {name: web-canary, port: 80, weight: 20}
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {group: "", kind: Service, name: web-canary, port: 80}
        percent: 50
  - name: beta
    matches:
    - path: {type: PathPrefix, value: /}
      headers: [{name: X-Beta, type: Exact, value: "1"}]
    backendRefs:
    - {group: "", kind: Service, name: web-canary, port: 80, weight: 1}
  - backendRefs:
    - {name: web-stable, port: 80, weight: 80}
    - {name: web-canary, port: 80, weight: 20}
`},
		},
		{
			name: "header rules go to the routes with useHeaderRoutes, in the configured namespace",
			objects: []string{
				strings.NewReplacer("namespace: default", "namespace: edge", "{name: web-stable,", "{namespace: default, name: web-stable,", "{name: web-canary,", "{namespace: default, name: web-canary,").Replace(simple),
				strings.NewReplacer("namespace: default", "namespace: edge", "name: web,", "name: web-internal,", "{name: web-stable,", "{namespace: default, name: web-stable,", "{name: web-canary,", "{namespace: default, name: web-canary,").Replace(simple),
			},
			route: with(canary(10, `{"namespace":"edge","httpRoutes":[{"name":"web","useHeaderRoutes":true},{"name":"web-internal"}]}`, "beta"), func(r *tasks.Route) {
				r.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}}
			}),
			weight: 10,
			want: []string{`
kind: HTTPRoute
metadata: {name: web, namespace: edge, annotations: {traffic.sluice.io/managed-rules: beta}}
spec:
  parentRefs: [{name: gateway}]
  rules:
  - name: beta
    matches:
    - path: {type: PathPrefix, value: /}
      headers: [{name: X-Beta, type: Exact, value: "1"}]
    backendRefs:
    - {group: "", kind: Service, namespace: default, name: web-canary, port: 80, weight: 1}
  - matches:
    - path: {type: PathPrefix, value: /}
    backendRefs:
    - {namespace: default, name: web-stable, port: 80, weight: 90}
    - {namespace: default, name: web-canary, port: 80, weight: 10}
`, `
kind: HTTPRoute
metadata: {name: web-internal, namespace: edge}
spec:
  parentRefs: [{name: gateway}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    backendRefs:
    - {namespace: default, name: web-stable, port: 80, weight: 90}
    - {namespace: default, name: web-canary, port: 80, weight: 10}
`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := seed(t, tc.objects...)
			r := newRouter(t, c)
			w, err := r.Apply(context.Background(), web, 3, tc.route)
			if err != nil {
				t.Fatal(err)
			}
			if w != tc.weight {
				t.Errorf("weight %d, want %d", w, tc.weight)
			}
			for _, m := range tc.want {
				want := kubefake.Object(t, m)
				got := kubefake.Get(t, c, gatewayapi.HTTPRoutes, want.GetNamespace(), want.GetName())
				kubefake.SameField(t, "HTTPRoute "+want.GetName(), got, want, "spec")
				if g, w := got.GetAnnotations()[gatewayapi.AnnotationManagedRules], want.GetAnnotations()[gatewayapi.AnnotationManagedRules]; g != w {
					t.Errorf("HTTPRoute %s managed rules %q, want %q", want.GetName(), g, w)
				}
				if s := guard.Seq(got); s != 3 {
					t.Errorf("HTTPRoute %s records seq %d, want 3", want.GetName(), s)
				}
				if owner := got.GetAnnotations()[spec.AnnotationManagedBy]; owner != "web" {
					t.Errorf("HTTPRoute %s managed by %q, want web", want.GetName(), owner)
				}
			}

			before := kubefake.Writes(c)
			if _, err := r.Apply(context.Background(), web, 3, tc.route); err != nil {
				t.Fatal(err)
			}
			if n := kubefake.Writes(c) - before; n != 0 {
				t.Errorf("the same route again wrote %d times", n)
			}
		})
	}
}

// ruleNames lists the rule names of HTTPRoute default/web ("" for
// unnamed) and its managed-rules annotation.
func ruleNames(t *testing.T, c *dynamicfake.FakeDynamicClient) ([]string, string) {
	t.Helper()
	route := kubefake.Get(t, c, gatewayapi.HTTPRoutes, "default", "web")
	rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	var names []string
	for _, r := range rules {
		n, _ := r.(map[string]any)["name"].(string)
		names = append(names, n)
	}
	return names, route.GetAnnotations()[gatewayapi.AnnotationManagedRules]
}

// steps applies header and mirror routes in turn and checks the rules
// named after them (or, with names dropped, how many there are).
func steps(t *testing.T, c *dynamicfake.FakeDynamicClient, namesKept bool) {
	r := newRouter(t, c)
	header := func(name string) spec.SetHeaderRoute {
		return spec.SetHeaderRoute{Name: name, Match: []spec.HeaderRoutingMatch{{HeaderName: "X-" + name, HeaderValue: &spec.StringMatch{Exact: "1"}}}}
	}
	mirror := spec.SetMirrorRoute{Name: "m", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "POST"}}}}
	for i, s := range []struct {
		headers []spec.SetHeaderRoute
		mirrors []spec.SetMirrorRoute
		want    []string
	}{
		{headers: []spec.SetHeaderRoute{header("b")}, want: []string{"b", ""}},
		{headers: []spec.SetHeaderRoute{header("b"), header("a")}, mirrors: []spec.SetMirrorRoute{mirror}, want: []string{"a", "m", "b", ""}},
		{headers: []spec.SetHeaderRoute{header("b"), header("a")}, mirrors: []spec.SetMirrorRoute{mirror}, want: []string{"a", "m", "b", ""}},
		{headers: []spec.SetHeaderRoute{header("a"), {Name: "b"}}, mirrors: []spec.SetMirrorRoute{mirror}, want: []string{"a", "m", ""}},
		{want: []string{""}},
	} {
		route := canary(20, `{"httpRoute":"web"}`, "a", "m", "b")
		route.HeaderRoutes, route.MirrorRoutes = s.headers, s.mirrors
		if _, err := r.Apply(context.Background(), web, int64(i+1), route); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		names, recorded := ruleNames(t, c)
		wantRecorded := strings.Join(s.want[:len(s.want)-1], ",")
		if recorded != wantRecorded {
			t.Errorf("step %d: managed rules %q, want %q", i, recorded, wantRecorded)
		}
		if !namesKept {
			if len(names) != len(s.want) {
				t.Errorf("step %d: %d rules, want %d", i, len(names), len(s.want))
			}
			continue
		}
		if !slices.Equal(names, s.want) {
			t.Errorf("step %d: rules %q, want %q", i, names, s.want)
		}
	}
}

func TestManagedRulesFollowTheRoute(t *testing.T) {
	steps(t, seed(t, simple), true)
}

func TestManagedRulesWhenTheCRDDropsRuleNames(t *testing.T) {
	c := seed(t, simple)
	// An HTTPRoute CRD older than named rules prunes the field.
	c.PrependReactor("update", "httproutes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.UpdateAction).GetObject().(*unstructured.Unstructured)
		rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
		for _, r := range rules {
			delete(r.(map[string]any), "name")
		}
		_ = unstructured.SetNestedSlice(obj.Object, rules, "spec", "rules")
		return false, nil, nil
	})
	steps(t, c, false)
}

func TestRejects(t *testing.T) {
	header := spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}
	mirror := func(m spec.RouteMatch) []spec.SetMirrorRoute {
		return []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{m}}}
	}
	many := simple
	for range 15 {
		many += "  - backendRefs: [{name: other, port: 80}]\n"
	}
	cases := []struct {
		name    string
		objects []string
		route   func() tasks.Route
		wantMsg string
	}{
		{name: "no plugin configuration", objects: []string{simple},
			route:   func() tasks.Route { r := canary(10, `{}`); r.TrafficRouting.Plugins = nil; return r },
			wantMsg: `no trafficRouting.plugins["argoproj-labs/gatewayAPI"]`},
		{name: "a malformed plugin configuration", objects: []string{simple},
			route: func() tasks.Route { return canary(10, `{"httpRoute":1}`) }, wantMsg: "plugin argoproj-labs/gatewayAPI"},
		{name: "a missing HTTPRoute", route: func() tasks.Route { return canary(10, `{"httpRoute":"web"}`) },
			wantMsg: "HTTPRoute default/web does not exist"},
		{name: "no rule with both Services", objects: []string{strings.Replace(simple, "web-canary", "web-preview", 1)},
			route:   func() tasks.Route { return canary(10, `{"httpRoute":"web"}`) },
			wantMsg: `it has no rule with backendRefs to both Services "web-canary" and "web-stable" of namespace default`},
		{name: "a header route not in managedRoutes", objects: []string{simple},
			route: func() tasks.Route {
				r := canary(10, `{"httpRoute":"web"}`)
				r.HeaderRoutes = []spec.SetHeaderRoute{header}
				return r
			},
			wantMsg: `header route "beta" is not listed in trafficRouting.managedRoutes`},
		{name: "a managed route name that cannot name a rule", objects: []string{simple},
			route: func() tasks.Route {
				r := canary(10, `{"httpRoute":"web"}`, "Beta_1")
				h := header
				h.Name = "Beta_1"
				r.HeaderRoutes = []spec.SetHeaderRoute{h}
				return r
			},
			wantMsg: `header route "Beta_1" names an HTTPRoute rule`},
		{name: "header routes and no route using them", objects: []string{simple},
			route: func() tasks.Route {
				r := canary(10, `{"httpRoutes":[{"name":"web"}]}`, "beta")
				r.HeaderRoutes = []spec.SetHeaderRoute{header}
				return r
			},
			wantMsg: "header and mirror routes need an HTTPRoute with useHeaderRoutes: true"},
		{name: "a mirror method that is not exact", objects: []string{simple},
			route: func() tasks.Route {
				r := canary(10, `{"httpRoute":"web"}`, "shadow")
				r.MirrorRoutes = mirror(spec.RouteMatch{Method: &spec.StringMatch{Prefix: "G"}})
				return r
			},
			wantMsg: `mirror route "shadow": match 0: an HTTPRoute matches one method exactly`},
		{name: "a mirror path not starting with /", objects: []string{simple},
			route: func() tasks.Route {
				r := canary(10, `{"httpRoute":"web"}`, "shadow")
				r.MirrorRoutes = mirror(spec.RouteMatch{Path: &spec.StringMatch{Prefix: "api"}})
				return r
			},
			wantMsg: `path "api" must start with /`},
		{name: "too many rules", objects: []string{many},
			route: func() tasks.Route {
				r := canary(10, `{"httpRoute":"web"}`, "beta")
				r.HeaderRoutes = []spec.SetHeaderRoute{header}
				return r
			},
			wantMsg: "it would have 17 rules, more than the 16 an HTTPRoute allows"},
		{name: "maxTrafficWeight beyond a backendRef weight", objects: []string{simple},
			route: func() tasks.Route {
				r := canary(10, `{"httpRoute":"web"}`)
				max := int32(2_000_000)
				r.TrafficRouting.MaxTrafficWeight = &max
				return r
			},
			wantMsg: "exceeds the largest Gateway API backendRef weight"},
		{name: "an HTTPRoute another rollout manages",
			objects: []string{strings.Replace(simple, "metadata: {name: web, namespace: default}", "metadata: {name: web, namespace: default, annotations: {argo-rollouts.argoproj.io/managed-by-rollouts: shop}}", 1)},
			route:   func() tasks.Route { return canary(10, `{"httpRoute":"web"}`) },
			wantMsg: `it is managed by rollout "shop"`},
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
	broken := strings.NewReplacer("name: web,", "name: web-internal,", "web-canary", "web-preview").Replace(simple)
	c := seed(t, simple, broken)
	_, err := newRouter(t, c).Apply(context.Background(), web, 1, canary(50, `{"httpRoutes":[{"name":"web"},{"name":"web-internal"}]}`))
	kubefake.Rejected(t, c, err, "HTTPRoute default/web-internal")
}

func TestBlueGreenChangesNothing(t *testing.T) {
	c := seed(t, simple)
	w, err := newRouter(t, c).Apply(context.Background(), web, 1, traffictest.BlueGreen("s1", "c1"))
	if err != nil || w != 0 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Errorf("%d API calls, want none", n)
	}
}

func TestNewNeedsAClient(t *testing.T) {
	if _, err := gatewayapi.New(gatewayapi.Config{}); err == nil {
		t.Error("New without a client succeeded")
	}
}
