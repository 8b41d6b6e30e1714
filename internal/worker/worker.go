// Package worker is the worker side of the task protocol (package tasks),
// shared by the replicas, traffic and analyzer services: it takes tasks from
// the service's durable consumer, reports them started, runs the executor for
// the task's kind, and reports them finished.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
)

// Executor carries out one task. It returns the Finished report (Outcome
// Succeeded, Failed with a message, or Stale when a task with a higher Seq
// was already applied for the rollout: executors compare Seq atomically with
// their effect). An empty Outcome means the task was accepted and will be
// reported later with Worker.Finish (an analysis run that takes minutes). A
// returned error means the task could not be carried out now and should be
// retried (infrastructure, not a verdict).
type Executor func(ctx context.Context, t tasks.Task) (tasks.Finished, error)

// Config configures a worker service.
type Config struct {
	// Service is tasks.ServiceReplicas, ServiceTraffic or ServiceAnalyzer.
	Service string
	// Source is the CloudEvents source of the reports, e.g. "/sluice/traffic".
	Source string
	// Executors maps task kinds to what carries them out.
	Executors map[string]Executor
	// Consumer tunes the durable consumer; Stream, Durable and
	// FilterSubjects are set by the worker.
	Consumer events.ConsumerConfig
	// ID names this process in Started reports (default hostname:pid).
	ID string
	// StartedAfter is how long a task runs before the worker reports it
	// started (default DefaultStartedAfter; negative: at once, before the
	// executor runs). A task finished sooner is reported finished only,
	// which spares the orchestrator a decision and a state write per task;
	// the started report exists to stop the orchestrator's start timeout
	// (30s by default) from sending a running task again.
	StartedAfter time.Duration
	Logger       *slog.Logger
	// Metrics records task outcomes and durations (default
	// telemetry.Default()).
	Metrics *telemetry.Metrics
}

// DefaultStartedAfter is Config.StartedAfter's default.
const DefaultStartedAfter = 250 * time.Millisecond

// Worker is one replica of a worker service.
type Worker struct {
	client *events.Client
	cfg    Config

	mu    sync.Mutex
	sub   *events.Subscription
	ready bool
	// starts are the started reports still to come, by task event id.
	starts map[string]*time.Timer
}

// New checks cfg and returns a worker that uses client.
func New(client *events.Client, cfg Config) (*Worker, error) {
	if _, err := tasks.Service(firstKind(cfg.Executors)); err != nil || cfg.Service == "" {
		return nil, fmt.Errorf("%w: worker needs a service and at least one executor", events.ErrInvalidConfig)
	}
	for kind := range cfg.Executors {
		svc, err := tasks.Service(kind)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", events.ErrInvalidConfig, err)
		}
		if svc != cfg.Service {
			return nil, fmt.Errorf("%w: task kind %q belongs to the %s service, not %s", events.ErrInvalidConfig, kind, svc, cfg.Service)
		}
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = telemetry.Default()
	}
	if cfg.Source == "" {
		cfg.Source = "/sluice/" + cfg.Service
	}
	if cfg.StartedAfter == 0 {
		cfg.StartedAfter = DefaultStartedAfter
	}
	return &Worker{client: client, cfg: cfg, starts: map[string]*time.Timer{}}, nil
}

func firstKind(m map[string]Executor) string {
	for k := range m {
		return k
	}
	return ""
}

// Durable is the consumer name all replicas of service share.
func Durable(service string) string { return "worker-" + service }

// Needs is what the worker of service uses on the bus: its consumer of the
// service's tasks, and the subjects of its reports.
func Needs(service string) events.Needs {
	return events.Needs{
		Consumers: []events.Durable{{Stream: events.StreamTasks, Name: Durable(service)}},
		Publish:   []string{events.ResultRoot + "." + service + ".>"},
	}
}

// Start begins taking tasks. Stop ends it.
func (w *Worker) Start(ctx context.Context) error {
	cc := w.cfg.Consumer
	cc.Stream = events.StreamTasks
	cc.Durable = Durable(w.cfg.Service)
	cc.FilterSubjects = []string{events.TaskRoot + "." + w.cfg.Service + ".>"}
	mux := events.NewMux()
	mux.Handle(tasks.TypeTriggered, w.handle)
	sub, err := w.client.Consume(ctx, cc, mux.Dispatch)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.sub, w.ready = sub, true
	w.mu.Unlock()
	return nil
}

// Ready reports whether the worker's consumer is running.
func (w *Worker) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

// Stop stops taking tasks and waits for those in progress (up to ctx).
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	sub := w.sub
	w.sub, w.ready = nil, false
	// Started reports still to come would be published on a closing
	// connection; the orchestrator sends those tasks again if need be.
	for id, tm := range w.starts {
		tm.Stop()
		delete(w.starts, id)
	}
	w.mu.Unlock()
	if sub == nil {
		return nil
	}
	return sub.Stop(ctx)
}

