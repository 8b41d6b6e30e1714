// Package istio is the Istio traffic router: it splits a canary's traffic
// with the weights of Istio VirtualService routes, as Argo Rollouts' Istio
// router does, so that a VirtualService Argo managed looks the same when
// Sluice manages it.
//
// # What must exist
//
// The VirtualServices named in trafficRouting.istio.virtualService or
// virtualServices (a name may be written "name.namespace"; without a
// namespace it is the rollout's), and the DestinationRule named in
// trafficRouting.istio.destinationRule when subsets are used (always in the
// rollout's namespace). The router creates nothing: a missing object
// rejects the route.
//
// # What it writes
//
// In each VirtualService:
//   - the weights of the routes it manages: the HTTP routes named in
//     routes (or the one HTTP route, when routes is omitted), the TLS routes
//     matching tlsRoutes by port and SNI hosts (or the one TLS route), the
//     TCP routes matching tcpRoutes by port (or the one TCP route). In each,
//     the destination to the canary gets the canary weight and the
//     destination to the stable the rest of 100. A destination is the
//     canary's when its host, up to the first dot, is canaryService, or,
//     with a destinationRule, when its subset is canarySubsetName (likewise
//     for the stable). Each experiment template with a weight
//     (route.Experiments) gets a destination to its Service (host: the
//     Service's name) with its weight, added when missing, and the stable
//     gets 100 - the canary's - the templates' weights, as Argo's
//     additional destinations. Other destinations are removed, as Argo
//     removes them: a template's goes when its experiment ends.
//   - the header and mirror routes of route.HeaderRoutes and
//     route.MirrorRoutes, as HTTP routes named after them, first in the
//     order of trafficRouting.managedRoutes; HTTP routes named in
//     managedRoutes that the route no longer has are removed.
//   - annotation argo-rollouts.argoproj.io/managed-by-rollouts with the
//     rollout's name, and traffic.sluice.io/route-seq (package guard).
//
// In the DestinationRule, label rollouts-pod-template-hash on the canary and
// stable subsets (the canary and stable pod hashes) and the managed-by
// annotation. Other subsets are kept.
//
// Every object is read and changed in memory before any is written, so a
// route rejected (or stale) for one object changes none, unless an object
// changes in between.
package istio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

// Group is the API group of VirtualServices and DestinationRules.
const Group = "networking.istio.io"

// DefaultAPIVersion is the version of Group the router uses unless
// configured otherwise: Argo Rollouts' default.
const DefaultAPIVersion = "v1alpha3"

// Config configures the router.
type Config struct {
	// Client reads and writes VirtualServices and DestinationRules.
	Client dynamic.Interface
	// APIVersion is the version of networking.istio.io to use: v1alpha3
	// (the default), v1beta1 or v1. Istio serves them all since 1.22.
	APIVersion string
	// Logger receives the router's logs (default slog.Default()).
	Logger *slog.Logger
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.APIVersion == "" {
		c.APIVersion = DefaultAPIVersion
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("istio router: a dynamic Kubernetes client is required"))
	}
	if !slices.Contains([]string{"v1alpha3", "v1beta1", "v1"}, c.APIVersion) {
		errs = append(errs, fmt.Errorf("istio router: API version %q is not one of v1alpha3, v1beta1, v1", c.APIVersion))
	}
	return errors.Join(errs...)
}

// Router sets weights, header and mirror routes on VirtualServices. It is
// safe for concurrent use.
type Router struct {
	client dynamic.Interface
	vs, dr schema.GroupVersionResource
	log    *slog.Logger
}

var _ traffic.Router = (*Router)(nil)

// RoutesExperiments reports that Apply gives experiment templates their
// weights (route.Experiments).
func (r *Router) RoutesExperiments() bool { return true }

// Type returns "istio".
func (r *Router) Type() string { return "istio" }

// New returns a router for cfg, with defaults filled.
func New(cfg Config) (*Router, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Router{
		client: cfg.Client,
		vs:     schema.GroupVersionResource{Group: Group, Version: cfg.APIVersion, Resource: "virtualservices"},
		dr:     schema.GroupVersionResource{Group: Group, Version: cfg.APIVersion, Resource: "destinationrules"},
		log:    cfg.Logger,
	}, nil
}

