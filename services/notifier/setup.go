package notifier

import (
	"context"
	"net/http"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Planner decides what one status event notifies: the messages to queue,
// one per trigger condition and destination, each with a stable ID (the
// same event planned again gives the same IDs). prev is the rollout's
// snapshot in the previous status event the notifier planned, nil for the
// first. A message with Once set is queued only if no other message
// claimed that oncePer key first. An error is retried with backoff;
// wrapped with events.Permanent it dead-letters the status event.
type Planner interface {
	Plan(ctx context.Context, ev events.Event, data events.StatusData, prev *events.Snapshot) ([]notify.Message, error)
}

// PlannerFunc makes a function a Planner.
type PlannerFunc func(ctx context.Context, ev events.Event, data events.StatusData, prev *events.Snapshot) ([]notify.Message, error)

// Plan calls f.
func (f PlannerFunc) Plan(ctx context.Context, ev events.Event, data events.StatusData, prev *events.Snapshot) ([]notify.Message, error) {
	return f(ctx, ev, data, prev)
}

// Setup is one loaded configuration, ready to use: what to notify, the
// senders of its services by name, and the chat endpoints and CDEvents
// output it configures.
type Setup struct {
	Planner Planner
	// Senders are the configured services' senders, by service name.
	Senders map[string]notify.Sender
	// Chat serves POST /slack/commands, /slack/interactions and
	// /teams/messages; nil answers 404.
	Chat http.Handler
	// CDEvents handles each status event for the CDEvents output; nil
	// when none is configured.
	CDEvents events.Handler

	// closers release what the setup holds (the chat answers waiting)
	// once it is replaced or the notifier stops.
	closers []func()
}

// close releases what the setup holds.
func (s *Setup) close() {
	if s == nil {
		return
	}
	for _, c := range s.closers {
		c()
	}
}

// ConfigSource gives the notifier its configuration and its changes.
type ConfigSource interface {
	// Load returns the configuration as it is now. An error stops the
	// notifier from starting.
	Load(ctx context.Context) (*Setup, error)
	// Watch calls apply with each changed configuration that loads, until
	// ctx ends. One that does not load is logged with every problem, and
	// the notifier keeps the one it has.
	Watch(ctx context.Context, apply func(*Setup))
}

// Fixed is a configuration that never changes.
type Fixed struct{ Setup *Setup }

// Load returns f.Setup.
func (f Fixed) Load(context.Context) (*Setup, error) { return f.Setup, nil }

// Watch waits for ctx to end.
func (f Fixed) Watch(ctx context.Context, _ func(*Setup)) { <-ctx.Done() }
