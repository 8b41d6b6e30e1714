package alb

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

var web = events.Ref{Namespace: "default", Name: "web"}

func useAnnotation(p, service string) networkingv1.HTTPIngressPath {
	pt := networkingv1.PathTypePrefix
	return networkingv1.HTTPIngressPath{Path: p, PathType: &pt, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: service, Port: networkingv1.ServiceBackendPort{Name: UseAnnotation},
	}}}
}

func numbered(p, service string, port int32) networkingv1.HTTPIngressPath {
	pt := networkingv1.PathTypePrefix
	return networkingv1.HTTPIngressPath{Path: p, PathType: &pt, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: service, Port: networkingv1.ServiceBackendPort{Number: port},
	}}}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

// albIngress is an Ingress in default whose "/" takes its action from the
// annotation of service.
func albIngress(name, service string) *networkingv1.Ingress {
	class := "alb"
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{"alb.ingress.kubernetes.io/scheme": "internet-facing"}},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules:            []networkingv1.IngressRule{rule("example.com", useAnnotation("/", service))},
		},
	}
}

// route is a canary route at weight through the Ingress "web", port 80.
func route(weight int32) tasks.Route {
	r := traffictest.Canary(weight)
	r.TrafficRouting = &spec.TrafficRouting{ALB: &spec.ALBTrafficRouting{Ingress: "web", ServicePort: 80}}
	return r
}

func exact(name, value string) spec.HeaderRoutingMatch {
	return spec.HeaderRoutingMatch{HeaderName: name, HeaderValue: &spec.StringMatch{Exact: value}}
}

func newRouter(t *testing.T, c *fake.Clientset) *Router {
	t.Helper()
	r, err := New(Config{Client: c, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func getIngress(t *testing.T, c *fake.Clientset, name string) *networkingv1.Ingress {
	t.Helper()
	ing, err := c.NetworkingV1().Ingresses("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get Ingress %s: %v", name, err)
	}
	return ing
}

func TestContract(t *testing.T) {
	var c *fake.Clientset
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) traffic.Router {
			c = kubefake.NewClientset()
			return newRouter(t, c)
		},
		Prepare: func(t *testing.T, ref events.Ref, r *tasks.Route) {
			ing := albIngress(ref.Name, r.StableService)
			ing.Namespace = ref.Namespace
			_, err := c.NetworkingV1().Ingresses(ref.Namespace).Create(context.Background(), ing, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Errorf("create Ingress: %v", err)
			}
			r.TrafficRouting = &spec.TrafficRouting{ALB: &spec.ALBTrafficRouting{Ingress: ref.Name, ServicePort: 80}}
		},
	})
}

