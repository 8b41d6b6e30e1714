package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/instant"
	"github.com/sluicehq/sluice/services/traffic"
)

// instantRouter puts every route in effect at once: with instant.Backend,
// the platform that completes tasks at once, so that what is measured is
// Sluice and its bus. When zero is set, it is told of every route at
// weight 0 with the time it was applied.
type instantRouter struct {
	zero func(ref events.Ref, at time.Time)
}

func (r instantRouter) Type() string { return "instant" }

func (r instantRouter) Apply(_ context.Context, ref events.Ref, _ int64, route tasks.Route) (int32, error) {
	if r.zero != nil && route.CanaryWeight == 0 {
		r.zero(ref, time.Now())
	}
	return route.CanaryWeight, nil
}

// stack is the four services in this process, each on its own connection
// to one embedded server, and an admin connection.
type stack struct {
	admin *events.Client
	ctx   context.Context
	// reg holds the services' metrics.
	reg *prometheus.Registry
}

// startStack starts the services with orchestrators orchestrator
// replicas (at least one), which share the orchestrator's consumers, or
// with partitions > 0 own partitions of the rollouts (--partitions).
func startStack(tb testing.TB, router instantRouter, orchestrators, partitions int) *stack {
	tb.Helper()
	srv := startServer(tb)
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	metrics, err := telemetry.New(reg)
	if err != nil {
		tb.Fatal(err)
	}
	connect := func() *events.Client {
		c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{srv.ClientURL()}}, events.WithLogger(quiet))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = c.Close() })
		return c
	}
	admin := connect()
	if err := admin.Provision(ctx, events.BusConfig{}); err != nil {
		tb.Fatal(err)
	}
	var services []interface {
		Run(context.Context) error
		Ready() bool
	}
	for range max(1, orchestrators) {
		orch, err := orchestrator.New(connect(), orchestrator.Config{Logger: quiet, Metrics: metrics, Partitions: partitions})
		if err != nil {
			tb.Fatal(err)
		}
		services = append(services, orch)
	}
	rs, err := replicas.New(connect(), instant.New(), replicas.Config{Logger: quiet, Metrics: metrics})
	if err != nil {
		tb.Fatal(err)
	}
	ts, err := traffic.New(connect(), router, traffic.Config{Logger: quiet, Metrics: metrics})
	if err != nil {
		tb.Fatal(err)
	}
	providers, err := analyzer.DefaultProviders(analyzer.ProviderConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	an, err := analyzer.New(connect(), analyzer.Config{Providers: providers, Logger: quiet, Metrics: metrics})
	if err != nil {
		tb.Fatal(err)
	}
	services = append(services, rs, ts, an)
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() { _ = svc.Run(ctx) })
	}
	tb.Cleanup(func() { cancel(); wg.Wait() })
	poll.True(tb, "every service ready", func() bool {
		for _, svc := range services {
			if !svc.Ready() {
				return false
			}
		}
		return true
	})
	return &stack{admin: admin, ctx: ctx, reg: reg}
}

// counter is the sum of the series of counter name from now on: the
// function it returns says how much they grew.
func (s *stack) counter(tb testing.TB, name string, labels map[string]string) func() float64 {
	tb.Helper()
	sum := func() float64 {
		mfs, err := s.reg.Gather()
		if err != nil {
			tb.Fatal(err)
		}
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		series:
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
						continue series
					}
				}
				total += m.GetCounter().GetValue()
			}
		}
		return total
	}
	start := sum()
	return func() float64 { return sum() - start }
}

// publish publishes a command for r.
func (s *stack) publish(tb testing.TB, r events.Ref, typ string, data any) {
	ev, err := events.New("/bench", typ, r.String(), data)
	if err == nil {
		_, err = s.admin.Publish(s.ctx, events.CommandSubject(r), ev)
	}
	if err != nil {
		tb.Error(err)
	}
}

// request publishes a rollout.requested for every name at once (64 at a
// time), with manifest(name) as data.
func (s *stack) request(tb testing.TB, names []string, manifest func(name string) string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.publish(tb, events.Ref{Namespace: "bench", Name: name}, events.TypeRolloutRequested, json.RawMessage(manifest(name)))
		})
	}
	wg.Wait()
}

