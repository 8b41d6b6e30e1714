// Package smi is the SMI traffic router: it splits a canary's traffic with
// an SMI TrafficSplit between the canary and stable Services, as Argo
// Rollouts' SMI router does, so that a TrafficSplit Argo wrote looks the
// same when Sluice writes it.
//
// # What it writes
//
// One TrafficSplit in the rollout's namespace, named
// trafficRouting.smi.trafficSplitName or, when that is unset, after the
// rollout:
//
//	apiVersion: split.smi-spec.io/v1alpha3   # Config.APIVersion
//	kind: TrafficSplit
//	metadata:
//	  annotations:
//	    argo-rollouts.argoproj.io/managed-by-rollouts: <rollout>
//	    traffic.sluice.io/route-seq: "<seq>"
//	spec:
//	  service: <rootService, or stableService when unset>
//	  backends:
//	  - {service: <canaryService>, weight: <canary weight>}
//	  - {service: <experiment template's Service>, weight: <its weight>}  # each of route.Experiments
//	  - {service: <stableService>, weight: <maxTrafficWeight - canary weight - the templates' weights>}
//
// With API version v1alpha1 the weights are resource quantities ("30"), as
// Argo writes them. The router creates the TrafficSplit when it is missing
// and otherwise replaces its service and backends, keeping other fields
// (v1alpha3 matches). It refuses a TrafficSplit it did not create: one
// without the managed-by annotation naming the rollout, unless Argo
// Rollouts created it for a Rollout of the same name (a controller owner
// reference), which it adopts.
//
// SMI TrafficSplits split by weight only: a route with header or mirror
// routes is rejected.
package smi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/sluicehq/sluice/internal/kubens"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

// Group is the API group of TrafficSplits.
const Group = "split.smi-spec.io"

// DefaultAPIVersion is the version of Group the router writes unless
// configured otherwise.
const DefaultAPIVersion = "v1alpha3"

// Config configures the router.
type Config struct {
	// Client reads, creates and writes TrafficSplits.
	Client dynamic.Interface
	// APIVersion is the version of split.smi-spec.io to write: v1alpha1,
	// v1alpha2 or v1alpha3 (the default); the one the mesh serves.
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
		errs = append(errs, errors.New("smi router: a dynamic Kubernetes client is required"))
	}
	if !slices.Contains([]string{"v1alpha1", "v1alpha2", "v1alpha3"}, c.APIVersion) {
		errs = append(errs, fmt.Errorf("smi router: API version %q is not one of v1alpha1, v1alpha2, v1alpha3", c.APIVersion))
	}
	return errors.Join(errs...)
}

// Router writes TrafficSplits. It is safe for concurrent use.
type Router struct {
	client dynamic.Interface
	gvr    schema.GroupVersionResource
	log    *slog.Logger
}

var _ traffic.Router = (*Router)(nil)

// RoutesExperiments reports that Apply gives experiment templates their
// weights (route.Experiments), as backends of their own.
func (r *Router) RoutesExperiments() bool { return true }

// Type returns "smi".
func (r *Router) Type() string { return "smi" }

// New returns a router for cfg, with defaults filled.
func New(cfg Config) (*Router, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Router{
		client: cfg.Client,
		gvr:    schema.GroupVersionResource{Group: Group, Version: cfg.APIVersion, Resource: "trafficsplits"},
		log:    cfg.Logger,
	}, nil
}

