// Package kube is the traffic router of the Kubernetes platform
// (sluice-traffic --router kube). For each route it points the rollout's
// Services at their revisions (package basic) and then applies the route on
// every router the rollout's trafficRouting names, as Argo Rollouts does:
// NGINX, AWS ALB, Istio, SMI and Gateway API, one package each. A rollout
// without trafficRouting splits traffic by replica ratio behind its
// Services, and needs only the first part.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/alb"
	"github.com/sluicehq/sluice/services/traffic/kube/basic"
	"github.com/sluicehq/sluice/services/traffic/kube/gatewayapi"
	"github.com/sluicehq/sluice/services/traffic/kube/istio"
	"github.com/sluicehq/sluice/services/traffic/kube/nginx"
	"github.com/sluicehq/sluice/services/traffic/kube/smi"
)

// Config configures the router.
type Config struct {
	// Client edits Services and Ingresses.
	Client kubernetes.Interface
	// Dynamic edits the mesh objects: VirtualServices, DestinationRules,
	// TrafficSplits, HTTPRoutes.
	Dynamic dynamic.Interface
	// IstioAPIVersion and SMIAPIVersion choose the API versions written
	// (defaults: istio.DefaultAPIVersion, smi.DefaultAPIVersion).
	IstioAPIVersion string
	SMIAPIVersion   string
	// Namespace limits the informer on Ingresses (Start) to one
	// namespace; empty means all.
	Namespace string
	// Logger receives the routers' logs (default slog.Default()).
	Logger *slog.Logger
}

// Router applies routes to Services and the routers each rollout names.
//
// Its Start starts an informer on Ingresses, from which the NGINX router
// reads the stable Ingresses (the traffic service starts it before taking
// tasks); until then, and for an Ingress the informer has not seen, the
// router reads the API server.
type Router struct {
	client    kubernetes.Interface
	namespace string
	informers informers.SharedInformerFactory
	ingresses cache.SharedIndexInformer
	stop      chan struct{}
	started   atomic.Bool
	closeOnce sync.Once

	services *basic.Router
	nginx    *nginx.Router
	alb      *alb.Router
	istio    *istio.Router
	smi      *smi.Router
	gateway  *gatewayapi.Router
}

var (
	_ traffic.Router    = (*Router)(nil)
	_ traffic.Lifecycle = (*Router)(nil)
)

// Type returns "kube".
func (r *Router) Type() string { return "kube" }

// New builds every router.
func New(cfg Config) (*Router, error) {
	if cfg.Client == nil || cfg.Dynamic == nil {
		return nil, errors.New("kube router: a Kubernetes client and a dynamic client are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var (
		r    = Router{client: cfg.Client, namespace: cfg.Namespace, stop: make(chan struct{})}
		errs = make([]error, 6)
	)
	r.informers = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithNamespace(cfg.Namespace))
	ingresses := r.informers.Networking().V1().Ingresses()
	r.ingresses = ingresses.Informer()
	r.services, errs[0] = basic.New(basic.Config{Client: cfg.Client, Logger: cfg.Logger})
	r.nginx, errs[1] = nginx.New(nginx.Config{Client: cfg.Client, Ingresses: ingresses.Lister(), Logger: cfg.Logger})
	r.alb, errs[2] = alb.New(alb.Config{Client: cfg.Client, Logger: cfg.Logger})
	r.istio, errs[3] = istio.New(istio.Config{Client: cfg.Dynamic, APIVersion: cfg.IstioAPIVersion, Logger: cfg.Logger})
	r.smi, errs[4] = smi.New(smi.Config{Client: cfg.Dynamic, APIVersion: cfg.SMIAPIVersion, Logger: cfg.Logger})
	r.gateway, errs[5] = gatewayapi.New(gatewayapi.Config{Client: cfg.Dynamic, Logger: cfg.Logger})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &r, nil
}

// Start starts the informer on Ingresses and waits until it has listed
// them, or ctx ends. Listing and watching Ingresses is in the traffic
// service's role (deploy/base/traffic.yaml).
func (r *Router) Start(ctx context.Context) error {
	// The informer retries a refused list for ever; a role without it is
	// said at once instead.
	_, err := r.client.NetworkingV1().Ingresses(r.namespace).List(ctx, metav1.ListOptions{Limit: 1})
	if apierrors.IsForbidden(err) {
		where := "in every namespace (or set --namespace to the one namespace its role covers)"
		if r.namespace != "" {
			where = "in namespace " + r.namespace
		}
		return fmt.Errorf("kube router: the traffic service may not list Ingresses %s: its role needs list and watch on ingresses.networking.k8s.io, from which the NGINX router reads the stable Ingresses (deploy/base/traffic.yaml): %v", where, err)
	}
	r.informers.Start(r.stop)
	if !cache.WaitForCacheSync(ctx.Done(), r.ingresses.HasSynced) {
		return fmt.Errorf("kube router: the informer on Ingresses did not sync (%v): the traffic service needs list and watch on ingresses.networking.k8s.io", ctx.Err())
	}
	r.started.Store(true)
	return nil
}

