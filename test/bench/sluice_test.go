package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/instant"
	"github.com/sluicehq/sluice/services/traffic"
)

// rolloutCounts are the numbers of concurrent rollouts of BenchmarkSluice.
var rolloutCounts = []int{1, 100, 1000}

// instantRouter puts every route in effect at once: with instant.Backend,
// the platform that completes tasks at once, so that what is measured is
// Sluice and its bus.
type instantRouter struct{}

func (instantRouter) Apply(_ context.Context, _ events.Ref, _ int64, route tasks.Route) (int32, error) {
	return route.CanaryWeight, nil
}

// tenSteps is a canary of ten setWeight steps through a router: each step
// is a route task (and, as the canary grows, scale tasks). The old revision
// goes as soon as the update completes (scaleDownDelaySeconds 0): the
// benchmark updates faster than the default 30 s delay, and every revision
// still waiting for its scale-down stays in the rollout's state, making
// each decision costlier (docs/benchmarks.md).
func tenSteps(name string) string {
	steps := ""
	for w := 10; w <= 100; w += 10 {
		steps += fmt.Sprintf(`{"setWeight": %d},`, w)
	}
	return fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
  "metadata": {"name": %q, "namespace": "bench"},
  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:v1"}]}},
    "strategy": {"canary": {"stableService": "web-stable", "canaryService": "web-canary", "scaleDownDelaySeconds": 0,
      "trafficRouting": {"smi": {}}, "steps": [%s]}}}}`, name, steps[:len(steps)-1])
}

// BenchmarkSluice runs the orchestrator, replicas (instant backend) and
// traffic (instant router) services, each on its own connection to one
// embedded server, and rolls n rollouts of ten steps out at once: the
// first revision straight to Healthy, a second one through every step to
// warm up, then as many more updates as make at least 1,000 steps. A step's latency is from its step.started event to its
// step.completed event (the orchestrator's clock); steps/s counts every
// completed step of the update over the update's wall time.
func BenchmarkSluice(b *testing.B) {
	for _, n := range rolloutCounts {
		b.Run(fmt.Sprintf("rollouts=%d", n), func(b *testing.B) {
			for range b.N {
				sluice(b, n)
			}
		})
	}
}

func sluice(b *testing.B, n int) {
	srv := startServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	metrics, err := telemetry.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	connect := func() *events.Client {
		c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{srv.ClientURL()}}, events.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		return c
	}
	admin := connect()
	if err := admin.Provision(ctx, events.BusConfig{}); err != nil {
		b.Fatal(err)
	}
	orch, err := orchestrator.New(connect(), orchestrator.Config{Logger: quiet, Metrics: metrics})
	if err != nil {
		b.Fatal(err)
	}
	rs, err := replicas.New(connect(), instant.New(), replicas.Config{Logger: quiet, Metrics: metrics})
	if err != nil {
		b.Fatal(err)
	}
	ts, err := traffic.New(connect(), instantRouter{}, traffic.Config{Logger: quiet, Metrics: metrics})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, svc := range []interface{ Run(context.Context) error }{orch, rs, ts} {
		wg.Go(func() { _ = svc.Run(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()
	for !orch.Ready() || !rs.Ready() || !ts.Ready() {
		time.Sleep(10 * time.Millisecond)
	}

	// Follow every status event from here on.
	stream, err := admin.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		b.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	// waitCompleted counts rollout.completed events up to n and, during
	// the update, each step's latency.
	waitCompleted := func(lat *latencies) time.Time {
		started := map[string]time.Time{}
		var last time.Time
		for done := 0; done < n; {
			msg, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			ev, err := events.Decode(msg.Data(), msg.Headers())
			if err != nil {
				b.Fatal(err)
			}
			switch ev.Type() {
			case events.TypeRolloutCompleted:
				done++
				last = ev.Time()
			case events.TypeRolloutStepStarted, events.TypeRolloutStepCompleted:
				if lat == nil {
					continue
				}
				var d events.StatusData
				if err := events.DecodeData(ev, &d); err != nil || d.Step == nil {
					continue
				}
				k := fmt.Sprintf("%s/%d", ev.Subject(), d.Step.Index)
				if ev.Type() == events.TypeRolloutStepStarted {
					started[k] = ev.Time()
				} else if s, ok := started[k]; ok {
					lat.add(ev.Time().Sub(s))

				}
			}
		}
		return last
	}
	request := func(version string) {
		var pw sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := range n {
			sem <- struct{}{}
			pw.Go(func() {
				defer func() { <-sem }()
				name := fmt.Sprintf("r%d", i)
				data := []byte(tenSteps(name))
				if version != "v1" {
					data = []byte(stringsReplace(string(data), "web:v1", "web:"+version))
				}
				ev, err := events.New("/bench", events.TypeRolloutRequested, "bench/"+name, data)
				if err == nil {
					_, err = admin.Publish(ctx, events.CommandSubject(events.Ref{Namespace: "bench", Name: name}), ev)
				}
				if err != nil {
					b.Error(err)
				}
			})
		}
		pw.Wait()
	}

	// The first revision goes straight to Healthy; one update warms the
	// services up; then updates are measured until at least 1,000 steps.
	request("v1")
	waitCompleted(nil)
	request("v2")
	waitCompleted(nil)

	rounds := max(1, 1000/(10*n))
	b.ResetTimer()
	var lat latencies
	var busy time.Duration
	for round := range rounds {
		begin := time.Now()
		request(fmt.Sprintf("v%d", round+3))
		last := waitCompleted(&lat)
		busy += last.Sub(begin)

	}
	b.StopTimer()
	lat.report(b, busy)
}

func stringsReplace(s, old, new string) string { return strings.ReplaceAll(s, old, new) }
