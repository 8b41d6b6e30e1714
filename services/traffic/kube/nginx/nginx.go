// Package nginx is the traffic router for the NGINX ingress controller
// (ingress-nginx), as Argo Rollouts' nginx router does it: next to each
// stable Ingress the user owns, the router keeps a canary Ingress with the
// same class, hosts, TLS and paths, whose backends point at the canary
// Service and whose annotations (nginx.ingress.kubernetes.io/canary and
// canary-weight) tell the controller what share of requests to send there.
//
// Objects:
//
//   - must exist beforehand, in the rollout's namespace: every Ingress named
//     by trafficRouting.nginx.stableIngress or stableIngresses, with at least
//     one path whose backend is the rollout's stableService. The router only
//     reads them.
//   - created by the router when missing: one canary Ingress per stable
//     Ingress, named CanaryIngressName(rollout, stableIngress), marked with
//     spec.AnnotationManagedBy. It is rebuilt from its stable Ingress on every
//     Apply, so changes to the stable Ingress reach it at the next route.
//     The router never deletes it (Argo deletes it with the Rollout object
//     through an owner reference, which Sluice does not set).
//
// The router needs get on Ingresses (and list and watch, for the informer
// the kube router reads the stable Ingresses from) and create and update on
// the canary Ingresses. The router cannot set header or mirror routes (Argo's nginx
// router ignores setHeaderRoute and setMirrorRoute): a route carrying them is
// rejected unless another router of the rollout (Istio; ALB or Gateway API
// for header routes) carries them, since every router of a rollout is given
// the same route. additionalIngressAnnotations with canary-by-header is
// ingress-nginx's own header routing.
package nginx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	netclient "k8s.io/client-go/kubernetes/typed/networking/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"

	"github.com/sluicehq/sluice/internal/kubens"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

// DefaultAnnotationPrefix is the prefix of ingress-nginx's annotations,
// used unless trafficRouting.nginx.annotationPrefix names another.
const DefaultAnnotationPrefix = "nginx.ingress.kubernetes.io"

// fieldManager names the router in the objects' managedFields.
const fieldManager = "sluice-traffic"

// Config configures the router.
type Config struct {
	// Client reads the stable Ingresses and writes the canary Ingresses.
	Client kubernetes.Interface
	// Ingresses, when set, is an informer's cache the stable Ingresses are
	// read from instead of the API server. An Ingress the cache does not
	// hold (yet), and one whose copy there the route must reject, is read
	// from the API server.
	Ingresses networkinglisters.IngressLister
	// Logger receives the router's logs (default slog.Default()).
	Logger *slog.Logger
}

// Router keeps canary Ingresses for ingress-nginx. It is safe for
// concurrent use: all its state is in the Ingresses.
type Router struct {
	client    kubernetes.Interface
	ingresses networkinglisters.IngressLister
	log       *slog.Logger
	// written remembers the canary Ingresses as the router last wrote
	// them, so that the next route starts from them rather than reading
	// them.
	written *guard.Memory[*networkingv1.Ingress]
}

var _ traffic.Router = (*Router)(nil)

// Type returns "nginx".
func (r *Router) Type() string { return "nginx" }