// Ready reports whether Start has finished and Close has not been called.
func (r *Router) Ready() bool { return r.started.Load() }

// Close stops the informer.
func (r *Router) Close(context.Context) error {
	r.closeOnce.Do(func() {
		r.started.Store(false)
		close(r.stop)
		r.informers.Shutdown()
	})
	return nil
}

// Apply points the Services first, so that a router that splits between
// them never sends traffic to a Service still selecting the wrong pods,
// then applies the route on each configured router in a fixed order. The
// weight returned is the one the last router reports in effect; each
// router verifies its own. Errors are the routers' own (ErrStale,
// ErrRejected, or infrastructure), prefixed with the router's name.
//
// A route with Remove (the rollout is deleted) goes the other way: each
// router takes the rollout out of its objects first (deleting those it
// created), then the Services are released.
func (r *Router) Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
	if route.Remove {
		return 0, r.remove(ctx, ref, seq, route)
	}
	// Refused before anything changes.
	if err := r.experimentsSupported(route); err != nil {
		return 0, err
	}
	weight, err := r.services.Apply(ctx, ref, seq, route)
	if err != nil {
		return 0, fmt.Errorf("services: %w", err)
	}
	if route.Strategy == spec.StrategyBlueGreen || route.TrafficRouting == nil {
		return weight, nil
	}
	routers, err := r.routersOf(route.TrafficRouting)
	if err != nil {
		return 0, err
	}
	for _, rt := range routers {
		if weight, err = rt.Apply(ctx, ref, seq, route); err != nil {
			return 0, fmt.Errorf("%s: %w", rt.Type(), err)
		}
	}
	return weight, nil
}

// remove removes the rollout from every router it names, then from its
// Services.
func (r *Router) remove(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) error {
	if route.Strategy != spec.StrategyBlueGreen && route.TrafficRouting != nil {
		routers, err := r.routersOf(route.TrafficRouting)
		if err != nil && !errors.Is(err, traffic.ErrRejected) {
			return err
		}
		for _, rt := range routers {
			if _, err := rt.Apply(ctx, ref, seq, route); err != nil {
				return fmt.Errorf("%s: %w", rt.Type(), err)
			}
		}
	}
	if _, err := r.services.Apply(ctx, ref, seq, route); err != nil {
		return fmt.Errorf("services: %w", err)
	}
	return nil
}

// ExperimentRouters names the routers that give experiment templates
// their weight (tasks.Route.Experiments), as validation lists them
// (spec.ExperimentWeightRouters); Sluice's NGINX and Gateway API routers
// refuse a route with experiment weights.
var ExperimentRouters = strings.Join(spec.ExperimentWeightRouters, ", ")

// experimentRouter is implemented by the routers that give experiment
// templates their weight.
type experimentRouter interface {
	// RoutesExperiments reports that Apply honours route.Experiments.
	RoutesExperiments() bool
}

// experimentsSupported refuses a route with experiment weights unless
// every router it names gives them their weights.
func (r *Router) experimentsSupported(route tasks.Route) error {
	if len(route.Experiments) == 0 {
		return nil
	}
	var routers []traffic.Router
	if route.Strategy != spec.StrategyBlueGreen && route.TrafficRouting != nil {
		var err error
		if routers, err = r.routersOf(route.TrafficRouting); err != nil {
			return err
		}
	}
	if len(routers) == 0 {
		return fmt.Errorf("%w: experiment templates with a weight (%d) need a canary with trafficRouting naming a router that supports them (%s)",
			traffic.ErrRejected, len(route.Experiments), ExperimentRouters)
	}
	var refusing []string
	for _, rt := range routers {
		if er, ok := rt.(experimentRouter); !ok || !er.RoutesExperiments() {
			refusing = append(refusing, rt.Type())
		}
	}
	if len(refusing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: experiment templates with a weight (%d) cannot be routed by %s: trafficRouting must name only routers that support them (%s), or the templates must have no weight",
		traffic.ErrRejected, len(route.Experiments), strings.Join(refusing, ", "), ExperimentRouters)
}

// routersOf lists the routers tr configures.
func (r *Router) routersOf(tr *spec.TrafficRouting) ([]traffic.Router, error) {
	var out []traffic.Router
	if tr.Nginx != nil {
		out = append(out, r.nginx)
	}
	if tr.ALB != nil {
		out = append(out, r.alb)
	}
	if tr.Istio != nil {
		out = append(out, r.istio)
	}
	if tr.SMI != nil {
		out = append(out, r.smi)
	}
	gw, err := tr.GatewayAPI()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", traffic.ErrRejected, err)
	}
	if gw != nil {
		out = append(out, r.gateway)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: trafficRouting names no router Sluice implements (nginx, alb, istio, smi, plugins[%q])", traffic.ErrRejected, spec.GatewayAPIPlugin)
	}
	return out, nil
}
