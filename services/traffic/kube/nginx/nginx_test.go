package nginx

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	k8stesting "k8s.io/client-go/testing"
	k8scache "k8s.io/client-go/tools/cache"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
	"github.com/sluicehq/sluice/services/traffic/kube/kubefake"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

var web = events.Ref{Namespace: "default", Name: "web"}

func pathType(t networkingv1.PathType) *networkingv1.PathType { return &t }

func path(p, service string, port int32) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{
		Path:     p,
		PathType: pathType(networkingv1.PathTypePrefix),
		Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: service, Port: networkingv1.ServiceBackendPort{Number: port},
		}},
	}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

// stableIngress is an Ingress in default routing example.com to web-stable.
func stableIngress(name string) *networkingv1.Ingress {
	class := "nginx"
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules:            []networkingv1.IngressRule{rule("example.com", path("/", "web-stable", 80))},
		},
	}
}

// route is a canary route at weight through the stable Ingress "web".
func route(weight int32) tasks.Route {
	r := traffictest.Canary(weight)
	r.TrafficRouting = &spec.TrafficRouting{Nginx: &spec.NginxTrafficRouting{StableIngress: "web"}}
	return r
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

// written is what a user sees of ing: its name, annotations, owners and
// spec, without what the API server keeps (resourceVersion, managedFields).
func written(ing *networkingv1.Ingress) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: ing.Name, Namespace: ing.Namespace, Labels: ing.Labels, Annotations: ing.Annotations, OwnerReferences: ing.OwnerReferences},
		Spec:       ing.Spec,
	}
}

func TestContract(t *testing.T) {
	var c *fake.Clientset
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) traffic.Router {
			c = kubefake.NewClientset()
			return newRouter(t, c)
		},
		Prepare: func(t *testing.T, ref events.Ref, r *tasks.Route) {
			ing := stableIngress(ref.Name)
			ing.Namespace = ref.Namespace
			_, err := c.NetworkingV1().Ingresses(ref.Namespace).Create(context.Background(), ing, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Errorf("create stable Ingress: %v", err)
			}
			r.TrafficRouting = &spec.TrafficRouting{Nginx: &spec.NginxTrafficRouting{StableIngress: ref.Name}}
		},
	})
}

