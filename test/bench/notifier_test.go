package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier"
	"github.com/sluicehq/sluice/services/notifier/sender/webhook"
)

// notifierConfig is an Argo notifications ConfigMap with one webhook
// service, subscribed (by the subscriptions key: the benchmark has no
// orchestrator, so no rollout annotations) to on-rollout-step-completed.
// The body carries the status event's id, from which the receiver finds
// when the event was published.
const notifierConfig = `apiVersion: v1
kind: ConfigMap
metadata:
  name: argo-rollouts-notification-configmap
data:
  service.webhook.hook: |
    url: URL
    headers:
    - name: Content-Type
      value: application/json
  template.step: |
    webhook:
      hook:
        method: POST
        body: '{"rollout": "{{.rollout.metadata.namespace}}/{{.rollout.metadata.name}}", "step": {{.sluice.step.index}}, "event": "{{.sluice.event.id}}"}'
  trigger.on-rollout-step-completed: |
    - send: [step]
  subscriptions: |
    - recipients: ["hook:"]
      triggers: [on-rollout-step-completed]
`

// notifierRun is one run of BenchmarkNotifier: steps status events for
// each of rollouts.
type notifierRun struct {
	rollouts, steps int
	// oneAtATime publishes each event once the previous one's
	// notification arrived (latency alone, no backlog).
	oneAtATime bool
	// refuseEvery makes the receiver answer every refuseEvery-th request
	// 429 Retry-After: 1 (0: never).
	refuseEvery int
	// workers sets the notifier's consumers' workers (0: the default, 4).
	workers int
}

// BenchmarkNotifier runs the real notifier (configured from a file as
// sluice-notifier is) on an embedded server and publishes step.completed
// status events directly on sluice.status.<ns>.<name>; a real HTTP
// receiver counts the webhook requests it accepts until every event's
// notification arrived. Latency is from an event's publish to its
// notification's accepted request; notifications/s counts them over the
// time from the first publish to the last delivery.
//
//   - burst: 100 rollouts of 20 steps published at once (each rollout's
//     in order, as the orchestrator does), the receiver answering 2xx, or
//     every tenth request 429 Retry-After: 1; and the 2xx burst again with
//     16 workers per consumer instead of the default 4, to show what
//     limits the default.
//
//   - one-at-a-time: one rollout's 200 steps, each published once the
//     previous notification arrived: the latency of one notification
//     through the notifier's two hops.
//
//     go test -run '^$' -bench Notifier -benchtime 1x ./test/bench
func BenchmarkNotifier(b *testing.B) {
	for _, c := range []struct {
		name string
		run  notifierRun
	}{
		{"burst/answers=2xx", notifierRun{rollouts: 100, steps: 20}},
		{"burst/answers=429-one-in-10", notifierRun{rollouts: 100, steps: 20, refuseEvery: 10}},
		{"burst/answers=2xx/workers=16", notifierRun{rollouts: 100, steps: 20, workers: 16}},
		{"one-at-a-time", notifierRun{rollouts: 1, steps: 200, oneAtATime: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				notifications(b, c.run)
			}
		})
	}
}

// webhookReceiver accepts each notification, answering every refuseEvery-th
// request (0: none) 429 Retry-After: 1, and records when each delivery id
// was first accepted.
type webhookReceiver struct {
	refuseEvery int
	published   func(eventID string) (time.Time, bool)

	mu        sync.Mutex
	requests  int
	refused   int
	accepted  map[string]bool
	lat       latencies
	last      time.Time
	problems  []string
	duplicate int
	// lastStep is the highest step notified per rollout; reordered counts
	// the notifications that arrived after a later step's.
	lastStep  map[string]int
	reordered int
	// arrived receives once per notification accepted.
	arrived chan struct{}
}

func (rc *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if rc.refuseEvery > 0 && rc.requests%rc.refuseEvery == 0 {
		rc.refused++
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	var msg struct {
		Rollout, Event string
		Step           int
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		rc.problems = append(rc.problems, fmt.Sprintf("body %q: %v", body, err))
		return
	}
	id := r.Header.Get(webhook.DeliveryHeader)
	if rc.accepted[id] {
		rc.duplicate++
		return
	}
	rc.accepted[id] = true
	if last, ok := rc.lastStep[msg.Rollout]; ok && msg.Step < last {
		rc.reordered++
	}
	rc.lastStep[msg.Rollout] = max(msg.Step, rc.lastStep[msg.Rollout])
	if sent, ok := rc.published(msg.Event); ok {
		rc.lat.add(at.Sub(sent))
	} else {
		rc.problems = append(rc.problems, "a notification of an event not published: "+string(body))
	}
	rc.last = at
	rc.arrived <- struct{}{}
}

func (rc *webhookReceiver) delivered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.accepted)
}

