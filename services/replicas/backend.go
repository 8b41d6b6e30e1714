package replicas

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// Errors a Backend returns, besides tasks.ErrStale, which every worker
// shares; wrapped with the detail. Callers use errors.Is.
var (
	// ErrUnavailable means ctx ended before every revision was available
	// at its count. The message names each revision that was short and why.
	ErrUnavailable = errors.New("not available")
	// ErrInvalidTemplate means a pod template asks for something the
	// backend cannot run (a verdict on the task, not an infrastructure
	// failure: applying it again cannot succeed).
	ErrInvalidTemplate = errors.New("pod template cannot run on this platform")
	// ErrGone means what the task needs is gone for good: the rollout's
	// namespace no longer exists or is being deleted, so a revision that
	// must run cannot be created (a verdict, as ErrInvalidTemplate: the
	// task finishes Failed with the reason instead of being retried).
	ErrGone = errors.New("namespace gone")
)

// Backend runs the revisions of rollouts: Kubernetes ReplicaSets, or OS
// processes on the local platform (package local). The service calls Start
// once, then Apply from any number of goroutines, then Close.
type Backend interface {
	// Start begins managing workloads: it takes over what an earlier run
	// of the backend left (adopting pods it can manage, replacing or
	// stopping the rest) and returns once Apply may be called.
	Start(ctx context.Context) error

	// Apply makes the rollout's revisions run the desired replica counts
	// and returns when each listed revision is available at its count,
	// with no other pods left (a revision at 0 has none), or when ctx
	// ends. The desired state is recorded before Apply waits and stays in
	// force after it returns, whatever the outcome; revisions not listed
	// are left alone. Idempotent: applying the same seq again changes
	// nothing and waits again.
	//
	// A revision with RestartAt has its pods started before it replaced,
	// at most MaxUnavailable (at least 1) unavailable at once, and Apply
	// returns once every pod started at or after RestartAt; pods started
	// later are left alone. With Scale.Remove every revision of the
	// rollout is removed and Apply returns once they are gone; the rollout
	// is then forgotten, seq guard included (see tasks.Scale.Remove).
	//
	// It returns each listed revision's status (also with ErrUnavailable),
	// and an error wrapping tasks.ErrStale when seq is lower than a seq
	// applied for the rollout or when a higher seq is applied while it
	// waits; ErrUnavailable when ctx ends first; ErrInvalidTemplate when a
	// template cannot run (nothing is applied then); ErrGone when the
	// rollout's namespace is gone or being deleted and a revision that must
	// run cannot be created (one that must not run counts as scaled down,
	// and Apply succeeds). Any other error is
	// infrastructure: the same call may succeed later.
	Apply(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error)

	// Close stops managing workloads and returns once the backend's own
	// goroutines are done, or ctx ends. It may be called after a failed
	// Start, or without Start. Whether the workloads keep running
	// is the backend's documented choice (Kubernetes pods do; local
	// processes do unless configured otherwise).
	Close(ctx context.Context) error
}
