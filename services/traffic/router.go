package traffic

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// Sentinel errors of Router.Apply, besides tasks.ErrStale, which every
// worker shares. Routers wrap them with what happened; callers test them
// with errors.Is.
var (
	// ErrRejected means the router cannot put the route in effect as given,
	// and trying again will not help until something the user controls
	// changes (a missing annotation, an address in use, a match the router
	// does not support). The error's text is shown to the user, so it says
	// what to change. The task finishes Failed with it.
	ErrRejected = errors.New("route rejected")
)

// Router puts the routing of rollouts in effect on one kind of router: the
// local platform's proxy (package localproxy), Kubernetes Service selectors,
// NGINX, ALB, Istio, SMI or Gateway API. A router that does nothing and
// reports the requested weight is a valid implementation.
//
// Implementations are safe for concurrent use.
type Router interface {
	// Apply puts route, the complete desired routing of the rollout ref,
	// in effect and returns the canary weight now in effect, in units of
	// route.TrafficRouting.MaxWeight() (0 for blue/green, which has no
	// weights).
	//
	// Apply is idempotent: applying the same route twice has the effect of
	// applying it once. It compares seq with the highest seq it has applied
	// for ref atomically with the effect: a lower seq changes nothing and
	// returns an error wrapping tasks.ErrStale; an equal seq is applied again (a
	// redelivered task).
	//
	// An error wrapping ErrRejected means the route cannot be put in effect
	// as given, and says what the user should change. Any other error is
	// infrastructure (an API server or the bus unavailable, ctx done): the
	// caller retries, and the effect is either unchanged or the whole route.
	Apply(ctx context.Context, ref events.Ref, seq int64, route tasks.Route) (int32, error)

	// Type names the kind of router, as its metrics are labelled:
	// "localproxy", "kube". It is constant for a Router.
	Type() string
}

// Lifecycle is implemented by a Router with listeners or watches of its own
// (the local proxy). The service starts it (unless it is started already)
// before taking tasks and closes it after the tasks in progress are done,
// so its start and stop are not the business of whoever composes the
// service.
type Lifecycle interface {
	// Start makes the router ready for Apply; ctx bounds the start only.
	Start(ctx context.Context) error
	// Ready reports whether it is started and not closed.
	Ready() bool
	// Close stops it, waiting for the work in progress (requests in
	// flight) up to ctx. It may be called after a failed Start.
	Close(ctx context.Context) error
}