func TestWeights(t *testing.T) {
	tests := []struct {
		name    string
		ingress *networkingv1.Ingress
		route   func() tasks.Route
		want    map[string]string
	}{
		{
			name:    "stable service action",
			ingress: albIngress("web", "web-stable"),
			route:   func() tasks.Route { return route(30) },
			want: map[string]string{
				"alb.ingress.kubernetes.io/scheme":             "internet-facing",
				"alb.ingress.kubernetes.io/actions.web-stable": `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":30},{"ServiceName":"web-stable","ServicePort":"80","Weight":70}]}}`,
				ManagedAnnotation:                              `{"web":["alb.ingress.kubernetes.io/actions.web-stable"]}`,
				guard.SeqAnnotation:                            "1",
			},
		},
		{
			name:    "weight 0",
			ingress: albIngress("web", "web-stable"),
			route:   func() tasks.Route { return route(0) },
			want: map[string]string{
				"alb.ingress.kubernetes.io/scheme":             "internet-facing",
				"alb.ingress.kubernetes.io/actions.web-stable": `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":0},{"ServiceName":"web-stable","ServicePort":"80","Weight":100}]}}`,
				ManagedAnnotation:                              `{"web":["alb.ingress.kubernetes.io/actions.web-stable"]}`,
				guard.SeqAnnotation:                            "1",
			},
		},
		{
			name: "root service, prefix, stickiness, another rollout's empty entry kept",
			ingress: func() *networkingv1.Ingress {
				ing := albIngress("web", "web-root")
				ing.Annotations = map[string]string{ManagedAnnotation: `{"gone":[]}`}
				return ing
			}(),
			route: func() tasks.Route {
				r := route(100)
				r.TrafficRouting.ALB.RootService = "web-root"
				r.TrafficRouting.ALB.ServicePort = 8443
				r.TrafficRouting.ALB.AnnotationPrefix = "custom.alb.io"
				r.TrafficRouting.ALB.StickinessConfig = &spec.StickinessConfig{Enabled: true, DurationSeconds: 3600}
				return r
			},
			want: map[string]string{
				"custom.alb.io/actions.web-root": `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"8443","Weight":100},{"ServiceName":"web-stable","ServicePort":"8443","Weight":0}],"TargetGroupStickinessConfig":{"Enabled":true,"DurationSeconds":3600}}}`,
				ManagedAnnotation:                `{"gone":[],"web":["custom.alb.io/actions.web-root"]}`,
				guard.SeqAnnotation:              "1",
			},
		},
		{
			name:    "experiment templates get a target group each, out of the stable's share",
			ingress: albIngress("web", "web-stable"),
			route: func() tasks.Route {
				r := route(20)
				r.Experiments = []tasks.ExperimentRoute{
					{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "baseline", Service: "web-baseline"}, PodHash: "s1", Weight: 10},
					{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "canary", Service: "web-exp-canary"}, PodHash: "c1", Weight: 5},
				}
				return r
			},
			want: map[string]string{
				"alb.ingress.kubernetes.io/scheme":             "internet-facing",
				"alb.ingress.kubernetes.io/actions.web-stable": `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":20},{"ServiceName":"web-baseline","ServicePort":"80","Weight":10},{"ServiceName":"web-exp-canary","ServicePort":"80","Weight":5},{"ServiceName":"web-stable","ServicePort":"80","Weight":65}]}}`,
				ManagedAnnotation:                              `{"web":["alb.ingress.kubernetes.io/actions.web-stable"]}`,
				guard.SeqAnnotation:                            "1",
			},
		},
		{
			name:    "stickiness disabled",
			ingress: albIngress("web", "web-stable"),
			route: func() tasks.Route {
				r := route(10)
				r.TrafficRouting.ALB.StickinessConfig = &spec.StickinessConfig{Enabled: false, DurationSeconds: 3600}
				return r
			},
			want: map[string]string{
				"alb.ingress.kubernetes.io/scheme":             "internet-facing",
				"alb.ingress.kubernetes.io/actions.web-stable": `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":10},{"ServiceName":"web-stable","ServicePort":"80","Weight":90}]}}`,
				ManagedAnnotation:                              `{"web":["alb.ingress.kubernetes.io/actions.web-stable"]}`,
				guard.SeqAnnotation:                            "1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kubefake.NewClientset(tt.ingress)
			rt := tt.route()
			w, err := newRouter(t, c).Apply(context.Background(), web, 1, rt)
			if err != nil {
				t.Fatal(err)
			}
			if w != rt.CanaryWeight {
				t.Errorf("weight %d, want %d", w, rt.CanaryWeight)
			}
			got := getIngress(t, c, "web")
			if diff := kubefake.Diff(tt.want, got.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if diff := kubefake.Diff(tt.ingress.Spec, got.Spec); diff != "" {
				t.Errorf("a weight alone changed the spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIngresses(t *testing.T) {
	c := kubefake.NewClientset(albIngress("public", "web-stable"), albIngress("internal", "web-stable"))
	rt := route(40)
	rt.TrafficRouting.ALB = &spec.ALBTrafficRouting{Ingresses: []string{"public", "internal"}, ServicePort: 80}
	if w, err := newRouter(t, c).Apply(context.Background(), web, 1, rt); err != nil || w != 40 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	for _, name := range []string{"public", "internal"} {
		if got := getIngress(t, c, name).Annotations["alb.ingress.kubernetes.io/actions.web-stable"]; !strings.Contains(got, `"ServiceName":"web-canary","ServicePort":"80","Weight":40`) {
			t.Errorf("%s: action %s", name, got)
		}
	}
}

// headerRouting is a route through "web" with managed routes alpha and
// beta (in that order) and the given header routes in effect.
func headerRouting(weight int32, headers ...spec.SetHeaderRoute) tasks.Route {
	r := route(weight)
	r.TrafficRouting.ManagedRoutes = []spec.ManagedRoute{{Name: "alpha"}, {Name: "beta"}}
	r.HeaderRoutes = headers
	return r
}

func TestHeaderRoutes(t *testing.T) {
	ctx := context.Background()
	const (
		alphaCondition = `[{"field":"http-header","httpHeaderConfig":{"httpHeaderName":"X-Alpha","values":["1"]}}]`
		betaCondition  = `[{"field":"http-header","httpHeaderConfig":{"httpHeaderName":"X-Beta","values":["yes"]}},{"field":"http-header","httpHeaderConfig":{"httpHeaderName":"User-Agent","values":["tester"]}}]`
		canaryAction   = `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":100}]}}`
		weightAction   = `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":20},{"ServiceName":"web-stable","ServicePort":"80","Weight":80}]}}`
	)
	alpha := spec.SetHeaderRoute{Name: "alpha", Match: []spec.HeaderRoutingMatch{exact("X-Alpha", "1")}}
	beta := spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{exact("X-Beta", "yes"), exact("User-Agent", "tester")}}
	routePath := func(name string) networkingv1.HTTPIngressPath {
		pt := networkingv1.PathTypeImplementationSpecific
		p := useAnnotation("/*", name)
		p.PathType = &pt
		return p
	}
	// The user's Ingress: two hosts to the rollout, one to another app.
	ing := albIngress("web", "web-stable")
	ing.Spec.Rules = []networkingv1.IngressRule{
		rule("example.com", numbered("/healthz", "health", 80), useAnnotation("/", "web-stable")),
		rule("other.example.com", numbered("/", "other", 80)),
		rule("www.example.com", useAnnotation("/", "web-stable")),
	}
	c := kubefake.NewClientset(ing)
	r := newRouter(t, c)

	steps := []struct {
		name      string
		route     tasks.Route
		wantRules []networkingv1.IngressRule
		wantAnn   map[string]string
	}{
		{
			name:  "beta added",
			route: headerRouting(20, beta),
			wantRules: []networkingv1.IngressRule{
				rule("example.com", routePath("beta"), numbered("/healthz", "health", 80), useAnnotation("/", "web-stable")),
				rule("other.example.com", numbered("/", "other", 80)),
				rule("www.example.com", routePath("beta"), useAnnotation("/", "web-stable")),
			},
			wantAnn: map[string]string{
				"alb.ingress.kubernetes.io/actions.beta":    canaryAction,
				"alb.ingress.kubernetes.io/conditions.beta": betaCondition,
				ManagedAnnotation:                           `{"web":["alb.ingress.kubernetes.io/actions.web-stable","alb.ingress.kubernetes.io/actions.beta","alb.ingress.kubernetes.io/conditions.beta"]}`,
			},
		},
		{
			// alpha goes before beta, as managedRoutes orders them, whatever
			// order the steps set them in.
			name:  "alpha added after beta",
			route: headerRouting(20, beta, alpha),
			wantRules: []networkingv1.IngressRule{
				rule("example.com", routePath("alpha"), routePath("beta"), numbered("/healthz", "health", 80), useAnnotation("/", "web-stable")),
				rule("other.example.com", numbered("/", "other", 80)),
				rule("www.example.com", routePath("alpha"), routePath("beta"), useAnnotation("/", "web-stable")),
			},
			wantAnn: map[string]string{
				"alb.ingress.kubernetes.io/actions.alpha":    canaryAction,
				"alb.ingress.kubernetes.io/conditions.alpha": alphaCondition,
				"alb.ingress.kubernetes.io/actions.beta":     canaryAction,
				"alb.ingress.kubernetes.io/conditions.beta":  betaCondition,
				ManagedAnnotation:                            `{"web":["alb.ingress.kubernetes.io/actions.web-stable","alb.ingress.kubernetes.io/actions.alpha","alb.ingress.kubernetes.io/conditions.alpha","alb.ingress.kubernetes.io/actions.beta","alb.ingress.kubernetes.io/conditions.beta"]}`,
			},
		},
		{
			name:  "beta removed",
			route: headerRouting(20, alpha),
			wantRules: []networkingv1.IngressRule{
				rule("example.com", routePath("alpha"), numbered("/healthz", "health", 80), useAnnotation("/", "web-stable")),
				rule("other.example.com", numbered("/", "other", 80)),
				rule("www.example.com", routePath("alpha"), useAnnotation("/", "web-stable")),
			},
			wantAnn: map[string]string{
				"alb.ingress.kubernetes.io/actions.alpha":    canaryAction,
				"alb.ingress.kubernetes.io/conditions.alpha": alphaCondition,
				ManagedAnnotation:                            `{"web":["alb.ingress.kubernetes.io/actions.web-stable","alb.ingress.kubernetes.io/actions.alpha","alb.ingress.kubernetes.io/conditions.alpha"]}`,
			},
		},
		{
			name:      "all removed",
			route:     headerRouting(20),
			wantRules: ing.Spec.Rules,
			wantAnn: map[string]string{
				ManagedAnnotation: `{"web":["alb.ingress.kubernetes.io/actions.web-stable"]}`,
			},
		},
	}
	for i, st := range steps {
		seq := int64(i + 1)
		if w, err := r.Apply(ctx, web, seq, st.route); err != nil || w != 20 {
			t.Fatalf("%s: Apply: %d, %v", st.name, w, err)
		}
		got := getIngress(t, c, "web")
		if diff := kubefake.Diff(st.wantRules, got.Spec.Rules); diff != "" {
			t.Errorf("%s: rules (-want +got):\n%s", st.name, diff)
		}
		want := map[string]string{
			"alb.ingress.kubernetes.io/scheme":             "internet-facing",
			"alb.ingress.kubernetes.io/actions.web-stable": weightAction,
			guard.SeqAnnotation:                            strconv.FormatInt(seq, 10),
		}
		for k, v := range st.wantAnn {
			want[k] = v
		}
		if diff := kubefake.Diff(want, got.Annotations); diff != "" {
			t.Errorf("%s: annotations (-want +got):\n%s", st.name, diff)
		}
	}
}

// managedRoutes reordered between two routes reorders the paths.
func TestHeaderRoutesReordered(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(albIngress("web", "web-stable"))
	r := newRouter(t, c)
	alpha := spec.SetHeaderRoute{Name: "alpha", Match: []spec.HeaderRoutingMatch{exact("X-Alpha", "1")}}
	beta := spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{exact("X-Beta", "1")}}
	if _, err := r.Apply(ctx, web, 1, headerRouting(0, alpha, beta)); err != nil {
		t.Fatal(err)
	}
	rt := headerRouting(0, alpha, beta)
	rt.TrafficRouting.ManagedRoutes = []spec.ManagedRoute{{Name: "beta"}, {Name: "alpha"}}
	if _, err := r.Apply(ctx, web, 2, rt); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range getIngress(t, c, "web").Spec.Rules[0].HTTP.Paths {
		got = append(got, p.Backend.Service.Name)
	}
	if want := []string{"beta", "alpha", "web-stable"}; !equality.Semantic.DeepEqual(want, got) {
		t.Errorf("path backends %v, want %v", got, want)
	}
}

// An Ingress Argo Rollouts managed keeps working, and a header route Argo
// left for a name no longer in managedRoutes is cleaned up.
func TestMigratesFromArgo(t *testing.T) {
	pt := networkingv1.PathTypeImplementationSpecific
	old := useAnnotation("/*", "old")
	old.PathType = &pt
	ing := albIngress("web", "web-stable")
	ing.Spec.Rules[0].HTTP.Paths = append([]networkingv1.HTTPIngressPath{old}, ing.Spec.Rules[0].HTTP.Paths...)
	ing.Annotations = map[string]string{
		"alb.ingress.kubernetes.io/actions.web-stable": `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":10},{"ServiceName":"web-stable","ServicePort":"80","Weight":90}]}}`,
		"alb.ingress.kubernetes.io/actions.old":        `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":100}]}}`,
		"alb.ingress.kubernetes.io/conditions.old":     `[{"field":"http-header","httpHeaderConfig":{"httpHeaderName":"X-Old","values":["1"]}}]`,
		ManagedAnnotation:                              `{"web":["alb.ingress.kubernetes.io/actions.web-stable","alb.ingress.kubernetes.io/actions.old","alb.ingress.kubernetes.io/conditions.old"]}`,
	}
	c := kubefake.NewClientset(ing)
	if w, err := newRouter(t, c).Apply(context.Background(), web, 1, route(0)); err != nil || w != 0 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	got := getIngress(t, c, "web")
	want := map[string]string{
		"alb.ingress.kubernetes.io/actions.web-stable": `{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"web-canary","ServicePort":"80","Weight":0},{"ServiceName":"web-stable","ServicePort":"80","Weight":100}]}}`,
		ManagedAnnotation:   `{"web":["alb.ingress.kubernetes.io/actions.web-stable"]}`,
		guard.SeqAnnotation: "1",
	}
	if diff := kubefake.Diff(want, got.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if diff := kubefake.Diff(albIngress("web", "web-stable").Spec, got.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
}

// With Istio as well, mirror routes are Istio's: the Ingress gets the
// weights, as with Argo Rollouts.
func TestMirrorRoutesCarriedByIstio(t *testing.T) {
	c := kubefake.NewClientset(albIngress("web", "web-stable"))
	rt := route(15)
	rt.TrafficRouting.Istio = &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web"}}
	rt.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "GET"}}}}}
	if w, err := newRouter(t, c).Apply(context.Background(), web, 1, rt); err != nil || w != 15 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	if diff := kubefake.Diff(albIngress("web", "web-stable").Spec, getIngress(t, c, "web").Spec); diff != "" {
		t.Errorf("a mirror route changed the Ingress's paths (-want +got):\n%s", diff)
	}
}