func TestCanaryIngress(t *testing.T) {
	total := int32(1000)
	tests := []struct {
		name   string
		stable *networkingv1.Ingress
		route  func() tasks.Route
		want   *networkingv1.Ingress
	}{
		{
			name:   "default prefix",
			stable: stableIngress("web"),
			route:  func() tasks.Route { return route(30) },
			want: &networkingv1.Ingress{
				ObjectMeta: metav1.ObjectMeta{Name: "web-web-canary", Namespace: "default", Annotations: map[string]string{
					"nginx.ingress.kubernetes.io/canary":        "true",
					"nginx.ingress.kubernetes.io/canary-weight": "30",
					spec.AnnotationManagedBy:                    "web",
					guard.SeqAnnotation:                         "1",
				}},
				Spec: networkingv1.IngressSpec{
					IngressClassName: stableIngress("web").Spec.IngressClassName,
					Rules:            []networkingv1.IngressRule{rule("example.com", path("/", "web-canary", 80))},
				},
			},
		},
		{
			name: "class annotation, TLS, several hosts, paths to other services left out",
			stable: func() *networkingv1.Ingress {
				ing := stableIngress("web")
				ing.Spec.IngressClassName = nil
				ing.Annotations = map[string]string{
					"kubernetes.io/ingress.class":                "nginx-public",
					"nginx.ingress.kubernetes.io/rewrite-target": "/",
				}
				ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"example.com", "www.example.com"}, SecretName: "tls"}}
				ing.Spec.Rules = []networkingv1.IngressRule{
					rule("example.com", path("/api", "web-stable", 8080), path("/docs", "docs", 80), path("/", "web-stable", 80)),
					rule("other.example.com", path("/", "other", 80)),
					{Host: "empty.example.com"},
					rule("www.example.com", path("/", "web-stable", 80)),
				}
				return ing
			}(),
			route: func() tasks.Route { return route(0) },
			want: &networkingv1.Ingress{
				ObjectMeta: metav1.ObjectMeta{Name: "web-web-canary", Namespace: "default", Annotations: map[string]string{
					"kubernetes.io/ingress.class":               "nginx-public",
					"nginx.ingress.kubernetes.io/canary":        "true",
					"nginx.ingress.kubernetes.io/canary-weight": "0",
					spec.AnnotationManagedBy:                    "web",
					guard.SeqAnnotation:                         "1",
				}},
				Spec: networkingv1.IngressSpec{
					TLS: []networkingv1.IngressTLS{{Hosts: []string{"example.com", "www.example.com"}, SecretName: "tls"}},
					Rules: []networkingv1.IngressRule{
						rule("example.com", path("/api", "web-canary", 8080), path("/", "web-canary", 80)),
						rule("www.example.com", path("/", "web-canary", 80)),
					},
				},
			},
		},
		{
			name:   "prefix, additional and canary annotations, maxTrafficWeight",
			stable: stableIngress("web"),
			route: func() tasks.Route {
				r := route(250)
				r.TrafficRouting.MaxTrafficWeight = &total
				r.TrafficRouting.Nginx.AnnotationPrefix = "custom.nginx.io"
				r.TrafficRouting.Nginx.AdditionalIngressAnnotations = map[string]string{
					"canary-by-header":                    "X-Canary",
					"custom.nginx.io/canary-by-cookie":    "canary",
					"canary-weight":                       "99", // the router's own value wins
					"nginx.ingress.kubernetes.io/ignored": "x",  // another prefix: prefixed again, as Argo does
				}
				r.TrafficRouting.Nginx.CanaryIngressAnnotations = map[string]string{
					"example.com/team":  "web",
					"canary-by-header2": "as-is",
				}
				return r
			},
			want: &networkingv1.Ingress{
				ObjectMeta: metav1.ObjectMeta{Name: "web-web-canary", Namespace: "default", Annotations: map[string]string{
					"custom.nginx.io/canary":                              "true",
					"custom.nginx.io/canary-weight":                       "250",
					"custom.nginx.io/canary-weight-total":                 "1000",
					"custom.nginx.io/canary-by-header":                    "X-Canary",
					"custom.nginx.io/canary-by-cookie":                    "canary",
					"custom.nginx.io/nginx.ingress.kubernetes.io/ignored": "x",
					"example.com/team":                                    "web",
					"canary-by-header2":                                   "as-is",
					spec.AnnotationManagedBy:                              "web",
					guard.SeqAnnotation:                                   "1",
				}},
				Spec: networkingv1.IngressSpec{
					IngressClassName: stableIngress("web").Spec.IngressClassName,
					Rules:            []networkingv1.IngressRule{rule("example.com", path("/", "web-canary", 80))},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kubefake.NewClientset(tt.stable)
			rt := tt.route()
			w, err := newRouter(t, c).Apply(context.Background(), web, 1, rt)
			if err != nil {
				t.Fatal(err)
			}
			if w != rt.CanaryWeight {
				t.Errorf("weight %d, want %d", w, rt.CanaryWeight)
			}
			if diff := kubefake.Diff(tt.want, written(getIngress(t, c, "web-web-canary"))); diff != "" {
				t.Errorf("canary Ingress (-want +got):\n%s", diff)
			}
			if diff := kubefake.Diff(written(tt.stable), written(getIngress(t, c, "web"))); diff != "" {
				t.Errorf("the stable Ingress changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStableIngresses(t *testing.T) {
	c := kubefake.NewClientset(stableIngress("public"), stableIngress("internal"))
	rt := route(40)
	rt.TrafficRouting.Nginx = &spec.NginxTrafficRouting{StableIngresses: []string{"public", "internal"}}
	w, err := newRouter(t, c).Apply(context.Background(), web, 1, rt)
	if err != nil || w != 40 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	for _, name := range []string{"web-public-canary", "web-internal-canary"} {
		if got := getIngress(t, c, name).Annotations["nginx.ingress.kubernetes.io/canary-weight"]; got != "40" {
			t.Errorf("%s: canary-weight %q, want 40", name, got)
		}
	}
}

func TestFollowsChanges(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(stableIngress("web"))
	r := newRouter(t, c)
	rt := route(10)
	rt.TrafficRouting.Nginx.AdditionalIngressAnnotations = map[string]string{"canary-by-header": "X-Canary"}
	if _, err := r.Apply(ctx, web, 1, rt); err != nil {
		t.Fatal(err)
	}

	// The user edits the stable Ingress and drops the extra annotation.
	stable := getIngress(t, c, "web")
	stable.Spec.Rules = []networkingv1.IngressRule{rule("new.example.com", path("/v2", "web-stable", 81))}
	if _, err := c.NetworkingV1().Ingresses("default").Update(ctx, stable, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rt = route(20)
	if w, err := r.Apply(ctx, web, 2, rt); err != nil || w != 20 {
		t.Fatalf("Apply seq 2: %d, %v", w, err)
	}
	got := getIngress(t, c, "web-web-canary")
	if diff := kubefake.Diff([]networkingv1.IngressRule{rule("new.example.com", path("/v2", "web-canary", 81))}, got.Spec.Rules); diff != "" {
		t.Errorf("canary rules (-want +got):\n%s", diff)
	}
	want := map[string]string{
		"nginx.ingress.kubernetes.io/canary":        "true",
		"nginx.ingress.kubernetes.io/canary-weight": "20",
		spec.AnnotationManagedBy:                    "web",
		guard.SeqAnnotation:                         "2",
	}
	if diff := kubefake.Diff(want, got.Annotations); diff != "" {
		t.Errorf("canary annotations (-want +got):\n%s", diff)
	}

	// Someone deletes the canary Ingress: the next route brings it back.
	if err := c.NetworkingV1().Ingresses("default").Delete(ctx, "web-web-canary", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if w, err := r.Apply(ctx, web, 3, route(30)); err != nil || w != 30 {
		t.Fatalf("Apply seq 3: %d, %v", w, err)
	}
	if got := getIngress(t, c, "web-web-canary").Annotations["nginx.ingress.kubernetes.io/canary-weight"]; got != "30" {
		t.Errorf("recreated canary-weight %q, want 30", got)
	}
}

// With another router that carries them, header and mirror routes are that
// router's: the canary Ingress gets the weight, as with Argo Rollouts.
func TestRoutesCarriedByAnotherRouter(t *testing.T) {
	tests := []struct {
		name   string
		other  func(*spec.TrafficRouting)
		header bool
		mirror bool
	}{
		{name: "istio, header and mirror routes", other: func(tr *spec.TrafficRouting) {
			tr.Istio = &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web"}}
		}, header: true, mirror: true},
		{name: "alb, header route", other: func(tr *spec.TrafficRouting) {
			tr.ALB = &spec.ALBTrafficRouting{Ingress: "web-alb", ServicePort: 80}
		}, header: true},
		{name: "gateway API, header route", other: func(tr *spec.TrafficRouting) {
			tr.Plugins = spec.RouterPlugins{spec.GatewayAPIPlugin: []byte(`{"httpRoute":"web"}`)}
		}, header: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kubefake.NewClientset(stableIngress("web"))
			rt := route(15)
			tt.other(rt.TrafficRouting)
			if tt.header {
				rt.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}}
			}
			if tt.mirror {
				rt.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "GET"}}}}}
			}
			if w, err := newRouter(t, c).Apply(context.Background(), web, 1, rt); err != nil || w != 15 {
				t.Fatalf("Apply: %d, %v", w, err)
			}
		})
	}
	// Mirror routes with ALB alone are nobody's to carry.
	rt := route(15)
	rt.TrafficRouting.ALB = &spec.ALBTrafficRouting{Ingress: "web-alb", ServicePort: 80}
	rt.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "GET"}}}}}
	if _, err := newRouter(t, kubefake.NewClientset(stableIngress("web"))).Apply(context.Background(), web, 1, rt); !errors.Is(err, traffic.ErrRejected) {
		t.Errorf("mirror route with nginx and alb: %v, want ErrRejected", err)
	}
}

