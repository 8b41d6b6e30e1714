package traffic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	errs := []error{c.Bus.Validate()}
	if c.ApplyTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: traffic apply timeout %s must be positive", events.ErrInvalidConfig, c.ApplyTimeout))
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

	mu sync.Mutex
	w  *worker.Worker
}

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
	return &Service{client: client, router: router, cfg: cfg, log: cfg.Logger}, nil
}

// Ready reports whether the service is taking tasks.
func (s *Service) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w != nil && s.w.Ready()
}

// Run provisions the streams, takes traffic.route tasks until ctx ends, then
// lets the tasks in progress finish (up to 30s) and returns nil.
func (s *Service) Run(ctx context.Context) error {
	if err := s.client.Provision(ctx, s.cfg.Bus); err != nil {
		return err
	}
	w, err := worker.New(s.client, worker.Config{
		Service:      tasks.ServiceTraffic,
		Source:       Source,
		Executors:    map[string]worker.Executor{tasks.KindRoute: s.execute},
		Consumer:     s.cfg.Consumer,
		StartedAfter: s.cfg.StartedAfter,
		ID:           s.cfg.ID,
		Logger:       s.log,
		Metrics:      s.cfg.Metrics,
	})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
	s.log.Info("traffic service running", "consumer", worker.Durable(tasks.ServiceTraffic))

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Stop(sctx); err != nil {
		s.log.Warn("tasks in progress did not finish in time", "error", err)
	}
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