func TestIdempotent(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(albIngress("web", "web-stable"))
	r := newRouter(t, c)
	rt := headerRouting(50, spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{exact("X-Beta", "1")}})
	if _, err := r.Apply(ctx, web, 3, rt); err != nil {
		t.Fatal(err)
	}
	before := kubefake.Writes(c)
	if before != 1 {
		t.Errorf("first Apply wrote %d times, want 1", before)
	}
	if w, err := r.Apply(ctx, web, 3, rt); err != nil || w != 50 {
		t.Fatalf("second Apply: %d, %v", w, err)
	}
	if n := kubefake.Writes(c) - before; n != 0 {
		t.Errorf("the same route again wrote %d times, want 0", n)
	}
}

func TestStale(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(albIngress("web", "web-stable"))
	r := newRouter(t, c)
	if _, err := r.Apply(ctx, web, 5, route(0)); err != nil {
		t.Fatal(err)
	}
	before := getIngress(t, c, "web").Annotations
	if _, err := r.Apply(ctx, web, 4, route(50)); !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("seq 4 after 5: %v, want ErrStale", err)
	}
	if diff := kubefake.Diff(before, getIngress(t, c, "web").Annotations); diff != "" {
		t.Errorf("a stale route changed the Ingress (-before +after):\n%s", diff)
	}
}

