// Package alb is the traffic router for the AWS Load Balancer Controller, as
// Argo Rollouts' alb router does it: the controller reads a forward action
// from the Ingress annotation alb.ingress.kubernetes.io/actions.<service>
// for every path whose backend is <service> with port name "use-annotation";
// the router writes that action with the canary's and the stable's target
// group weights (and each weighted experiment template's, between them, on
// the same servicePort, as Argo's; out of the stable's share), and adds a condition annotation, an action annotation and a
// path per header route.
//
// Objects:
//
//   - must exist beforehand, in the rollout's namespace: every Ingress named
//     by trafficRouting.alb.ingress or ingresses, with a path whose backend
//     is the action Service (trafficRouting.alb.rootService, or the
//     stableService) with port name "use-annotation"; and the canary and
//     stable Services (the load balancer controller resolves them).
//   - the router creates nothing: it edits the Ingresses' annotations and,
//     for header routes, their paths, and records which annotations the
//     rollout owns in ManagedAnnotation (Argo's key and format).
//
// The router needs get and update on those Ingresses. It cannot mirror
// traffic (neither can Argo's): a route with mirror routes is rejected
// unless the rollout also routes through Istio, which carries them.
//
// Argo Rollouts verifies the weights against the load balancer's target
// groups through the AWS API. This router does not call AWS: the weight it
// reports is read back from the action annotation as stored in Kubernetes,
// so a load balancer controller that is down or failing goes unnoticed here.
package alb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	netclient "k8s.io/client-go/kubernetes/typed/networking/v1"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

const (
	// DefaultAnnotationPrefix is the load balancer controller's annotation
	// prefix, used unless trafficRouting.alb.annotationPrefix names another.
	DefaultAnnotationPrefix = "alb.ingress.kubernetes.io"

	// ManagedAnnotation lists, per rollout, the annotation keys the rollout
	// owns on the Ingress, as JSON: {"web":["alb.ingress.kubernetes.io/actions.web-stable"]}.
	// It is Argo Rollouts' key and format, so an Ingress moves between Argo
	// and Sluice without edits.
	ManagedAnnotation = "rollouts.argoproj.io/managed-alb-annotations"

	// UseAnnotation is the backend port name that tells the load balancer
	// controller to take the path's action from an annotation.
	UseAnnotation = "use-annotation"
)

// Config configures the router.
type Config struct {
	// Client reads and writes the Ingresses.
	Client kubernetes.Interface
	// Logger receives the router's logs (default slog.Default()).
	Logger *slog.Logger
}

// Router edits ALB Ingresses. It is safe for concurrent use: all its state
// is in the Ingresses.
type Router struct {
	client kubernetes.Interface
	log    *slog.Logger
}

var _ traffic.Router = (*Router)(nil)

// RoutesExperiments reports that Apply gives experiment templates their
// weights (route.Experiments): a target group each, on servicePort, as
// Argo's.
func (r *Router) RoutesExperiments() bool { return true }

// Type returns "alb".
func (r *Router) Type() string { return "alb" }

// New returns a router. It returns an error when Client is nil.
func New(cfg Config) (*Router, error) {
	if cfg.Client == nil {
		return nil, errors.New("alb router: a Kubernetes client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Router{client: cfg.Client, log: cfg.Logger}, nil
}

// Apply writes the route's weights and header routes on every Ingress of
// the route, and returns the canary weight read back from the stored action
// annotation (0, changing nothing, for blue/green, which the Service
// selectors carry on their own).
//
// It returns an error wrapping traffic.ErrRejected when the route has no
// trafficRouting.alb, carries a header route the load balancer cannot
// express or mirror routes no other router of the rollout carries, when an
// Ingress is missing, has no use-annotation path to the action Service, or
// is managed by another rollout; and one wrapping tasks.ErrStale when an
// Ingress was written by a later route.
//
// A route with Remove (the rollout is deleted) puts every weight back on the
// stable Service and takes the rollout's header and mirror routes out of
// the Ingresses, which are the user's and stay (guard.RemoveFrom).
func (r *Router) Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
	if route.Strategy == spec.StrategyBlueGreen {
		return 0, nil
	}
	if route.Remove {
		return 0, guard.RemoveFrom(ctx, ref, seq, route, r.Apply, r.log)
	}
	p, err := newPlan(ref, route)
	if err != nil {
		return 0, err
	}
	cfg := route.TrafficRouting.ALB
	names := cfg.Ingresses
	if len(names) == 0 {
		names = []string{cfg.Ingress}
	}
	ingresses := r.client.NetworkingV1().Ingresses(ref.Namespace)
	var weight int32
	for _, name := range names {
		what := fmt.Sprintf("Ingress %s/%s", ref.Namespace, name)
		c := ownedClient{IngressInterface: ingresses, rollout: ref.Name, what: what}
		stored, err := guard.Update(ctx, guard.Client[*networkingv1.Ingress](c), name, what, seq, func(ing *networkingv1.Ingress) error {
			return p.apply(ing)
		})
		if err != nil {
			return 0, err
		}
		w, err := p.storedWeight(stored)
		if err != nil {
			return 0, fmt.Errorf("read back %s: %w", what, err)
		}
		if w != route.CanaryWeight {
			// Only something rewriting the object on its way in (a mutating
			// webhook) gets here; the next attempt may find it settled.
			return 0, fmt.Errorf("%s carries canary weight %d after the write, want %d", what, w, route.CanaryWeight)
		}
		r.log.Debug("alb ingress in effect", "rollout", ref.String(), "ingress", name, "seq", seq, "weight", w, "headerRoutes", len(p.headers))
		weight = w
	}
	return weight, nil
}

// ownedClient is the guard.Client of one Ingress. Its Get refuses an
// Ingress another rollout manages before guard compares seqs: the route seq
// is recorded per object, so two rollouts writing one Ingress would refuse
// each other's routes as stale, and the user must hear why.
type ownedClient struct {
	netclient.IngressInterface
	rollout string
	what    string
}

func (c ownedClient) Get(ctx context.Context, name string, opts metav1.GetOptions) (*networkingv1.Ingress, error) {
	ing, err := c.IngressInterface.Get(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	managed, err := parseManaged(ing.Annotations[ManagedAnnotation])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: annotation %s: %v; fix or remove it", traffic.ErrRejected, c.what, ManagedAnnotation, err)
	}
	var others []string
	for rollout, keys := range managed {
		if rollout != c.rollout && len(keys) > 0 {
			others = append(others, rollout)
		}
	}
	if len(others) > 0 {
		slices.Sort(others)
		return nil, fmt.Errorf("%w: %s is also managed by rollout %s (annotation %s); Sluice records the route seq per Ingress, so give each rollout its own Ingress, or remove the entry of a rollout that is gone", traffic.ErrRejected, c.what, strings.Join(quote(others), ", "), ManagedAnnotation)
	}
	return ing, nil
}

func (c ownedClient) Update(ctx context.Context, ing *networkingv1.Ingress, opts metav1.UpdateOptions) (*networkingv1.Ingress, error) {
	stored, err := c.IngressInterface.Update(ctx, ing, opts)
	if apierrors.IsInvalid(err) {
		// The object itself is refused (a webhook, an invalid path):
		// sending it again cannot succeed.
		return stored, fmt.Errorf("%w: the API server refused %s: %v", traffic.ErrRejected, c.what, err)
	}
	return stored, err
}

// parseManaged decodes ManagedAnnotation; empty means no entry.
func parseManaged(v string) (map[string][]string, error) {
	m := map[string][]string{}
	if v == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return nil, err
	}
	return m, nil
}

func quote(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