// Apply creates or updates the rollout's TrafficSplit and returns the
// canary weight read back from it. Blue/green routes return 0 and change
// nothing. A route without trafficRouting.smi, with header or mirror routes,
// or whose TrafficSplit belongs to something else, is rejected; a
// TrafficSplit written by a later route makes the route stale.
//
// A route with Remove (the rollout is deleted) deletes the rollout's
// TrafficSplit, which the router created.
func (r *Router) Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
	if route.Strategy == spec.StrategyBlueGreen {
		return 0, nil
	}
	if route.Remove {
		return 0, r.remove(ctx, ref, seq, route)
	}
	split, err := r.desired(ref, route)
	if err != nil {
		return 0, err
	}
	name := split.GetName()
	what := fmt.Sprintf("TrafficSplit %s/%s", ref.Namespace, name)
	client := r.client.Resource(r.gvr).Namespace(ref.Namespace)

	stored, err := r.create(ctx, client, what, seq, split)
	if err != nil {
		return 0, err
	}
	if stored == nil {
		stored, err = guard.Update(ctx, guard.Dynamic(client), name, what, seq, func(ts *unstructured.Unstructured) error {
			if err := owned(ts, ref.Name); err != nil {
				return err
			}
			ann := ts.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[spec.AnnotationManagedBy] = ref.Name
			ts.SetAnnotations(ann)
			tspec, _ := ts.Object["spec"].(map[string]any)
			if tspec == nil {
				tspec = map[string]any{}
				ts.Object["spec"] = tspec
			}
			want := split.Object["spec"].(map[string]any)
			tspec["service"], tspec["backends"] = want["service"], want["backends"]
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	weight, err := weightIn(stored, route.CanaryService, route.StableService, int64(route.TrafficRouting.MaxWeight()))
	if err != nil {
		return 0, fmt.Errorf("read back %s: %w", what, err)
	}
	r.log.DebugContext(ctx, "smi route applied", "rollout", ref.String(), "seq", seq, "weight", weight)
	return int32(weight), nil
}

// desired is the TrafficSplit route asks for, without the seq.
func (r *Router) desired(ref events.Ref, route tasks.Route) (*unstructured.Unstructured, error) {
	tr := route.TrafficRouting
	if tr == nil || tr.SMI == nil {
		return nil, fmt.Errorf("%w: the route has no trafficRouting.smi, and this traffic service runs the SMI router", traffic.ErrRejected)
	}
	for _, h := range route.HeaderRoutes {
		if len(h.Match) > 0 {
			return nil, fmt.Errorf("%w: header route %q: an SMI TrafficSplit splits by weight only; remove the setHeaderRoute steps, or route with Istio or the Gateway API plugin", traffic.ErrRejected, h.Name)
		}
	}
	for _, m := range route.MirrorRoutes {
		if len(m.Match) > 0 {
			return nil, fmt.Errorf("%w: mirror route %q: an SMI TrafficSplit cannot mirror requests; remove the setMirrorRoute steps, or route with Istio", traffic.ErrRejected, m.Name)
		}
	}
	switch {
	case route.CanaryService == "" || route.StableService == "":
		return nil, fmt.Errorf("%w: canaryService and stableService are required with trafficRouting.smi", traffic.ErrRejected)
	case route.CanaryService == route.StableService:
		return nil, fmt.Errorf("%w: canaryService and stableService are both %q; a TrafficSplit needs two backends", traffic.ErrRejected, route.CanaryService)
	}
	if err := traffic.ExperimentServices(route); err != nil {
		return nil, err
	}
	stableWeight, err := traffic.StableWeight(route, tr.MaxWeight())
	if err != nil {
		return nil, err
	}
	name := tr.SMI.TrafficSplitName
	if name == "" {
		name = ref.Name
	}
	root := tr.SMI.RootService
	if root == "" {
		root = route.StableService
	}
	backend := func(service string, weight int32) any {
		b := map[string]any{"service": service, "weight": int64(weight)}
		if r.gvr.Version == "v1alpha1" {
			// v1alpha1 weights are resource quantities, written as Argo's
			// SMI client writes them.
			b["weight"] = resource.NewQuantity(int64(weight), resource.DecimalExponent).String()
		}
		return b
	}
	// Argo's order: the canary, each experiment template, the stable.
	backends := []any{backend(route.CanaryService, route.CanaryWeight)}
	for _, e := range route.Experiments {
		backends = append(backends, backend(e.Pods.Service, e.Weight))
	}
	backends = append(backends, backend(route.StableService, stableWeight))
	split := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{
			"service":  root,
			"backends": backends,
		},
	}}
	split.SetAPIVersion(Group + "/" + r.gvr.Version)
	split.SetKind("TrafficSplit")
	split.SetNamespace(ref.Namespace)
	split.SetName(name)
	split.SetAnnotations(map[string]string{spec.AnnotationManagedBy: ref.Name})
	return split, nil
}