// Apply puts route in effect on the rollout's DestinationRule (if any), then
// on its VirtualServices, and returns the canary weight read back from the
// first VirtualService's first weighted route. Blue/green routes return 0
// and change nothing. A route without trafficRouting.istio, or one the
// objects cannot carry (see the package doc), is rejected; an object written
// by a later route makes the route stale.
//
// A route with Remove (the rollout is deleted) puts every weight back on the
// stable Service and takes the rollout's header and mirror routes out of
// the VirtualServices and DestinationRule, which are the user's and stay (guard.RemoveFrom).
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
	var changes []guard.Change[*unstructured.Unstructured]
	if dr := p.istio.DestinationRule; dr != nil {
		changes = append(changes, guard.Change[*unstructured.Unstructured]{
			Client: guard.Dynamic(r.client.Resource(r.dr).Namespace(ref.Namespace)),
			Name:   dr.Name,
			What:   fmt.Sprintf("DestinationRule %s/%s", ref.Namespace, dr.Name),
			Mutate: p.destinationRule,
		})
	}
	sels := p.virtualServices()
	for _, sel := range sels {
		ns, name := splitName(sel.Name, ref.Namespace)
		changes = append(changes, guard.Change[*unstructured.Unstructured]{
			Client: guard.Dynamic(r.client.Resource(r.vs).Namespace(ns)),
			Name:   name,
			What:   fmt.Sprintf("VirtualService %s/%s", ns, name),
			Mutate: p.virtualService(sel),
		})
	}
	stored, err := guard.UpdateAll(ctx, seq, changes)
	if err != nil {
		return 0, err
	}
	// The VirtualServices are the last len(sels) objects.
	vss := stored[len(stored)-len(sels):]
	weight := int64(-1)
	for i, vs := range vss {
		w, err := p.weightIn(vs, sels[i])
		if err != nil {
			return 0, fmt.Errorf("read back VirtualService %s: %w", vs.GetName(), err)
		}
		if weight >= 0 && w != weight {
			return 0, fmt.Errorf("VirtualServices disagree after the write: canary weight %d in %s, %d in the first", w, vs.GetName(), weight)
		}
		weight = w
	}
	r.log.DebugContext(ctx, "istio route applied", "rollout", ref.String(), "seq", seq, "weight", weight)
	return int32(weight), nil
}

// splitName splits Argo's "name.namespace" VirtualService reference.
func splitName(ref, defaultNamespace string) (namespace, name string) {
	if i := strings.Index(ref, "."); i > 0 {
		return ref[i+1:], ref[:i]
	}
	return defaultNamespace, ref
}

// destinationRule labels the canary and stable subsets with their pod
// hashes, as Argo does; an empty hash removes the label.
func (p *plan) destinationRule(dr *unstructured.Unstructured) error {
	if err := p.claim(dr); err != nil {
		return err
	}
	cfg := p.istio.DestinationRule
	subsets, err := guard.ListAt(dr.Object, "spec", "subsets")
	if err != nil {
		return err
	}
	found := map[string]bool{}
	for _, s := range subsets {
		subset, ok := s.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: spec.subsets has an entry that is not an object", traffic.ErrRejected)
		}
		var hash string
		switch name, _ := subset["name"].(string); name {
		case cfg.CanarySubsetName:
			hash = p.route.CanaryHash
		case cfg.StableSubsetName:
			hash = p.route.StableHash
		default:
			continue
		}
		found[subset["name"].(string)] = true
		labels, _ := subset["labels"].(map[string]any)
		if hash == "" {
			delete(labels, spec.LabelPodTemplateHash)
			continue
		}
		if labels == nil {
			labels = map[string]any{}
			subset["labels"] = labels
		}
		labels[spec.LabelPodTemplateHash] = hash
	}
	for _, f := range []struct{ name, field string }{{cfg.CanarySubsetName, "canarySubsetName"}, {cfg.StableSubsetName, "stableSubsetName"}} {
		if !found[f.name] {
			return fmt.Errorf("%w: it has no subset %q (trafficRouting.istio.destinationRule.%s); add the subset or fix the name", traffic.ErrRejected, f.name, f.field)
		}
	}
	return nil
}

// claim marks obj as managed by the rollout, refusing one another rollout
// manages.
func (p *plan) claim(obj *unstructured.Unstructured) error {
	ann := obj.GetAnnotations()
	if owner := ann[spec.AnnotationManagedBy]; owner != "" && owner != p.ref.Name {
		return fmt.Errorf("%w: it is managed by rollout %q (annotation %s); give rollout %q its own, or remove the annotation if %q no longer uses it",
			traffic.ErrRejected, owner, spec.AnnotationManagedBy, p.ref.Name, owner)
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[spec.AnnotationManagedBy] = p.ref.Name
	obj.SetAnnotations(ann)
	return nil
}

// number reads a JSON number of an unstructured object.
func number(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case float64:
		return int64(n), n == float64(int64(n))
	case int32:
		return int64(n), true
	case int:
		return int64(n), true
	}
	return 0, false
}
