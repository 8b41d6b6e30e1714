package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/internal/worker"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Source is the CloudEvents source of the service's task reports.
const Source = "/sluice/traffic"

// Config configures the traffic service. The zero value plus Defaults is a
// working configuration.
type Config struct {
	// Bus is the stream configuration to provision at start-up.
	Bus events.BusConfig
	// Consumer tunes the durable consumer worker-traffic; Stream, Durable
	// and FilterSubjects are set by the service.
	Consumer events.ConsumerConfig
	// ApplyTimeout bounds one Router.Apply (default 30s). A route not in
	// effect by then is retried.
	ApplyTimeout time.Duration
	// ID names this process in task reports (default hostname:pid).
	ID string
	// StartedAfter is how long a task runs before it is reported started
	// (default worker.DefaultStartedAfter; negative: at once). See
	// worker.Config.
	StartedAfter time.Duration
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics records router operations and task outcomes (default
	// telemetry.Default()).
	Metrics *telemetry.Metrics
	// StopTimeout bounds how long a stopping replica waits for the tasks
	// in progress, and then for the router to close (a proxy draining its
	// requests), each (default daemon.DefaultStopTimeout).
	StopTimeout time.Duration
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Bus.Defaults()
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Default()
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = daemon.DefaultStopTimeout
	}
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	errs := []error{c.Bus.Validate()}
	if c.ApplyTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: traffic apply timeout %s must be positive", events.ErrInvalidConfig, c.ApplyTimeout))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: traffic stop timeout %s must not be negative", events.ErrInvalidConfig, c.StopTimeout))
	}
	cc := c.Consumer
	cc.Stream, cc.Durable = events.StreamTasks, worker.Durable(tasks.ServiceTraffic)
	cc.Defaults()
	errs = append(errs, cc.Validate())
	return errors.Join(errs...)
}

// Service is one replica of the traffic service.
type Service struct {
	client *events.Client
	router Router
	cfg    Config
	log    *slog.Logger
	w      *worker.Worker
	lc     daemon.Lifecycle
}

var _ daemon.Service = (*Service)(nil)

// Needs is what the traffic service uses on the bus; a router may need
// more (localproxy.Needs).
var Needs = worker.Needs(tasks.ServiceTraffic)

// New returns a service that applies routes with router. Call Run to start
// it.
func New(client *events.Client, router Router, cfg Config) (*Service, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil || router == nil {
		return nil, fmt.Errorf("%w: the traffic service needs a bus client and a router", events.ErrInvalidConfig)
	}
	s := &Service{client: client, router: router, cfg: cfg, log: cfg.Logger}
	w, err := worker.New(client, worker.Config{
		Service:      tasks.ServiceTraffic,
		Source:       Source,
		Executors:    map[string]worker.Executor{tasks.KindRoute: s.execute},
		Consumer:     cfg.Consumer,
		StartedAfter: cfg.StartedAfter,
		ID:           cfg.ID,
		Logger:       cfg.Logger,
		Metrics:      cfg.Metrics,
	})
	if err != nil {
		return nil, err
	}
	s.w = w
	return s, nil
}

// Ready reports whether the service is taking tasks and its router, when
// it has a lifecycle, is started.
func (s *Service) Ready() bool {
	if l, ok := s.router.(Lifecycle); ok && !l.Ready() {
		return false
	}
	return s.lc.Ready() && s.w.Ready()
}

// Run provisions the streams, starts the router when it has a Lifecycle,
// takes traffic.route tasks until ctx ends, then lets the tasks in progress
// finish and closes the router (each up to Config.StopTimeout), and
// returns nil.
func (s *Service) Run(ctx context.Context) error {
	return s.lc.Run(ctx, daemon.Plan{
		Name: "traffic service", Client: s.client, Bus: s.cfg.Bus, Needs: Needs,
		StopTimeout: s.cfg.StopTimeout, Log: s.log, Start: s.start,
	})
}

// start starts the router before taking tasks; it closes after the tasks in
// progress are done.
func (s *Service) start(ctx context.Context, r *daemon.Running) error {
	if l, ok := s.router.(Lifecycle); ok {
		r.OnStop(daemon.StopFunc(l.Close))
		if !l.Ready() { // not started already by whoever made it
			if err := l.Start(ctx); err != nil {
				return err
			}
		}
	}
	if err := s.w.Start(ctx); err != nil {
		return err
	}
	r.OnStop(s.w)
	return nil
}

// execute carries out one traffic.route task: a verdict (Succeeded, Failed,
// Stale) is reported; an infrastructure error is returned for a retry.
func (s *Service) execute(ctx context.Context, t tasks.Task) (tasks.Finished, error) {
	if t.Route == nil {
		return tasks.Finished{Outcome: tasks.OutcomeFailed, Message: fmt.Sprintf("task %s carries no route", t.ID)}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	begun := time.Now()
	weight, err := s.router.Apply(ctx, t.Ref, t.Seq, *t.Route)
	s.cfg.Metrics.RouterOperation(s.router.Type(), routerResult(err), time.Since(begun))
	switch {
	case err == nil:
		fin := tasks.Finished{Outcome: tasks.OutcomeSucceeded}
		if t.Route.Strategy != spec.StrategyBlueGreen {
			fin.CanaryWeight = &weight
		}
		return fin, nil
	case errors.Is(err, tasks.ErrStale):
		return tasks.Finished{Outcome: tasks.OutcomeStale, Message: err.Error()}, nil
	case errors.Is(err, ErrRejected):
		return tasks.Finished{Outcome: tasks.OutcomeFailed, Message: err.Error()}, nil
	}
	return tasks.Finished{}, fmt.Errorf("apply route of %s (seq %d): %w", t.Ref, t.Seq, err)
}

// routerResult is the result label of a Router.Apply.
func routerResult(err error) string {
	switch {
	case err == nil:
		return "applied"
	case errors.Is(err, tasks.ErrStale):
		return "stale"
	case errors.Is(err, ErrRejected):
		return "rejected"
	}
	return "error"
}