func (w *Worker) handle(ctx context.Context, _ events.Delivery, ev events.Event) error {
	var t tasks.Task
	if err := events.DecodeData(ev, &t); err != nil {
		return err
	}
	if err := t.Ref.Validate(); err != nil {
		return events.Permanent(fmt.Errorf("task %s: %w", t.ID, err))
	}
	exec, ok := w.cfg.Executors[t.Kind]
	if !ok {
		return events.Permanent(fmt.Errorf("the %s service does not carry out task kind %q", w.cfg.Service, t.Kind))
	}
	log := w.cfg.Logger.With("rollout", t.Ref.String(), "revision", t.Revision, "task", t.ID, "attempt", t.Attempt, "kind", t.Kind, "seq", t.Seq)
	begun := time.Now()
	if w.cfg.StartedAfter < 0 {
		if err := w.reportStarted(ctx, t, begun); err != nil {
			return err
		}
	} else {
		w.startLater(ctx, t, begun, log)
	}
	fin, err := exec(ctx, t)
	if err != nil {
		w.cancelStart(t)
		w.cfg.Metrics.WorkerTask(w.cfg.Service, t.Kind, "error", time.Since(begun))
		log.WarnContext(ctx, "task not carried out; will retry", "error", err)
		return err
	}
	fin.TaskID, fin.Attempt, fin.Kind, fin.Worker = t.ID, t.Attempt, t.Kind, w.cfg.ID
	if fin.At.IsZero() {
		fin.At = time.Now().UTC()
	}
	if fin.Outcome == "" {
		w.cfg.Metrics.WorkerTask(w.cfg.Service, t.Kind, "accepted", time.Since(begun))
		log.InfoContext(ctx, "task accepted; it reports later")
		return nil
	}
	w.cancelStart(t)
	w.cfg.Metrics.WorkerTask(w.cfg.Service, t.Kind, fin.Outcome, time.Since(begun))
	log.InfoContext(ctx, "task finished", "outcome", fin.Outcome, "message", fin.Message)
	return w.report(ctx, t, tasks.TypeFinished, "finished", fin)
}

func (w *Worker) reportStarted(ctx context.Context, t tasks.Task, at time.Time) error {
	started := tasks.Started{TaskID: t.ID, Attempt: t.Attempt, Kind: t.Kind, Worker: w.cfg.ID, At: at.UTC()}
	return w.report(ctx, t, tasks.TypeStarted, "started", started)
}

// startLater reports t started once it has run for StartedAfter, unless
// cancelStart comes first. A task accepted to be finished later keeps its
// timer after its delivery is settled. The report carries the trace of
// from, the task's delivery.
func (w *Worker) startLater(from context.Context, t tasks.Task, begun time.Time, log *slog.Logger) {
	span := trace.SpanContextFromContext(from)
	id := t.EventID()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.starts[id]; ok {
		return // a second delivery while the first is still running
	}
	w.starts[id] = time.AfterFunc(w.cfg.StartedAfter, func() {
		w.mu.Lock()
		_, pending := w.starts[id]
		delete(w.starts, id)
		w.mu.Unlock()
		if !pending {
			return
		}
		ctx, cancel := context.WithTimeout(trace.ContextWithSpanContext(context.Background(), span), 30*time.Second)
		defer cancel()
		if err := w.reportStarted(ctx, t, begun); err != nil {
			// The orchestrator sends the task again after its start
			// timeout; the executor then finds it in progress.
			log.Warn("task started report not published", "error", err)
			return
		}
		log.Debug("task started")
	})
}

// cancelStart drops t's started report if it is still to come.
func (w *Worker) cancelStart(t tasks.Task) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if tm, ok := w.starts[t.EventID()]; ok {
		tm.Stop()
		delete(w.starts, t.EventID())
	}
}

// Finish reports a task that its executor accepted without finishing.
func (w *Worker) Finish(ctx context.Context, t tasks.Task, fin tasks.Finished) error {
	w.cancelStart(t)
	fin.TaskID, fin.Attempt, fin.Kind, fin.Worker = t.ID, t.Attempt, t.Kind, w.cfg.ID
	if fin.At.IsZero() {
		fin.At = time.Now().UTC()
	}
	if fin.Outcome == "" {
		return fmt.Errorf("finish task %s: no outcome", t.ID)
	}
	return w.report(ctx, t, tasks.TypeFinished, "finished", fin)
}

// report publishes a result for t with an id derived from the task attempt,
// so that a redelivered task reports once.
func (w *Worker) report(ctx context.Context, t tasks.Task, typ, what string, data any) error {
	ev, err := events.New(w.cfg.Source, typ, t.Ref.String(), data)
	if err != nil {
		return events.Permanent(err)
	}
	ev.SetID(what + "/" + t.EventID())
	_, err = w.client.Publish(ctx, events.ResultSubject(w.cfg.Service, t.Ref), ev)
	return err
}
