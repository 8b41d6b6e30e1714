package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/instant"
	"github.com/sluicehq/sluice/services/traffic"
)

// weightRouter puts every route in effect at once.
type weightRouter struct{}

// Type is the label the router's metrics carry, asserted below.
func (weightRouter) Type() string { return "telemetry_test" }

func (weightRouter) Apply(_ context.Context, _ events.Ref, _ int64, r tasks.Route) (int32, error) {
	return r.CanaryWeight, nil
}

// syncBuffer is a log sink shared by several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// records returns the JSON log records whose msg is msg.
func (s *syncBuffer) records(msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(s.b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

const rolloutYAML = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: IMAGE}]}
  strategy:
    canary:
      steps:
      - setWeight: 50
`

// process is one "binary": its own connection, tracer provider and logs,
// all reporting to the same metrics.
type process struct {
	client *events.Client
	spans  *tracetest.SpanRecorder
}

func start(t *testing.T, url string, m *telemetry.Metrics) process {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{url}, Name: t.Name()},
		events.WithLogger(eventstest.Quiet()),
		events.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))),
		events.WithObserver(m, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Provision(ctx, events.BusConfig{}); err != nil {
		t.Fatal(err)
	}
	return process{client: c, spans: spans}
}

func run(t *testing.T, svc interface {
	Run(context.Context) error
	Ready() bool
}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	poll.True(t, "service ready", svc.Ready)
}

// A small flow on a real bus — two revisions of a canary rollout carried
// out by the orchestrator, replicas and traffic services, plus an event no
// one handles — leaves the expected metrics, one trace from the request
// through every task and back, and logs that carry the trace id.
func TestFlowMetricsTracesAndLogs(t *testing.T) {
	srv := eventstest.StartServer(t)
	reg := prometheus.NewRegistry()
	m, err := telemetry.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	orch, work, cli := start(t, srv.ClientURL(), m), start(t, srv.ClientURL(), m), start(t, srv.ClientURL(), m)
	o, err := orchestrator.New(orch.client, orchestrator.Config{Logger: log, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := replicas.New(work.client, instant.New(), replicas.Config{Logger: log, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := traffic.New(work.client, weightRouter{}, traffic.Config{Logger: log, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	run(t, o)
	run(t, rs)
	run(t, ts)

	var mu sync.Mutex
	completed := 0
	sub, err := cli.client.Conn().Subscribe(events.StatusRoot+".>", func(msg *nats.Msg) {
		if ev, err := events.Decode(msg.Data, msg.Header); err == nil && ev.Type() == events.TypeRolloutCompleted {
			mu.Lock()
			completed++
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	completedN := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return completed >= n }
	}

	r := events.Ref{Namespace: "prod", Name: "web"}
	publish := func(ctx context.Context, typ, image string) {
		t.Helper()
		data, err := yaml.YAMLToJSON([]byte(strings.Replace(rolloutYAML, "IMAGE", image, 1)))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.New("/test", typ, r.String(), json.RawMessage(data))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.client.Publish(ctx, events.CommandSubject(r), ev); err != nil {
			t.Fatal(err)
		}
	}
	publish(context.Background(), events.TypeRolloutRequested, "web:1")
	poll.True(t, "revision 1 completed", completedN(1))

	// Revision 2 is requested inside the CLI's own root span.
	root, rootSpan := sdktrace.NewTracerProvider().Tracer("cli").Start(context.Background(), "apply")
	publish(root, events.TypeRolloutRequested, "web:2")
	rootSpan.End()
	poll.True(t, "revision 2 completed", completedN(2))
	traceID := rootSpan.SpanContext().TraceID()

	// An event of a type nobody handles is dead-lettered.
	publish(context.Background(), "io.example.nonsense.v1", "web:3")
	deadLettered := func() float64 {
		n, _ := testutil.GatherAndCount(reg, "sluice_events_dead_lettered_total")
		return float64(n)
	}
	poll.True(t, "a dead letter", func() bool { return deadLettered() > 0 })

	t.Run("metrics", func(t *testing.T) {
		poll.True(t, "both rollouts' phase seen", func() bool { return gauge(t, reg, "sluice_orchestrator_rollouts", "phase", "Healthy") == 1 })
		poll.True(t, "lag sampled at zero", func() bool {
			return gauge(t, reg, "sluice_consumer_pending_messages", "consumer", orchestrator.DurableCommands) == 0
		})
		want := []struct {
			name   string
			labels map[string]string
			min    float64
			max    float64
		}{
			{"sluice_events_published_total", map[string]string{"type": events.TypeRolloutRequested, "outcome": events.PublishStored}, 2, 2},
			{"sluice_events_handled_total", map[string]string{"consumer": orchestrator.DurableCommands, "type": events.TypeRolloutRequested, "outcome": events.OutcomeAcked}, 2, 2},
			{"sluice_events_handled_total", map[string]string{"consumer": orchestrator.DurableCommands, "type": events.UnknownEventType, "outcome": events.OutcomeDeadLettered}, 1, 1},
			{"sluice_events_dead_lettered_total", map[string]string{"consumer": orchestrator.DurableCommands, "reason": events.DeadLetterUnknownType}, 1, 1},
			{"sluice_orchestrator_decisions_total", map[string]string{"observation": "request", "result": "changed"}, 2, 2},
			{"sluice_orchestrator_decisions_total", map[string]string{"observation": "finished", "result": "changed"}, 2, 100},
			// Scale tasks are accepted at once and reported when available.
			{"sluice_worker_tasks_total", map[string]string{"service": tasks.ServiceReplicas, "kind": tasks.KindScale, "outcome": "accepted"}, 2, 100},
			{"sluice_worker_tasks_total", map[string]string{"service": tasks.ServiceTraffic, "kind": tasks.KindRoute, "outcome": tasks.OutcomeSucceeded}, 1, 100},
			{"sluice_traffic_router_operations_total", map[string]string{"router": "telemetry_test", "result": "applied"}, 1, 100},
			{"sluice_orchestrator_cas_conflicts_total", nil, 0, 0},
			// -1: no series, no redelivery.
			{"sluice_consumer_redeliveries_total", map[string]string{"consumer": orchestrator.DurableCommands}, -1, 0},
		}
		for _, w := range want {
			got := value(t, reg, w.name, w.labels)
			if got < w.min || got > w.max {
				t.Errorf("%s%v = %v, want between %v and %v", w.name, w.labels, got, w.min, w.max)
			}
		}
		for _, kind := range []string{tasks.KindScale, tasks.KindRoute} {
			if n := histogramCount(t, reg, "sluice_orchestrator_task_duration_seconds", map[string]string{"kind": kind, "outcome": tasks.OutcomeSucceeded}); n < 1 {
				t.Errorf("no %s task duration observed", kind)
			}
		}
		if n := histogramCount(t, reg, "sluice_event_handler_duration_seconds", map[string]string{"consumer": orchestrator.DurableResults, "type": tasks.TypeFinished}); n < 2 {
			t.Errorf("handler durations of finished reports: %d", n)
		}
	})

	t.Run("one trace from the request through every task", func(t *testing.T) {
		inTrace := func(rec *tracetest.SpanRecorder) map[string]bool {
			names := map[string]bool{}
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() == traceID && s.SpanKind() == trace.SpanKindConsumer {
					names[strings.Join(strings.SplitN(s.Name(), ".", 4)[:3], ".")] = true
				}
			}
			return names
		}
		poll.True(t, "spans ended", func() bool {
			o, w := inTrace(orch.spans), inTrace(work.spans)
			return o["process sluice.cmd.prod"] && o["process sluice.result.replicas"] && o["process sluice.result.traffic"] && w["process sluice.task.replicas"] && w["process sluice.task.traffic"]
		})
	})

	t.Run("logs carry rollout and trace id", func(t *testing.T) {
		for _, msg := range []string{"rollout decided", "task finished"} {
			found := false
			for _, rec := range logs.records(msg) {
				found = found || (rec["rollout"] == r.String() && rec["trace_id"] == traceID.String())
			}
			if !found {
				t.Errorf("no %q log line with rollout %s and trace_id %s: %v", msg, r, traceID, logs.records(msg))
			}
		}
	})
}