func TestIdempotent(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(stableIngress("web"))
	r := newRouter(t, c)
	if _, err := r.Apply(ctx, web, 7, route(50)); err != nil {
		t.Fatal(err)
	}
	before := kubefake.Writes(c)
	if before != 1 {
		t.Errorf("first Apply wrote %d times, want 1 (the create)", before)
	}
	if w, err := r.Apply(ctx, web, 7, route(50)); err != nil || w != 50 {
		t.Fatalf("second Apply: %d, %v", w, err)
	}
	if n := kubefake.Writes(c) - before; n != 0 {
		t.Errorf("the same route again wrote %d times, want 0", n)
	}
}

func TestStale(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(stableIngress("web"))
	r := newRouter(t, c)
	if _, err := r.Apply(ctx, web, 5, route(0)); err != nil {
		t.Fatal(err)
	}
	_, err := r.Apply(ctx, web, 4, route(50))
	if !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("seq 4 after 5: %v, want ErrStale", err)
	}
	if got := getIngress(t, c, "web-web-canary").Annotations["nginx.ingress.kubernetes.io/canary-weight"]; got != "0" {
		t.Errorf("a stale route changed the weight to %s", got)
	}
}

func TestBlueGreen(t *testing.T) {
	c := kubefake.NewClientset(stableIngress("web"))
	w, err := newRouter(t, c).Apply(context.Background(), web, 1, traffictest.BlueGreen("a", "b"))
	if err != nil || w != 0 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	if len(c.Actions()) != 0 {
		t.Errorf("blue/green touched the cluster: %v", c.Actions())
	}
}

