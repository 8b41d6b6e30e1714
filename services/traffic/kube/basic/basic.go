// Package basic is the Kubernetes router every rollout uses: it points the
// rollout's Services at revisions by adding rollouts-pod-template-hash to
// their selectors, as Argo Rollouts does.
//
//   - canary: stableService selects the stable pods and canaryService the
//     canary pods. Without trafficRouting the split between them is the
//     replica ratio of a Service that selects both (the user's own), so the
//     weight reported is the one requested; with trafficRouting a mesh
//     router splits between these two Services.
//   - blue/green: activeService selects the active pods and previewService
//     the preview pods, or the active pods when there is no preview.
//
// The Services must exist; the router only edits their selectors and marks
// them with spec.AnnotationManagedBy, refusing a Service another rollout manages.
package basic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube/guard"
)

// Config configures the router.
type Config struct {
	// Client reads and writes Services.
	Client kubernetes.Interface
	// Logger receives the router's logs (default slog.Default()).
	Logger *slog.Logger
}

// Router edits Service selectors. It is safe for concurrent use.
type Router struct {
	client kubernetes.Interface
	log    *slog.Logger
	// written remembers the Services as the router last wrote them, so
	// that the next route starts from them rather than reading them.
	written *guard.Memory[*corev1.Service]
}

var _ traffic.Router = (*Router)(nil)

// Type returns "basic".
func (r *Router) Type() string { return "basic" }

