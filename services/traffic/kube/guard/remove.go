package guard

import (
	"context"
	"errors"
	"log/slog"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/traffic"
)

// ApplyFunc is a router's Apply.
type ApplyFunc func(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error)

// RemoveFrom takes a removed rollout (route.Remove) out of objects that a
// router edits but does not own (a VirtualService, an HTTPRoute, an ALB
// Ingress): it applies, with apply, the route with every weight back on the
// stable Service and without header, mirror or experiment routes, so the objects route
// as they would without the rollout, and the objects lose the seq
// annotation (the writes of Update and UpdateAll within apply release
// them, as Release does), so a rollout of the same name created later
// starts fresh. A rejection (the objects are gone, or no longer have the
// rollout's routes) leaves nothing to take out and is logged; a higher seq
// on an object is stale, as for any route.
func RemoveFrom(ctx context.Context, ref events.Ref, seq int64, route tasks.Route, apply ApplyFunc, log *slog.Logger) error {
	ctx = context.WithValue(ctx, releaseKey{}, true)
	route.Remove = false
	route.CanaryWeight = 0
	route.HeaderRoutes, route.MirrorRoutes, route.Experiments = nil, nil, nil
	_, err := apply(ctx, ref, seq, route)
	if errors.Is(err, traffic.ErrRejected) {
		log.InfoContext(ctx, "removed rollout: nothing to take out", "rollout", ref.String(), "seq", seq, "reason", err.Error())
		return nil
	}
	return err
}

// releaseKey marks the context of a RemoveFrom.
type releaseKey struct{}

// releasing reports whether writes under ctx release their objects.
func releasing(ctx context.Context) bool {
	v, _ := ctx.Value(releaseKey{}).(bool)
	return v
}