func TestAdoptsArgoCanaryIngress(t *testing.T) {
	argo := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{
		Name: "web-web-canary", Namespace: "default",
		Annotations:     map[string]string{"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "5"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web", UID: "u1", Controller: new(true)}},
	}}
	c := kubefake.NewClientset(stableIngress("web"), argo)
	if w, err := newRouter(t, c).Apply(context.Background(), web, 1, route(25)); err != nil || w != 25 {
		t.Fatalf("Apply: %d, %v", w, err)
	}
	got := getIngress(t, c, "web-web-canary")
	if got.Annotations[spec.AnnotationManagedBy] != "web" || got.Annotations["nginx.ingress.kubernetes.io/canary-weight"] != "25" {
		t.Errorf("annotations after adoption: %v", got.Annotations)
	}
	if diff := kubefake.Diff(argo.OwnerReferences, got.OwnerReferences); diff != "" {
		t.Errorf("owner references changed (-want +got):\n%s", diff)
	}
}

func TestRejects(t *testing.T) {
	foreign := func(ann map[string]string, owners ...metav1.OwnerReference) *networkingv1.Ingress {
		return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web-web-canary", Namespace: "default", Annotations: ann, OwnerReferences: owners}}
	}
	tests := []struct {
		name  string
		objs  []runtime.Object
		route func() tasks.Route
		want  []string
	}{
		{
			name:  "no nginx configuration",
			objs:  []runtime.Object{stableIngress("web")},
			route: func() tasks.Route { return traffictest.Canary(10) },
			want:  []string{"no spec.strategy.canary.trafficRouting.nginx"},
		},
		{
			name: "no traffic routing",
			objs: []runtime.Object{stableIngress("web")},
			route: func() tasks.Route {
				r := route(10)
				r.TrafficRouting = nil
				return r
			},
			want: []string{"no spec.strategy.canary.trafficRouting.nginx"},
		},
		{
			name: "header route",
			objs: []runtime.Object{stableIngress("web")},
			route: func() tasks.Route {
				r := route(10)
				r.HeaderRoutes = []spec.SetHeaderRoute{{Name: "beta", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Beta", HeaderValue: &spec.StringMatch{Exact: "1"}}}}}
				return r
			},
			want: []string{`header route "beta"`, "remove the setHeaderRoute steps", "additionalIngressAnnotations canary-by-header"},
		},
		{
			name: "mirror route",
			objs: []runtime.Object{stableIngress("web")},
			route: func() tasks.Route {
				r := route(10)
				r.MirrorRoutes = []spec.SetMirrorRoute{{Name: "shadow", Match: []spec.RouteMatch{{Method: &spec.StringMatch{Exact: "GET"}}}}}
				return r
			},
			want: []string{`mirror route "shadow"`, "remove the setMirrorRoute steps"},
		},
		{
			name: "no services",
			objs: []runtime.Object{stableIngress("web")},
			route: func() tasks.Route {
				r := route(10)
				r.CanaryService = ""
				return r
			},
			want: []string{"stableService and canaryService"},
		},
		{
			name:  "weight above the maximum",
			objs:  []runtime.Object{stableIngress("web")},
			route: func() tasks.Route { return route(101) },
			want:  []string{"canary weight 101 is outside 0..100"},
		},
		{
			name:  "stable ingress missing",
			route: func() tasks.Route { return route(10) },
			want:  []string{"stable Ingress default/web", "does not exist", `with a path to Service "web-stable"`},
		},
		{
			name: "stable ingress without the stable service",
			objs: []runtime.Object{func() *networkingv1.Ingress {
				ing := stableIngress("web")
				ing.Spec.Rules = []networkingv1.IngressRule{rule("example.com", path("/", "web-old", 80))}
				return ing
			}()},
			route: func() tasks.Route { return route(10) },
			want:  []string{"stable Ingress default/web", `no path whose backend is Service "web-stable"`},
		},
		{
			name:  "canary ingress name taken by a user's Ingress",
			objs:  []runtime.Object{stableIngress("web"), foreign(nil)},
			route: func() tasks.Route { return route(10) },
			want:  []string{"canary Ingress default/web-web-canary exists", "no annotation " + spec.AnnotationManagedBy + ": web", "delete or rename it"},
		},
		{
			name:  "canary ingress managed by another rollout",
			objs:  []runtime.Object{stableIngress("web"), foreign(map[string]string{spec.AnnotationManagedBy: "shop"})},
			route: func() tasks.Route { return route(10) },
			want:  []string{`managed by rollout "shop"`},
		},
		{
			name: "canary ingress of another Argo rollout",
			objs: []runtime.Object{stableIngress("web"), foreign(nil, metav1.OwnerReference{
				APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "shop", Controller: new(true),
			})},
			route: func() tasks.Route { return route(10) },
			want:  []string{"exists and is not this rollout's canary Ingress"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kubefake.NewClientset(tt.objs...)
			_, err := newRouter(t, c).Apply(context.Background(), web, 1, tt.route())
			kubefake.Rejected(t, c, err, tt.want...)
		})
	}
}

// An Ingress the API server refuses (here: a webhook) is the user's to fix,
// not something to retry.
func TestInvalidIsRejected(t *testing.T) {
	c := kubefake.NewClientset(stableIngress("web"))
	c.PrependReactor("create", "ingresses", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInvalid(networkingv1.SchemeGroupVersion.WithKind("Ingress").GroupKind(), "web-web-canary", nil)
	})
	_, err := newRouter(t, c).Apply(context.Background(), web, 1, route(10))
	if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), "the API server refused canary Ingress default/web-web-canary") {
		t.Fatalf("error %v, want a rejection naming the canary Ingress", err)
	}
}

