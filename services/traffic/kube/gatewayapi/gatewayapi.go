// Package gatewayapi is the Gateway API traffic router, Sluice's own
// version of Argo Rollouts' Gateway API plugin
// (argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi): it splits a
// canary's traffic with the backendRef weights of HTTPRoutes
// (gateway.networking.k8s.io/v1), configured under
// trafficRouting.plugins["argoproj-labs/gatewayAPI"] as for the plugin.
//
// # What must exist
//
// The HTTPRoutes named by httpRoute or httpRoutes, in namespace (or the
// rollout's), each with a rule whose backendRefs name both the canary and
// the stable Service (Services of the rollout's namespace). The router
// creates nothing. Header and mirror rules carry a rule name, so the
// HTTPRoute CRD should be Gateway API v1.4 or later (v1.2 or later from the
// experimental channel); with an older CRD, which drops rule names, the
// router still finds its rules by the positions it records.
//
// # What it writes
//
// In each HTTPRoute:
//   - in every rule with backendRefs to both Services (except its own
//     header and mirror rules), weight canaryWeight on the canary's and
//     maxTrafficWeight - canaryWeight on the stable's;
//   - when the route has useHeaderRoutes (httpRoute always has), one rule
//     per header and mirror route of the route, first, in
//     trafficRouting.managedRoutes order, named after the managed route,
//     built from the first weighted rule (the template): a header rule is
//     the template with the header matches added to each of its matches and
//     a single backendRef, the template's canary backendRef with weight 1; a
//     mirror rule is the template (with its weights) with the mirror route's
//     method, path and headers laid over its matches and a RequestMirror
//     filter to the canary (percent = the mirror route's percentage);
//   - annotation traffic.sluice.io/managed-rules: the names of its rules,
//     in order; argo-rollouts.argoproj.io/managed-by-rollouts: the rollout;
//     traffic.sluice.io/route-seq (package guard).
//
// Rules the route no longer has are removed: rules named in managedRoutes
// or in the managed-rules annotation. Header matches are Exact or
// RegularExpression; a prefix match becomes the RegularExpression
// ^<prefix, quoted>.* (regular expressions are implementation-specific in
// Gateway API: the Gateway must support them). Argo keeps this state in a
// ConfigMap; Sluice keeps it in the HTTPRoute, written with the rules.
//
// Every HTTPRoute is read and changed in memory before any is written, so a
// route rejected (or stale) for one HTTPRoute changes none, unless one
// changes in between.
package gatewayapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

// HTTPRoutes is the resource the router reads and writes.
var HTTPRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// AnnotationManagedRules lists, comma-separated, the names of the rules the
// router put at the front of an HTTPRoute, in order.
const AnnotationManagedRules = "traffic.sluice.io/managed-rules"

// Config configures the router.
type Config struct {
	// Client reads and writes HTTPRoutes.
	Client dynamic.Interface
	// Logger receives the router's logs (default slog.Default()).
	Logger *slog.Logger
}

// Router sets weights and header and mirror rules on HTTPRoutes. It is
// safe for concurrent use.
type Router struct {
	client dynamic.Interface
	log    *slog.Logger
}

var _ traffic.Router = (*Router)(nil)

// Type returns "gatewayapi".
func (r *Router) Type() string { return "gatewayapi" }

// New returns a router. It returns an error when Client is nil.
func New(cfg Config) (*Router, error) {
	if cfg.Client == nil {
		return nil, errors.New("gatewayapi router: a dynamic Kubernetes client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Router{client: cfg.Client, log: cfg.Logger}, nil
}

// Apply puts route in effect on each HTTPRoute, in the order configured,
// and returns the canary weight read back from their weighted rules.
// Blue/green routes return 0 and change nothing. A route without the
// plugin's configuration, or one the HTTPRoutes cannot carry (see the
// package doc), is rejected; an HTTPRoute written by a later route makes
// the route stale.
//
// A route with Remove (the rollout is deleted) puts every weight back on the
// stable Service and takes the rollout's header and mirror routes out of
// the HTTPRoutes, which are the user's and stay (guard.RemoveFrom).
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
	client := guard.Dynamic(r.client.Resource(HTTPRoutes).Namespace(p.namespace))
	changes := make([]guard.Change[*unstructured.Unstructured], 0, len(p.routes))
	for _, hr := range p.routes {
		changes = append(changes, guard.Change[*unstructured.Unstructured]{
			Client: client,
			Name:   hr.Name,
			What:   fmt.Sprintf("HTTPRoute %s/%s", p.namespace, hr.Name),
			Mutate: p.httpRoute(hr.UseHeaderRoutes),
		})
	}
	stored, err := guard.UpdateAll(ctx, seq, changes)
	if err != nil {
		return 0, err
	}
	weight := int64(-1)
	for _, s := range stored {
		w, err := p.weightIn(s)
		if err != nil {
			return 0, fmt.Errorf("read back HTTPRoute %s: %w", s.GetName(), err)
		}
		if weight >= 0 && w != weight {
			return 0, fmt.Errorf("HTTPRoutes disagree after the write: canary weight %d in %s, %d in the first", w, s.GetName(), weight)
		}
		weight = w
	}
	r.log.DebugContext(ctx, "gateway API route applied", "rollout", ref.String(), "seq", seq, "weight", weight)
	return int32(weight), nil
}