func notifications(b *testing.B, run notifierRun) {
	b.StopTimer()
	srv := startServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	registry := prometheus.NewRegistry()
	metrics, err := telemetry.New(registry)
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

	var (
		pubMu     sync.Mutex
		published = map[string]time.Time{}
	)
	total := run.rollouts * run.steps
	rcv := &webhookReceiver{refuseEvery: run.refuseEvery, accepted: map[string]bool{}, lastStep: map[string]int{}, arrived: make(chan struct{}, total), published: func(id string) (time.Time, bool) {
		pubMu.Lock()
		defer pubMu.Unlock()
		t, ok := published[id]
		return t, ok
	}}
	hook := httptest.NewServer(rcv)
	b.Cleanup(hook.Close)

	file := filepath.Join(b.TempDir(), "notifications.yaml")
	if err := os.WriteFile(file, []byte(strings.Replace(notifierConfig, "URL", hook.URL, 1)), 0o600); err != nil {
		b.Fatal(err)
	}
	client := connect()
	src, err := notifier.NewSource(notifier.SourceConfig{File: file, Client: client, Getenv: func(string) string { return "" }, Logger: quiet, Metrics: metrics})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := notifier.New(client, notifier.Config{
		Config: src, Listen: "off", Logger: quiet, Metrics: metrics,
		Status: events.ConsumerConfig{Workers: run.workers}, Delivery: events.ConsumerConfig{Workers: run.workers},
	})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(ctx) })
	b.Cleanup(func() { cancel(); wg.Wait() })
	poll.True(b, "the notifier ready", svc.Ready)

	// Every rollout's steps in order from its own goroutine, all rollouts
	// at once.
	b.StartTimer()
	begin := time.Now()
	var pub sync.WaitGroup
	for _, name := range names(run.rollouts) {
		pub.Go(func() {
			ref := events.Ref{Namespace: "bench", Name: name}
			for i := range int32(run.steps) {
				ev, err := events.New("/orchestrator", events.TypeRolloutStepCompleted, ref.String(), stepCompleted(ref, i, int32(run.steps)))
				if err != nil {
					b.Error(err)
					return
				}
				pubMu.Lock()
				published[ev.ID()] = time.Now()
				pubMu.Unlock()
				if _, err := admin.Publish(ctx, events.StatusSubject(ref), ev); err != nil {
					b.Error(err)
					return
				}
				if run.oneAtATime {
					select {
					case <-rcv.arrived:
					case <-time.After(time.Minute):
						b.Errorf("step %d of %s: no notification within a minute", i, ref)
						return
					}
				}
			}
		})
	}
	pub.Wait()
	poll.Until(b, "every notification delivered", func() error {
		if n := rcv.delivered(); n < total {
			return fmt.Errorf("%d of %d delivered", n, total)
		}
		return nil
	}, poll.Timeout(2*time.Minute))
	b.StopTimer()

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, p := range rcv.problems {
		b.Error(p)
	}
	elapsed := rcv.last.Sub(begin)
	rcv.lat.reportAs(b, elapsed, "notifications")
	b.ReportMetric(float64(rcv.requests), "requests")
	b.ReportMetric(float64(rcv.refused), "refused-429")
	b.ReportMetric(float64(rcv.duplicate), "duplicates")
	b.ReportMetric(float64(rcv.reordered), "out-of-order")
	// The retries' count is final: each was counted before its retry.
	b.ReportMetric(testutil.ToFloat64(metrics.NotificationCounter("hook", "on-rollout-step-completed", notifier.OutcomeRetried)), "retried")
}

// stepCompleted is the StatusData of a canary's step.completed as the
// orchestrator publishes it: revision 2 of 2 replicas through count
// setWeight steps.
func stepCompleted(ref events.Ref, i, count int32) events.StatusData {
	weight := min(100, (i+1)*100/count)
	return events.StatusData{
		Status: events.Snapshot{
			Namespace: ref.Namespace, Name: ref.Name, Strategy: "canary", Phase: "Progressing",
			Message:  "more replicas need to be updated",
			Revision: 2, StableRevision: 1, PodHash: "7d9f8b6c5", StablePodHash: "5c6b8f9d7",
			StepIndex: &i, StepCount: count, CanaryWeight: weight, StableWeight: 100 - weight,
			Replicas:  events.Replicas{Desired: 2, Current: 3, Updated: 1, Ready: 3, Available: 3},
			UpdatedAt: time.Now(),
		},
		Step: &events.StepInfo{Index: i, Action: "setWeight", Detail: fmt.Sprintf("setWeight %d", weight)},
	}
}