// In a namespace being deleted the canary Ingress cannot be created: the
// route ends rejected, saying so, instead of being retried for ever.
func TestNamespaceBeingDeletedIsRejected(t *testing.T) {
	c := kubefake.NewClientset(stableIngress("web"))
	c.PrependReactor("create", "ingresses", func(a k8stesting.Action) (bool, runtime.Object, error) {
		err := apierrors.NewForbidden(networkingv1.Resource("ingresses"), "web-web-canary", errors.New("unable to create new content in namespace default because it is being terminated"))
		err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}
		return true, nil, err
	})
	_, err := newRouter(t, c).Apply(context.Background(), web, 1, route(10))
	if !errors.Is(err, traffic.ErrRejected) || !strings.Contains(err.Error(), "canary Ingress default/web-web-canary cannot be created: its namespace is gone or being deleted") {
		t.Fatalf("error %v, want a rejection saying the namespace is going", err)
	}
}

func TestInfrastructureErrorIsNotRejection(t *testing.T) {
	c := kubefake.NewClientset(stableIngress("web"))
	c.PrependReactor("get", "ingresses", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	_, err := newRouter(t, c).Apply(context.Background(), web, 1, route(10))
	if err == nil || errors.Is(err, traffic.ErrRejected) || errors.Is(err, tasks.ErrStale) {
		t.Fatalf("error %v, want an infrastructure error", err)
	}
}

func TestCanaryIngressName(t *testing.T) {
	if got := CanaryIngressName("web", "public"); got != "web-public-canary" {
		t.Errorf("got %q", got)
	}
	long := strings.Repeat("a", 250)
	got := CanaryIngressName("web", long)
	if len(got) != 253 || !strings.HasPrefix(got, "web-aaa") || !strings.HasSuffix(got, "a-canary") {
		t.Errorf("long name %q (%d characters)", got, len(got))
	}
}

func TestNewNeedsClient(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a client succeeded")
	}
}

