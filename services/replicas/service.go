package replicas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/internal/worker"
	"github.com/sluicehq/sluice/pkg/events"
)

// Source is the CloudEvents source of everything the service publishes.
const Source = "/sluice/replicas"

// DefaultWait is Config.Wait's default: longer than Argo Rollouts' default
// progressDeadlineSeconds (600), so that the orchestrator's progress
// deadline, not this wait, decides that a revision failed to come up.
const DefaultWait = 15 * time.Minute

// Config configures the replicas service. The zero value plus Defaults is a
// working configuration.
type Config struct {
	// Bus is the stream and bucket configuration to provision.
	Bus events.BusConfig
	// Tasks tunes the consumer of scale tasks (worker-replicas); Stream,
	// Durable and FilterSubjects are set by the worker.
	Tasks events.ConsumerConfig
	// Wait bounds how long a scale task waits for its revisions to become
	// available before it is reported Failed with the reason (default
	// DefaultWait). It counts from the first delivery of the task's
	// attempt; redeliveries and restarts do not extend it.
	Wait time.Duration
	// ID names this replica in reports (default hostname:pid).
	ID string
	// StartedAfter is how long a task runs before it is reported started
	// (default worker.DefaultStartedAfter; negative: at once). See
	// worker.Config.
	StartedAfter time.Duration
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics records task outcomes (default telemetry.Default()).
	Metrics *telemetry.Metrics
	// StopTimeout bounds how long a stopping replica waits for the tasks
	// in progress (default daemon.DefaultStopTimeout); the backend then
	// has twice as long to close (local processes' own grace period).
	StopTimeout time.Duration
	// Now is the clock of a scale task's wait (default Clock's Now, or
	// time.Now without a Clock); tests replace it.
	Now func() time.Time
	// Clock is the bus's time (package clock), which the service binary
	// sets: a wait's deadline is stored by the replica that took the task
	// and kept by whichever replica resumes it, so they must tell the
	// same time whatever their hosts' clocks say. Run syncs it before
	// taking tasks.
	Clock *clock.Bus
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Bus.Defaults()
	if c.Wait == 0 {
		c.Wait = DefaultWait
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = daemon.DefaultStopTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
		if c.Clock != nil {
			c.Now = c.Clock.Now
		}
	}
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	if err := c.Bus.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Wait <= 0 {
		errs = append(errs, fmt.Errorf("%w: replicas: Wait %s must be positive", events.ErrInvalidConfig, c.Wait))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: replicas: StopTimeout %s must not be negative", events.ErrInvalidConfig, c.StopTimeout))
	}
	return errors.Join(errs...)
}

// Service is one replica of the replicas service.
type Service struct {
	client  *events.Client
	backend Backend
	cfg     Config
	log     *slog.Logger
	worker  *worker.Worker
	pending pendingStore
	lc      daemon.Lifecycle

	mu      sync.Mutex
	runCtx  context.Context // parent of every wait; nil outside Run
	waiters map[events.Ref]*waiter
	wg      sync.WaitGroup
}

// waiter is the wait in progress for a rollout's newest scale task.
type waiter struct {
	id      string
	attempt int
	cancel  context.CancelCauseFunc
}

// errReplaced ends a wait that a newer task (or attempt) took over; it is
// not reported.
var errReplaced = errors.New("replaced by a newer task")

// New checks cfg and returns a service that runs scale tasks on backend.
// Call Run to start it.
func New(client *events.Client, backend Backend, cfg Config) (*Service, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil || backend == nil {
		return nil, fmt.Errorf("%w: replicas: a client and a backend are required", events.ErrInvalidConfig)
	}
	s := &Service{client: client, backend: backend, cfg: cfg, log: cfg.Logger, waiters: map[events.Ref]*waiter{}}
	w, err := worker.New(client, worker.Config{
		Service:      tasks.ServiceReplicas,
		Source:       Source,
		Executors:    map[string]worker.Executor{tasks.KindScale: s.scale},
		Consumer:     cfg.Tasks,
		StartedAfter: cfg.StartedAfter,
		ID:           cfg.ID,
		Logger:       cfg.Logger,
		Metrics:      cfg.Metrics,
	})
	if err != nil {
		return nil, err
	}
	s.worker = w
	return s, nil
}

var _ daemon.Service = (*Service)(nil)

// Needs is what the replicas service uses on the bus; a backend may need
// more (local.Needs).
var Needs = events.Needs{
	Buckets: []events.Bucket{{Name: BucketPending, Description: "Sluice replicas: scale tasks waiting for their revisions", History: 1}},
}.Merge(worker.Needs(tasks.ServiceReplicas))

// Ready reports whether the backend is started and the consumer running.
func (s *Service) Ready() bool { return s.lc.Ready() && s.worker.Ready() }

// Run provisions the bus and BucketPending, starts the backend, resumes the
// waits a previous run left, starts taking tasks, and blocks until ctx ends.
// Then it stops taking tasks, abandons the waits (their entries stay for the
// next run), closes the backend and returns nil.
func (s *Service) Run(ctx context.Context) error {
	return s.lc.Run(ctx, daemon.Plan{
		Name: "replicas service", Client: s.client, Bus: s.cfg.Bus, Needs: Needs,
		StopTimeout: s.cfg.StopTimeout, Log: s.log, Start: s.start, Clock: s.cfg.Clock,
	})
}