// New returns a router. It returns an error when Client is nil.
func New(cfg Config) (*Router, error) {
	if cfg.Client == nil {
		return nil, errors.New("nginx router: a Kubernetes client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Router{client: cfg.Client, ingresses: cfg.Ingresses, log: cfg.Logger, written: guard.NewMemory[*networkingv1.Ingress](0)}, nil
}

// Apply makes the canary Ingress of every stable Ingress of the route match
// its stable Ingress and carry the route's canary weight, and returns the
// weight read back from the canary Ingresses (0, changing nothing, for
// blue/green, which ingress-nginx does not take part in).
//
// It returns an error wrapping traffic.ErrRejected when the route has no
// trafficRouting.nginx, carries header or mirror routes no other router of
// the rollout carries, when a stable Ingress is missing or has no path to
// the stable Service, or when an Ingress with a canary Ingress's name exists
// that this rollout does not manage; and one wrapping tasks.ErrStale when
// a canary Ingress was written by a later route.
//
// A route with Remove (the rollout is deleted) deletes the canary
// Ingresses, which the router created; the stable Ingresses are the
// user's and stay as they are.
func (r *Router) Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
	if route.Strategy == spec.StrategyBlueGreen {
		return 0, nil
	}
	if route.Remove {
		return 0, r.remove(ctx, ref, seq, route)
	}
	n, err := check(route)
	if err != nil {
		return 0, err
	}
	ingresses := r.client.NetworkingV1().Ingresses(ref.Namespace)
	stables := n.StableIngresses
	if len(stables) == 0 {
		stables = []string{n.StableIngress}
	}
	var weight int32
	for _, name := range stables {
		w, err := r.applyCanary(ctx, ingresses, ref, seq, route, name)
		if err != nil {
			return 0, err
		}
		weight = w
	}
	return weight, nil
}

// check returns the route's nginx configuration, or an error wrapping
// traffic.ErrRejected saying what the route asks that this router cannot do.
func check(route tasks.Route) (*spec.NginxTrafficRouting, error) {
	if route.TrafficRouting == nil || route.TrafficRouting.Nginx == nil {
		return nil, fmt.Errorf("%w: the traffic service runs the nginx router, and the rollout has no spec.strategy.canary.trafficRouting.nginx", traffic.ErrRejected)
	}
	n := route.TrafficRouting.Nginx
	switch {
	case n.StableIngress == "" && len(n.StableIngresses) == 0:
		return nil, fmt.Errorf("%w: trafficRouting.nginx needs stableIngress or stableIngresses", traffic.ErrRejected)
	case route.StableService == "" || route.CanaryService == "":
		return nil, fmt.Errorf("%w: trafficRouting.nginx needs both spec.strategy.canary.stableService and canaryService", traffic.ErrRejected)
	case len(route.HeaderRoutes) > 0 && !headersElsewhere(route.TrafficRouting):
		return nil, fmt.Errorf("%w: the nginx router cannot set header route %q (neither can Argo Rollouts'); remove the setHeaderRoute steps, and for header-based canary set trafficRouting.nginx.additionalIngressAnnotations canary-by-header (and canary-by-header-value)", traffic.ErrRejected, route.HeaderRoutes[0].Name)
	case len(route.MirrorRoutes) > 0 && route.TrafficRouting.Istio == nil:
		return nil, fmt.Errorf("%w: the nginx router cannot mirror traffic (mirror route %q); remove the setMirrorRoute steps or use trafficRouting.istio", traffic.ErrRejected, route.MirrorRoutes[0].Name)
	}
	if total := route.TrafficRouting.MaxWeight(); route.CanaryWeight < 0 || route.CanaryWeight > total {
		return nil, fmt.Errorf("%w: canary weight %d is outside 0..%d (maxTrafficWeight)", traffic.ErrRejected, route.CanaryWeight, total)
	}
	return n, nil
}

// headersElsewhere reports whether another router of tr (Istio, ALB or the
// Gateway API plugin) puts header routes in effect. The rollout's routers
// are all given the same route; then the header routes are that router's
// to carry, and requests through NGINX get the weights only, as with Argo.
func headersElsewhere(tr *spec.TrafficRouting) bool {
	_, gatewayAPI := tr.Plugins[spec.GatewayAPIPlugin]
	return tr.Istio != nil || tr.ALB != nil || gatewayAPI
}

// applyCanary brings the canary Ingress of the stable Ingress stableName in
// line with it and with route, and returns the weight stored on it.
func (r *Router) applyCanary(ctx context.Context, ingresses netclient.IngressInterface, ref events.Ref, seq int64, route tasks.Route, stableName string) (int32, error) {
	cached, err := r.cachedStable(ref.Namespace, stableName)
	if err != nil {
		return 0, err
	}
	var want *networkingv1.Ingress
	if cached != nil {
		want, err = desiredCanary(ref, cached, route)
	}
	if cached == nil || err != nil {
		// Not cached, or a rejection that a copy older than the user's
		// last edit may have caused: the API server's copy decides.
		stable, err := guard.Get(ctx, guard.Getter[*networkingv1.Ingress](ingresses), stableName, fmt.Sprintf("stable Ingress %s/%s", ref.Namespace, stableName))
		switch {
		case apierrors.IsNotFound(err):
			return 0, fmt.Errorf("%w: stable Ingress %s/%s (trafficRouting.nginx) does not exist; create it, with a path to Service %q, before the rollout uses it", traffic.ErrRejected, ref.Namespace, stableName, route.StableService)
		case err != nil:
			return 0, err
		}
		if want, err = desiredCanary(ref, stable, route); err != nil {
			return 0, err
		}
	}
	what := fmt.Sprintf("canary Ingress %s/%s", ref.Namespace, want.Name)
	c := canaryClient{IngressInterface: ingresses, rollout: ref.Name, what: what, create: withSeq(want, seq), log: r.log}
	stored, err := guard.Update(ctx, r.written.Client(ref.Namespace, guard.Client[*networkingv1.Ingress](c)), want.Name, what, seq, func(ing *networkingv1.Ingress) error {
		ing.Annotations = want.DeepCopy().Annotations
		ing.Spec = *want.Spec.DeepCopy()
		return nil
	})
	if err != nil {
		return 0, err
	}
	weight, err := storedWeight(stored, annotationPrefix(route.TrafficRouting.Nginx))
	if err != nil {
		return 0, fmt.Errorf("read back %s: %w", what, err)
	}
	if weight != route.CanaryWeight {
		// Only something rewriting the object on its way in (a mutating
		// webhook) gets here; the next attempt may find it settled.
		return 0, fmt.Errorf("%s carries canary weight %d after the write, want %d", what, weight, route.CanaryWeight)
	}
	r.log.Debug("canary ingress in effect", "rollout", ref.String(), "ingress", want.Name, "seq", seq, "weight", weight)
	return weight, nil
}

// cachedStable returns the stable Ingress from the informer's cache, or
// nil when there is no cache or it does not hold the Ingress.
func (r *Router) cachedStable(namespace, name string) (*networkingv1.Ingress, error) {
	if r.ingresses == nil {
		return nil, nil
	}
	ing, err := r.ingresses.Ingresses(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stable Ingress %s/%s from the cache: %w", namespace, name, err)
	}
	return ing, nil
}

// withSeq returns a copy of ing carrying seq, as the router creates it.
func withSeq(ing *networkingv1.Ingress, seq int64) *networkingv1.Ingress {
	out := ing.DeepCopy()
	out.Annotations[guard.SeqAnnotation] = strconv.FormatInt(seq, 10)
	return out
}

// canaryClient is the guard.Client of one canary Ingress. Its Get creates
// the Ingress when it is missing, so guard.Update's read-modify-write also
// covers the first Apply and a canary Ingress someone deleted; and it
// refuses an Ingress this rollout does not manage before guard compares
// seqs, so a foreign object is reported as what it is rather than as stale.
type canaryClient struct {
	netclient.IngressInterface
	rollout string
	what    string
	create  *networkingv1.Ingress
	log     *slog.Logger
}

func (c canaryClient) Get(ctx context.Context, name string, opts metav1.GetOptions) (*networkingv1.Ingress, error) {
	ing, err := c.IngressInterface.Get(ctx, name, opts)
	if apierrors.IsNotFound(err) {
		ing, err = c.IngressInterface.Create(ctx, c.create, metav1.CreateOptions{FieldManager: fieldManager})
		if err == nil {
			c.log.Info("created canary ingress", "rollout", c.rollout, "ingress", name)
		}
		if apierrors.IsAlreadyExists(err) {
			// Another Apply created it since our read: take it from there.
			ing, err = c.IngressInterface.Get(ctx, name, opts)
		}
		if kubens.Gone(err) {
			return nil, fmt.Errorf("%w: %s cannot be created: its namespace is gone or being deleted (%v)", traffic.ErrRejected, c.what, err)
		}
	}
	if err != nil {
		return nil, rejectInvalid(err, c.what)
	}
	if owner, ok := managedBy(ing, c.rollout); !ok {
		return nil, fmt.Errorf("%w: %s exists and is not this rollout's canary Ingress (%s); delete or rename it so the router can create its own", traffic.ErrRejected, c.what, owner)
	}
	return ing, nil
}

func (c canaryClient) Update(ctx context.Context, ing *networkingv1.Ingress, opts metav1.UpdateOptions) (*networkingv1.Ingress, error) {
	stored, err := c.IngressInterface.Update(ctx, ing, opts)
	return stored, rejectInvalid(err, c.what)
}

// rejectInvalid turns the API server's refusal of the object itself (422,
// such as a name that is too long or a webhook's validation) into a
// rejection: sending the same object again cannot succeed.
func rejectInvalid(err error, what string) error {
	if apierrors.IsInvalid(err) {
		return fmt.Errorf("%w: the API server refused %s: %v", traffic.ErrRejected, what, err)
	}
	return err
}

// managedBy reports whether rollout manages ing, and otherwise who does,
// for the error message. A canary Ingress Argo Rollouts created for a
// Rollout of the same name (controller owner reference, no Sluice
// annotation) counts as the rollout's, so a migration does not need it
// deleted.
func managedBy(ing *networkingv1.Ingress, rollout string) (string, bool) {
	if owner, ok := ing.Annotations[spec.AnnotationManagedBy]; ok {
		if owner == rollout {
			return "", true
		}
		return fmt.Sprintf("it is managed by rollout %q", owner), false
	}
	if ref := metav1.GetControllerOf(ing); ref != nil && ref.Kind == "Rollout" && ref.Name == rollout {
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil && gv.Group == "argoproj.io" {
			return "", true
		}
	}
	return fmt.Sprintf("it has no annotation %s: %s", spec.AnnotationManagedBy, rollout), false
}

// remove deletes the canary Ingresses of a removed rollout.
func (r *Router) remove(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) error {
	if route.TrafficRouting == nil || route.TrafficRouting.Nginx == nil {
		return nil
	}
	n := route.TrafficRouting.Nginx
	stables := n.StableIngresses
	if len(stables) == 0 && n.StableIngress != "" {
		stables = []string{n.StableIngress}
	}
	ingresses := r.client.NetworkingV1().Ingresses(ref.Namespace)
	for _, stable := range stables {
		name := CanaryIngressName(ref.Name, stable)
		what := fmt.Sprintf("canary Ingress %s/%s", ref.Namespace, name)
		err := guard.Delete(ctx, guard.Deleter[*networkingv1.Ingress](ingresses), name, what, seq, func(ing *networkingv1.Ingress) bool {
			_, ok := managedBy(ing, ref.Name)
			return ok
		})
		if err != nil {
			return err
		}
	}
	return nil
}