// The annotations the router writes are exactly the desired ones: nothing a
// previous route or a user added survives a route.
func TestAnnotationsAreReplaced(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(stableIngress("web"))
	r := newRouter(t, c)
	if _, err := r.Apply(ctx, web, 1, route(10)); err != nil {
		t.Fatal(err)
	}
	canary := getIngress(t, c, "web-web-canary")
	canary.Annotations["nginx.ingress.kubernetes.io/canary-by-header"] = "X-Stray"
	if _, err := c.NetworkingV1().Ingresses("default").Update(ctx, canary, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, web, 2, route(10)); err != nil {
		t.Fatal(err)
	}
	got := maps.Clone(getIngress(t, c, "web-web-canary").Annotations)
	if _, ok := got["nginx.ingress.kubernetes.io/canary-by-header"]; ok {
		t.Errorf("stray annotation kept: %v", got)
	}
}

// Deleting the rollout deletes the canary Ingress the router created and
// leaves the user's stable Ingress as it was.
func TestRemoveDeletesTheCanaryIngress(t *testing.T) {
	c := kubefake.NewClientset(stableIngress("web"))
	r := newRouter(t, c)
	if _, err := r.Apply(context.Background(), web, 1, route(30)); err != nil {
		t.Fatal(err)
	}
	getIngress(t, c, "web-web-canary")
	if _, err := r.Apply(context.Background(), web, 2, traffictest.Remove(route(30))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NetworkingV1().Ingresses("default").Get(context.Background(), "web-web-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Ingress after remove: %v, want it deleted", err)
	}
	if got := written(getIngress(t, c, "web")); !equality.Semantic.DeepEqual(got, written(stableIngress("web"))) {
		t.Errorf("stable Ingress changed by remove: %+v", got)
	}
}

// TestStableIngressReadRetriesTransientFailures: one 503 or 429 reading
// the stable Ingress (the API server restarting, throttling) is retried
// within the route rather than failing it; found by the kube tier's fault
// proxy (test/kube TestRolloutsSettleAfterKubeAPIFaults), where each such
// failure cost the route a redelivery, seconds later.
func TestStableIngressReadRetriesTransientFailures(t *testing.T) {
	c := kubefake.NewClientset(stableIngress("web"))
	failures := []error{apierrors.NewServiceUnavailable("kube-apiserver restarting"), apierrors.NewTooManyRequests("throttled", 0)}
	c.PrependReactor("get", "ingresses", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() != "web" || len(failures) == 0 {
			return false, nil, nil
		}
		err := failures[0]
		failures = failures[1:]
		return true, nil, err
	})
	w, err := newRouter(t, c).Apply(context.Background(), web, 1, route(10))
	if err != nil || w != 10 {
		t.Fatalf("Apply = %d, %v; want weight 10 once the stable Ingress reads again", w, err)
	}
	if len(failures) != 0 {
		t.Errorf("%d failures left unused", len(failures))
	}
}

// With an informer's cache, the stable Ingress is read from it: a route
// reads no Ingress from the API server once the canary Ingress is
// remembered. A cached copy that would reject the route (the user has just
// pointed a path at the stable Service, and the watch has not brought it
// yet) is checked against the API server's, which decides.
func TestStableIngressFromTheCache(t *testing.T) {
	ctx := context.Background()
	c := kubefake.NewClientset(stableIngress("web"))
	cache := k8scache.NewIndexer(k8scache.MetaNamespaceKeyFunc, k8scache.Indexers{k8scache.NamespaceIndex: k8scache.MetaNamespaceIndexFunc})
	if err := cache.Add(stableIngress("web")); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Client: c, Ingresses: networkinglisters.NewIngressLister(cache), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, web, 1, route(10)); err != nil {
		t.Fatal(err)
	}
	before := kubefake.Count(c, "get")
	if _, err := r.Apply(ctx, web, 2, route(20)); err != nil {
		t.Fatal(err)
	}
	if gets := kubefake.Count(c, "get") - before; gets != 0 {
		t.Errorf("%d reads from the API server for a route with the stable Ingress cached and the canary remembered, want 0", gets)
	}

	old := stableIngress("web")
	old.Spec.Rules = []networkingv1.IngressRule{rule("example.com", path("/", "other", 80))}
	if err := cache.Update(old); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, web, 3, route(30)); err != nil {
		t.Errorf("a cached stable Ingress without a path to the stable Service, the API server's with one: %v, want the API server's copy to decide", err)
	}
	if w := getIngress(t, c, CanaryIngressName("web", "web")).Annotations[DefaultAnnotationPrefix+"/canary-weight"]; w != "30" {
		t.Errorf("canary weight %q, want 30", w)
	}
}