// New returns a router. It returns an error when Client is nil.
func New(cfg Config) (*Router, error) {
	if cfg.Client == nil {
		return nil, errors.New("basic router: a Kubernetes client is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Router{client: cfg.Client, log: cfg.Logger, written: guard.NewMemory[*corev1.Service](0)}, nil
}

// selection is one Service and the pod hash it must select.
type selection struct {
	service, hash string
}

// selections lists the Services route points and the pod hash each must
// select, skipping Services the route does not name and revisions it does
// not have yet.
func selections(route tasks.Route) []selection {
	var out []selection
	add := func(service, hash string) {
		if service != "" && hash != "" {
			out = append(out, selection{service, hash})
		}
	}
	if route.Strategy == spec.StrategyBlueGreen {
		add(route.ActiveService, route.ActiveHash)
		preview := route.PreviewHash
		if preview == "" {
			preview = route.ActiveHash
		}
		add(route.PreviewService, preview)
		return out
	}
	add(route.StableService, route.StableHash)
	canary := route.CanaryHash
	if canary == "" {
		canary = route.StableHash
	}
	add(route.CanaryService, canary)
	return out
}

// Apply points each Service of the route at its revision and returns the
// requested canary weight (0 for blue/green): Services carry no weights.
// It returns an error wrapping traffic.ErrRejected when a Service is
// missing or managed by another rollout, and tasks.ErrStale when a
// Service was written by a later route.
//
// The stable Service (the active one for blue/green; the canary Service
// when the rollout names no stable Service) is the route's anchor
// (guard.UpdateAnchored): it is written on every route, carries the
// route's seq and, in SelectorsAnnotation, the pod hash the route wants of
// each other Service, which is written only when its selector changes.
//
// A route with Remove (the rollout is deleted) leaves the Services, which
// are the user's, and their selectors; it only releases them (the
// managed-by and seq annotations go) so that a rollout of the same name
// created later can take them again.
func (r *Router) Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
	services := r.written.Client(ref.Namespace, r.client.CoreV1().Services(ref.Namespace))
	if route.Remove {
		return 0, r.release(ctx, services, ref, seq, route)
	}
	sel := selections(route)
	if len(sel) == 0 {
		return route.CanaryWeight, nil
	}
	anchor := route.StableService
	if route.Strategy == spec.StrategyBlueGreen {
		anchor = route.ActiveService
	}
	if anchor == "" {
		anchor = sel[0].service
	}
	var anchorHash string
	var others []selection
	for _, s := range sel {
		if s.service == anchor {
			anchorHash = s.hash
			continue
		}
		others = append(others, s)
	}
	change := func(s selection) guard.Change[*corev1.Service] {
		return guard.Change[*corev1.Service]{Client: services, Name: s.service, What: what(ref, s.service), Mutate: point(ref, s.hash)}
	}
	a := guard.Anchored[*corev1.Service]{
		Anchor: guard.Change[*corev1.Service]{Client: services, Name: anchor, What: what(ref, anchor), Mutate: func(svc *corev1.Service) error {
			if err := point(ref, anchorHash)(svc); err != nil {
				return err
			}
			svc.Annotations[SelectorsAnnotation] = formatSelectors(others)
			return nil
		}},
		Restore: func(svc *corev1.Service) []guard.Change[*corev1.Service] {
			var out []guard.Change[*corev1.Service]
			for _, s := range parseSelectors(svc.Annotations[SelectorsAnnotation]) {
				out = append(out, change(s))
			}
			return out
		},
	}
	for _, s := range others {
		a.Others = append(a.Others, change(s))
	}
	if _, err := guard.UpdateAnchored(ctx, seq, a); err != nil {
		return 0, err
	}
	if route.Strategy == spec.StrategyBlueGreen {
		return 0, nil
	}
	return route.CanaryWeight, nil
}

// SelectorsAnnotation records, on a rollout's anchor Service, the pod hash
// the route that last wrote it wants of the rollout's other Services:
// "<service>=<hash>", comma-separated.
const SelectorsAnnotation = "traffic.sluice.io/route-selectors"

func formatSelectors(sel []selection) string {
	parts := make([]string, len(sel))
	for i, s := range sel {
		parts[i] = s.service + "=" + s.hash
	}
	return strings.Join(parts, ",")
}

// parseSelectors reads SelectorsAnnotation; what it cannot read is
// skipped (a repair then restores less, never something else).
func parseSelectors(v string) []selection {
	var out []selection
	for _, part := range strings.Split(v, ",") {
		service, hash, ok := strings.Cut(part, "=")
		if ok && service != "" && hash != "" {
			out = append(out, selection{service, hash})
		}
	}
	return out
}

func what(ref events.Ref, service string) string {
	return fmt.Sprintf("Service %s/%s", ref.Namespace, service)
}

// point returns the change that marks a Service as the rollout's and,
// unless hash is empty, makes it select the pods of hash.
func point(ref events.Ref, hash string) func(*corev1.Service) error {
	return func(svc *corev1.Service) error {
		if owner := svc.Annotations[spec.AnnotationManagedBy]; owner != "" && owner != ref.Name {
			return fmt.Errorf("%w: it is managed by rollout %q; give rollout %q its own Service", traffic.ErrRejected, owner, ref.Name)
		}
		if svc.Annotations == nil {
			svc.Annotations = map[string]string{}
		}
		svc.Annotations[spec.AnnotationManagedBy] = ref.Name
		if hash == "" {
			return nil
		}
		if svc.Spec.Selector == nil {
			svc.Spec.Selector = map[string]string{}
		}
		svc.Spec.Selector[spec.LabelPodTemplateHash] = hash
		return nil
	}
}

// release lets go of the Services of a removed rollout.
func (r *Router) release(ctx context.Context, services guard.Client[*corev1.Service], ref events.Ref, seq int64, route tasks.Route) error {
	seen := map[string]bool{}
	for _, name := range []string{route.StableService, route.CanaryService, route.ActiveService, route.PreviewService} {
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		what := fmt.Sprintf("Service %s/%s", ref.Namespace, name)
		err := guard.Release(ctx, services, name, what, seq, func(svc *corev1.Service) error {
			if svc.Annotations[spec.AnnotationManagedBy] != ref.Name {
				return guard.ErrLeave
			}
			delete(svc.Annotations, spec.AnnotationManagedBy)
			delete(svc.Annotations, SelectorsAnnotation)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