// follow calls fn with every event published on stream from now on, from
// one goroutine, until the benchmark ends.
func (s *stack) follow(tb testing.TB, stream string, fn func(subject string, ev events.Event)) {
	tb.Helper()
	cons, err := s.admin.JetStream().OrderedConsumer(s.ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		tb.Fatal(err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ev, err := events.Decode(msg.Data(), msg.Headers())
		if err != nil {
			tb.Error(err)
			return
		}
		fn(msg.Subject(), ev)
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cc.Stop)
}

// names returns r0 ... r(n-1).
func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("r%d", i)
	}
	return out
}

// canary is a Rollout manifest: two replicas of image, a canary through an
// SMI router with the given steps (JSON), the old revision scaled down at
// once. extra adds fields to the canary strategy ("" or `"name": value,`).
func canary(name, image, extra, steps string) string {
	return fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
  "metadata": {"name": %q, "namespace": "bench"},
  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": %q}]}},
    "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary", "trafficRouting": {"smi": {}},
      %s"scaleDownDelaySeconds": 0, "steps": [%s]}}}}`, name, image, extra, steps)
}

// stateWrites follows the rollouts' state bucket from now on; the
// function it returns says how many writes it saw and the bytes they
// stored.
func (s *stack) stateWrites(tb testing.TB) func() (writes, bytes int64) {
	tb.Helper()
	kv, err := s.admin.JetStream().KeyValue(s.ctx, orchestrator.BucketRollouts)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := kv.WatchAll(s.ctx, jetstream.UpdatesOnly())
	if err != nil {
		tb.Fatal(err)
	}
	var (
		mu                  sync.Mutex
		count, stored, last int64
	)
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			mu.Lock()
			count++
			stored += int64(len(e.Value()))
			last = int64(e.Revision())
			mu.Unlock()
		}
	}()
	return func() (int64, int64) {
		str, err := s.admin.JetStream().Stream(s.ctx, "KV_"+orchestrator.BucketRollouts)
		if err != nil {
			tb.Fatal(err)
		}
		info, err := str.Info(s.ctx)
		if err != nil {
			tb.Fatal(err)
		}
		poll.Until(tb, "the state watcher at the bucket's last write", func() error {
			mu.Lock()
			defer mu.Unlock()
			if last < int64(info.State.LastSeq) {
				return fmt.Errorf("at %d of %d", last, info.State.LastSeq)
			}
			return nil
		}, poll.Timeout(time.Minute))
		_ = w.Stop()
		mu.Lock()
		defer mu.Unlock()
		return count, stored
	}
}

// stateParts reads every rollout's state and returns their mean size,
// the mean size of what in them changes only with a new revision (spec,
// pod templates kept for history) that the record still holds inline, and
// the mean size of the revision parts the records keep apart (the entries
// orchestrator.IsRevisionPart names), per rollout.
func (s *stack) stateParts(tb testing.TB) (whole, revision, apart float64) {
	tb.Helper()
	kv, err := s.admin.JetStream().KeyValue(s.ctx, orchestrator.BucketRollouts)
	if err != nil {
		tb.Fatal(err)
	}
	keys, err := kv.ListKeys(s.ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var n, all, rev, parts int
	for k := range keys.Keys() {
		e, err := kv.Get(s.ctx, k)
		if err != nil {
			tb.Fatal(err)
		}
		if orchestrator.IsRevisionPart(k) {
			parts += len(e.Value())
			continue
		}
		var rec struct {
			State struct {
				Spec           json.RawMessage `json:"spec"`
				ExperimentSpec json.RawMessage `json:"experimentSpec"`
				History        json.RawMessage `json:"history"`
			} `json:"state"`
		}
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			tb.Fatal(err)
		}
		n++
		all += len(e.Value())
		rev += len(rec.State.Spec) + len(rec.State.ExperimentSpec) + len(rec.State.History)
	}
	if n == 0 {
		return 0, 0, 0
	}
	return float64(all) / float64(n), float64(rev) / float64(n), float64(parts) / float64(n)
}