func TestBlueGreen(t *testing.T) {
	c := kubefake.NewClientset(albIngress("web", "web-stable"))
	w, err := newRouter(t, c).Apply(context.Background(), web, 1, traffictest.BlueGreen("a", "b"))
	if err != nil || w != 0 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	if len(c.Actions()) != 0 {
		t.Errorf("blue/green touched the cluster: %v", c.Actions())
	}
}

func TestRejects(t *testing.T) {
	withHeader := func(h spec.SetHeaderRoute) func() tasks.Route {
		return func() tasks.Route { return headerRouting(10, h) }
	}
	tests := []struct {
		name    string
		ingress *networkingv1.Ingress
		route   func() tasks.Route
		want    []string
	}{
		{
			name:  "no alb configuration",
			route: func() tasks.Route { return traffictest.Canary(10) },
			want:  []string{"no spec.strategy.canary.trafficRouting.alb"},
		},
		{
			name: "no service port",
			route: func() tasks.Route {
				r := route(10)
				r.TrafficRouting.ALB.ServicePort = 0
				return r
			},
			want: []string{"servicePort 0 is not a port"},
		},
		{
			name: "experiment weights above the maximum",
			route: func() tasks.Route {
				r := route(90)
				r.Experiments = []tasks.ExperimentRoute{{Pods: tasks.ExperimentPods{Name: "web-c1-2-1", Template: "a", Service: "web-a"}, Weight: 20}}
				return r
			},
			want: []string{"the canary weight 90 and the experiment templates' weights add up to 110, above 100"},
		},
		{
			name:  "weight above the maximum",
			route: func() tasks.Route { return route(101) },
			want:  []string{"canary weight 101 is outside 0..100"},
		},
		{
			name: "mirror route",
			route: func() tasks.Route {
				r := route(10)
				r.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "GET"}}}}}
				return r
			},
			want: []string{`cannot mirror traffic (mirror route "shadow")`, "remove the setMirrorRoute steps"},
		},
		{
			name: "stickiness too long",
			route: func() tasks.Route {
				r := route(10)
				r.TrafficRouting.ALB.StickinessConfig = &spec.StickinessConfig{Enabled: true, DurationSeconds: 604801}
				return r
			},
			want: []string{"durationSeconds 604801 is outside the 1..604800"},
		},
		{
			name:  "ingress missing",
			route: func() tasks.Route { return route(10) },
			want:  []string{"Ingress default/web does not exist"},
		},
		{
			name: "no use-annotation path to the action service",
			ingress: func() *networkingv1.Ingress {
				ing := albIngress("web", "web-stable")
				ing.Spec.Rules = []networkingv1.IngressRule{rule("example.com", numbered("/", "web-stable", 80))}
				return ing
			}(),
			route: func() tasks.Route { return route(10) },
			want:  []string{"Ingress default/web", `no path has backend Service "web-stable" with port name "use-annotation"`, `(its paths to "web-stable" use port 80)`, "alb.ingress.kubernetes.io/actions.web-stable", "set a path's backend to service name web-stable, port name use-annotation"},
		},
		{
			name:    "root service not in the ingress",
			ingress: albIngress("web", "web-stable"),
			route: func() tasks.Route {
				r := route(10)
				r.TrafficRouting.ALB.RootService = "web-root"
				return r
			},
			want: []string{`no path has backend Service "web-root"`},
		},
		{
			name: "managed by another rollout",
			ingress: func() *networkingv1.Ingress {
				ing := albIngress("web", "web-stable")
				ing.Annotations[ManagedAnnotation] = `{"shop":["alb.ingress.kubernetes.io/actions.shop-stable"],"web":[]}`
				return ing
			}(),
			route: func() tasks.Route { return route(10) },
			want:  []string{`Ingress default/web is also managed by rollout "shop"`, "give each rollout its own Ingress"},
		},
		{
			name: "unreadable managed annotation",
			ingress: func() *networkingv1.Ingress {
				ing := albIngress("web", "web-stable")
				ing.Annotations[ManagedAnnotation] = "web:alb.ingress.kubernetes.io/actions.web-stable"
				return ing
			}(),
			route: func() tasks.Route { return route(10) },
			want:  []string{"annotation " + ManagedAnnotation, "fix or remove it"},
		},
		{
			name:    "prefix header match",
			ingress: albIngress("web", "web-stable"),
			route:   withHeader(spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Prefix: "1"}}}}),
			want:    []string{`header route "beta"`, "set headerValue.exact", `header "X-Beta"`},
		},
		{
			name:    "regex header match",
			ingress: albIngress("web", "web-stable"),
			route:   withHeader(spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Regex: "1.*"}}}}),
			want:    []string{"set headerValue.exact"},
		},
		{
			name:    "header match without a name",
			ingress: albIngress("web", "web-stable"),
			route:   withHeader(spec.SetHeaderRoute{Name: "beta", Match: []spec.HeaderRoutingMatch{exact("", "1")}}),
			want:    []string{"no headerName"},
		},
		{
			name:    "header route not managed",
			ingress: albIngress("web", "web-stable"),
			route:   withHeader(spec.SetHeaderRoute{Name: "gamma", Match: []spec.HeaderRoutingMatch{exact("X", "1")}}),
			want:    []string{`header route "gamma" is not listed in trafficRouting.managedRoutes`},
		},
		{
			name:    "header route name not a service name",
			ingress: albIngress("web", "web-stable"),
			route: func() tasks.Route {
				r := headerRouting(10, spec.SetHeaderRoute{Name: "Beta_Users", Match: []spec.HeaderRoutingMatch{exact("X", "1")}})
				r.TrafficRouting.ManagedRoutes = append(r.TrafficRouting.ManagedRoutes, spec.ManagedRoute{Name: "Beta_Users"})
				return r
			},
			want: []string{`header route name "Beta_Users"`, "DNS-1035 label"},
		},
		{
			name:    "header route named like the action service",
			ingress: albIngress("web", "web-stable"),
			route: func() tasks.Route {
				r := headerRouting(10, spec.SetHeaderRoute{Name: "web-stable", Match: []spec.HeaderRoutingMatch{exact("X", "1")}})
				r.TrafficRouting.ManagedRoutes = append(r.TrafficRouting.ManagedRoutes, spec.ManagedRoute{Name: "web-stable"})
				return r
			},
			want: []string{`header route "web-stable" has the name of the action Service`},
		},
		{
			name:    "annotation key too long",
			ingress: albIngress("web", "web-stable"),
			route: func() tasks.Route {
				name := "b" + strings.Repeat("e", 52) // conditions.<name> is 64 characters
				r := headerRouting(10, spec.SetHeaderRoute{Name: name, Match: []spec.HeaderRoutingMatch{exact("X", "1")}})
				r.TrafficRouting.ManagedRoutes = append(r.TrafficRouting.ManagedRoutes, spec.ManagedRoute{Name: name})
				return r
			},
			want: []string{"annotation key", "conditions.bee", "shorten the name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			if tt.ingress != nil {
				objs = append(objs, tt.ingress)
			}
			c := kubefake.NewClientset(objs...)
			_, err := newRouter(t, c).Apply(context.Background(), web, 1, tt.route())
			kubefake.Rejected(t, c, err, tt.want...)
		})
	}
}

func TestInvalidIsRejected(t *testing.T) {
	c := kubefake.NewClientset(albIngress("web", "web-stable"))
	c.PrependReactor("update", "ingresses", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInvalid(networkingv1.SchemeGroupVersion.WithKind("Ingress").GroupKind(), "web", nil)
	})
	_, err := newRouter(t, c).Apply(context.Background(), web, 1, route(10))
	if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), "the API server refused Ingress default/web") {
		t.Fatalf("error %v, want a rejection naming the Ingress", err)
	}
}

func TestInfrastructureErrorIsNotRejection(t *testing.T) {
	c := kubefake.NewClientset(albIngress("web", "web-stable"))
	c.PrependReactor("get", "ingresses", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	_, err := newRouter(t, c).Apply(context.Background(), web, 1, route(10))
	if err == nil || errors.Is(err, traffic.ErrRejected) || errors.Is(err, tasks.ErrStale) {
		t.Fatalf("error %v, want an infrastructure error", err)
	}
}

func TestNewNeedsClient(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a client succeeded")
	}
}
