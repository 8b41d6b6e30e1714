package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/pkg/events"
)

// DefaultStopTimeout is how long a stopping service waits for each of its
// parts (consumers, workers, proxies) to finish the work in progress
// (--stop-timeout).
const DefaultStopTimeout = 30 * time.Second

// Stopper is a running part of a service that stops on request and waits
// for its work in progress, up to ctx: an events.Subscription, a
// worker.Worker.
type Stopper interface {
	Stop(ctx context.Context) error
}

// StopFunc makes a function a Stopper.
type StopFunc func(ctx context.Context) error

// Stop calls f.
func (f StopFunc) Stop(ctx context.Context) error { return f(ctx) }

// Plan is what one service needs to run: the bus to provision, the buckets
// it owns, and how to start its parts once those are open.
type Plan struct {
	// Name names the service in logs ("orchestrator").
	Name string
	// Client is the service's bus connection.
	Client *events.Client
	// Bus is the stream and bucket configuration to provision.
	Bus events.BusConfig
	// Needs declares the buckets the service owns; Lifecycle.Run
	// provisions and opens them. Its consumers and publications are for
	// the permissions (see events.Needs).
	Needs events.Needs
	// StopTimeout bounds the stop of each part (default
	// DefaultStopTimeout).
	StopTimeout time.Duration
	// Log receives the lifecycle's logs (default slog.Default()).
	Log *slog.Logger
	// Clock, when set, is the bus's time the service decides by: it is
	// synced before Start, so that no decision reads an unsynced clock,
	// and kept synced until the service stops.
	Clock *clock.Bus
	// Start starts the service's parts on the opened buckets and registers
	// each with Running.OnStop. When it returns an error, what it
	// registered is stopped.
	Start func(ctx context.Context, r *Running) error
}

// Running is a service between start and stop: its open buckets and the
// parts to stop when it ends.
type Running struct {
	client  *events.Client
	buckets map[string]jetstream.KeyValue
	stops   []Stopper
}

// Bucket returns the open bucket name, one of Plan.Needs.Buckets. It
// panics for a bucket the service did not declare: that is a bug in the
// service, not a condition at run time.
func (r *Running) Bucket(name string) jetstream.KeyValue {
	kv, ok := r.buckets[name]
	if !ok {
		panic(fmt.Sprintf("daemon: bucket %s was not declared in the service's Needs", name))
	}
	return kv
}

// OnStop registers a part to stop when the service ends. Parts stop in the
// reverse order of registration, each within the stop timeout.
func (r *Running) OnStop(s Stopper) { r.stops = append(r.stops, s) }

// Consume starts a durable consumer (events.Client.Consume) and registers
// it to stop when the service ends.
func (r *Running) Consume(ctx context.Context, cc events.ConsumerConfig, h events.Handler) error {
	sub, err := r.client.Consume(ctx, cc, h)
	if err != nil {
		return err
	}
	r.OnStop(sub)
	return nil
}

// Lifecycle is the start, readiness and stop every service shares. A
// service embeds one and calls Run from its own Run; its Ready reports
// Lifecycle.Ready (and whatever else it checks). The zero value is ready
// for use.
type Lifecycle struct {
	ready atomic.Bool
}

// Ready reports whether the service's parts are started and it has not
// begun to stop.
func (l *Lifecycle) Ready() bool { return l.ready.Load() }

// Run provisions the streams and the buckets of p.Needs, opens the
// buckets, starts the service with p.Start, reports ready, and blocks until
// ctx ends. Then it reports not ready, stops every registered part (each
// within p.StopTimeout; one that does not stop in time is logged) and
// returns nil. An error before the service is ready is returned after
// stopping what had started; a service binary (Run) then builds the
// service again and runs it after a backoff when the error says the bus
// did not answer (events.Unavailable), and exits for any other.
func (l *Lifecycle) Run(ctx context.Context, p Plan) error {
	if p.Log == nil {
		p.Log = slog.Default()
	}
	if p.StopTimeout <= 0 {
		p.StopTimeout = DefaultStopTimeout
	}
	var cfgs []jetstream.KeyValueConfig
	for _, b := range p.Needs.Buckets {
		cfg := p.Bus.Bucket(b.Name, b.Description, b.History)
		cfg.TTL = b.TTL
		cfgs = append(cfgs, cfg)
	}
	if err := p.Client.Provision(ctx, p.Bus, cfgs...); err != nil {
		return err
	}
	r := &Running{client: p.Client, buckets: map[string]jetstream.KeyValue{}}
	for _, b := range p.Needs.Buckets {
		kv, err := p.Client.JetStream().KeyValue(ctx, b.Name)
		if err != nil {
			return fmt.Errorf("open bucket %s: %w", b.Name, err)
		}
		r.buckets[b.Name] = kv
	}
	if p.Clock != nil {
		stop, err := p.Clock.Start(ctx)
		if err != nil {
			return fmt.Errorf("sync the clock to the bus: %w", err)
		}
		// Registered first, so stopped last: the service's parts may
		// read the clock until they stop.
		r.OnStop(StopFunc(func(context.Context) error { stop(); return nil }))
	}
	if err := p.Start(ctx, r); err != nil {
		return errors.Join(err, stopAll(r.stops, p))
	}
	l.ready.Store(true)
	p.Log.Info(p.Name + " running")

	<-ctx.Done()
	l.ready.Store(false)
	if err := stopAll(r.stops, p); err != nil {
		p.Log.Warn("work in progress did not finish in time", "error", err, "stop_timeout", p.StopTimeout)
	}
	return nil
}

// stopAll stops parts in reverse order, each within p.StopTimeout.
func stopAll(parts []Stopper, p Plan) error {
	var errs []error
	for i := len(parts) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), p.StopTimeout)
		errs = append(errs, parts[i].Stop(ctx))
		cancel()
	}
	return errors.Join(errs...)
}