// create creates split, recording seq, when no TrafficSplit of its name
// exists. It returns nil, nil when one exists (or was created meanwhile),
// for the caller to update it.
func (r *Router) create(ctx context.Context, client dynamic.ResourceInterface, what string, seq int64, split *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	_, err := client.Get(ctx, split.GetName(), metav1.GetOptions{})
	if err == nil {
		return nil, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	split = split.DeepCopy()
	ann := split.GetAnnotations()
	ann[guard.SeqAnnotation] = strconv.FormatInt(seq, 10)
	split.SetAnnotations(ann)
	created, err := client.Create(ctx, split, metav1.CreateOptions{FieldManager: "sluice-traffic"})
	switch {
	case err == nil:
		return created, nil
	case apierrors.IsAlreadyExists(err):
		return nil, nil
	case kubens.Gone(err):
		return nil, fmt.Errorf("%w: cannot create %s: its namespace is gone or being deleted (%v)", traffic.ErrRejected, what, err)
	case apierrors.IsNotFound(err):
		// Creating in a resource the server does not serve is a 404 too.
		return nil, fmt.Errorf("%w: cannot create %s: the cluster does not serve %s TrafficSplits; install the SMI CRDs, or configure the API version the mesh serves (%v)",
			traffic.ErrRejected, what, split.GetAPIVersion(), err)
	}
	return nil, fmt.Errorf("create %s: %w", what, err)
}

// owned refuses a TrafficSplit that is not the rollout's.
func owned(ts *unstructured.Unstructured, rollout string) error {
	switch owner := ts.GetAnnotations()[spec.AnnotationManagedBy]; {
	case owner == rollout:
		return nil
	case owner != "":
		return fmt.Errorf("%w: it is managed by rollout %q; set trafficRouting.smi.trafficSplitName to give rollout %q its own", traffic.ErrRejected, owner, rollout)
	}
	if c := metav1.GetControllerOf(ts); c != nil && c.Kind == "Rollout" && c.Name == rollout {
		return nil // Argo Rollouts created it for this rollout
	}
	return fmt.Errorf("%w: it was not created for rollout %q; delete it for the router to create its own, set trafficRouting.smi.trafficSplitName, or add annotation %s: %s to hand it over",
		traffic.ErrRejected, rollout, spec.AnnotationManagedBy, rollout)
}

// weightIn reads the canary weight in effect in a stored TrafficSplit, in
// units of max: the canary backend's share of all the backends' weights
// (the stable's, the canary's and any experiment template's).
func weightIn(ts *unstructured.Unstructured, canarySvc, stableSvc string, max int64) (int64, error) {
	backends, _, err := unstructured.NestedSlice(ts.Object, "spec", "backends")
	if err != nil {
		return 0, err
	}
	milli := map[string]int64{}
	var total int64
	for _, b := range backends {
		bm, _ := b.(map[string]any)
		service, _ := bm["service"].(string)
		w, err := quantity(bm["weight"])
		if err != nil {
			return 0, fmt.Errorf("backend %q: %w", service, err)
		}
		milli[service] = w
		total += w
	}
	c, okC := milli[canarySvc]
	_, okS := milli[stableSvc]
	if !okC || !okS {
		return 0, fmt.Errorf("backends %v lack the canary %q or the stable %q", backends, canarySvc, stableSvc)
	}
	if total == 0 {
		return 0, nil
	}
	return (2*c*max + total) / (2 * total), nil
}

// quantity reads a backend weight, a number or a resource quantity, in
// thousandths.
func quantity(v any) (int64, error) {
	switch w := v.(type) {
	case nil:
		return 0, nil
	case int64:
		return w * 1000, nil
	case float64:
		return int64(w * 1000), nil
	case string:
		q, err := resource.ParseQuantity(w)
		if err != nil {
			return 0, err
		}
		return q.MilliValue(), nil
	}
	return 0, fmt.Errorf("weight %v is neither a number nor a quantity", v)
}

// remove deletes the TrafficSplit of a removed rollout, unless it is not
// the rollout's.
func (r *Router) remove(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) error {
	name := ref.Name
	if tr := route.TrafficRouting; tr != nil && tr.SMI != nil && tr.SMI.TrafficSplitName != "" {
		name = tr.SMI.TrafficSplitName
	}
	what := fmt.Sprintf("TrafficSplit %s/%s", ref.Namespace, name)
	return guard.Delete(ctx, guard.Dynamic(r.client.Resource(r.gvr).Namespace(ref.Namespace)), name, what, seq,
		func(ts *unstructured.Unstructured) bool { return owned(ts, ref.Name) == nil })
}