// start starts the backend, resumes the waits and starts the worker.
func (s *Service) start(ctx context.Context, r *daemon.Running) error {
	s.pending = newPendingStore(r.Bucket(BucketPending), s.client.Conn())
	// The backend closes last, even after a failed Start.
	r.OnStop(daemon.StopFunc(func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.StopTimeout)
		defer cancel()
		if err := s.backend.Close(cctx); err != nil {
			s.log.Warn("backend did not close cleanly", "error", err)
		}
		return nil
	}))
	if err := s.backend.Start(ctx); err != nil {
		return fmt.Errorf("start backend: %w", err)
	}

	runCtx, cancelWaits := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	s.runCtx = runCtx
	s.mu.Unlock()
	r.OnStop(daemon.StopFunc(func(context.Context) error { s.stopWaits(cancelWaits); return nil }))
	resumed, err := s.pending.list(ctx)
	if err != nil {
		return fmt.Errorf("list pending tasks: %w", err)
	}
	for _, p := range resumed {
		s.log.Info("resuming wait for scale task", "rollout", p.Task.Ref.String(), "task", p.Task.ID, "attempt", p.Task.Attempt, "deadline", p.Deadline)
		s.wait(context.Background(), p.Task, p.Deadline, true)
	}

	if err := s.worker.Start(ctx); err != nil {
		return err
	}
	r.OnStop(s.worker)
	s.log.Info("replicas service taking tasks", "wait", s.cfg.Wait)
	return nil
}

func (s *Service) stopWaits(cancel context.CancelFunc) {
	s.mu.Lock()
	s.runCtx = nil
	s.mu.Unlock()
	cancel()
	s.wg.Wait()
}

// scale is the executor of replicas.scale. It records the task as its
// rollout's pending task and returns at once; the wait for availability runs
// in the background and reports with Worker.Finish. Holding the delivery
// while waiting would block every task behind it in the consumer's queue:
// later tasks for the same rollout (an abort's scale-down) and for rollouts
// that share the queue, which the orchestrator would then resend and fail
// for want of a worker.
func (s *Service) scale(ctx context.Context, t tasks.Task) (tasks.Finished, error) {
	if t.Scale == nil {
		return tasks.Finished{Outcome: tasks.OutcomeFailed, Message: "replicas.scale task without scale"}, nil
	}
	deadline, held, err := s.pending.put(ctx, t, s.cfg.Now().Add(s.cfg.Wait))
	if err != nil {
		return tasks.Finished{}, fmt.Errorf("record pending task %s: %w", t.ID, err)
	}
	s.wait(ctx, t, deadline, held)
	return tasks.Finished{}, nil
}

// wait starts waiting for t in the background. newest means t is its
// rollout's pending task: it replaces the wait in progress for an older task
// or attempt. An older task only gets its Stale report. The report carries
// the trace of from, the delivery of the task.
func (s *Service) wait(from context.Context, t tasks.Task, deadline time.Time, newest bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runCtx == nil {
		return // stopping: the pending entry resumes it next time
	}
	cur := s.waiters[t.Ref]
	if cur != nil && cur.id == t.ID && cur.attempt == t.Attempt {
		return // a redelivery of the wait in progress
	}
	ctx, cancel := context.WithCancelCause(trace.ContextWithSpanContext(s.runCtx, trace.SpanContextFromContext(from)))
	w := &waiter{id: t.ID, attempt: t.Attempt, cancel: cancel}
	if newest {
		if cur != nil {
			cur.cancel(errReplaced)
		}
		s.waiters[t.Ref] = w
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel(nil)
		s.await(ctx, t, deadline)
		s.mu.Lock()
		if s.waiters[t.Ref] == w {
			delete(s.waiters, t.Ref)
		}
		s.mu.Unlock()
	}()
}

// await applies t until it succeeds, fails or goes stale, and reports the
// outcome. It returns without a report when ctx ends (replaced or stopping).
func (s *Service) await(ctx context.Context, t tasks.Task, deadline time.Time) {
	log := s.log.With("rollout", t.Ref.String(), "task", t.ID, "attempt", t.Attempt, "seq", t.Seq)
	// The deadline is the bus's time; the wait counts on this host's
	// monotonic clock from the bus's now.
	wctx, cancel := context.WithTimeout(ctx, deadline.Sub(s.cfg.Now()))
	defer cancel()
	retry := time.Second
	var fin tasks.Finished
	for {
		statuses, err := s.backend.Apply(wctx, t.Ref, t.Seq, *t.Scale)
		if ctx.Err() != nil {
			return
		}
		fin = tasks.Finished{Replicas: statuses}
		switch {
		case err == nil:
			fin.Outcome = tasks.OutcomeSucceeded
		case errors.Is(err, tasks.ErrStale):
			fin.Outcome, fin.Message = tasks.OutcomeStale, err.Error()
		case errors.Is(err, ErrUnavailable), errors.Is(err, ErrInvalidTemplate), errors.Is(err, ErrGone):
			fin.Outcome, fin.Message = tasks.OutcomeFailed, err.Error()
		case wctx.Err() != nil:
			fin.Outcome, fin.Message = tasks.OutcomeFailed, fmt.Sprintf("not applied within %s: %v", s.cfg.Wait, err)
		default:
			log.Warn("scale not applied; retrying", "error", err, "retry_in", retry)
			select {
			case <-wctx.Done():
			case <-time.After(retry):
			}
			retry = min(2*retry, 30*time.Second)
			continue
		}
		break
	}
	log.Info("scale task finished", "outcome", fin.Outcome, "message", fin.Message)
	retry = time.Second
	for {
		err := s.worker.Finish(ctx, t, fin)
		if err == nil {
			break
		}
		log.Warn("finished report not published; retrying", "error", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, 30*time.Second)
	}
	if err := s.pending.done(ctx, t); err != nil && ctx.Err() == nil {
		// The entry resumes the task after a restart; its report then has
		// the same event id and is stored once.
		log.Warn("pending entry not removed", "error", err)
	}
}
