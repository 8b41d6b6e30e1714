package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
)

// deciders records, per rollout, which replicas logged a decision on it.
type deciders struct {
	mu sync.Mutex
	by map[string]map[int]bool
}

func (d *deciders) logger(replica int) *slog.Logger {
	return slog.New(&decisionLog{d: d, replica: replica})
}

func (d *deciders) of(rollout string) []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int
	for r := range d.by[rollout] {
		out = append(out, r)
	}
	return out
}

// decisionLog is a slog handler that keeps the rollout of each "rollout
// decided" record.
type decisionLog struct {
	d       *deciders
	replica int
	attrs   []slog.Attr
}

func (h *decisionLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *decisionLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &decisionLog{d: h.d, replica: h.replica, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h *decisionLog) WithGroup(string) slog.Handler { return h }
func (h *decisionLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "rollout decided" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "rollout" {
			h.d.mu.Lock()
			if h.d.by[a.Value.String()] == nil {
				h.d.by[a.Value.String()] = map[int]bool{}
			}
			h.d.by[a.Value.String()][h.replica] = true
			h.d.mu.Unlock()
		}
		return true
	})
	return nil
}

// With partitions, three replicas share the rollouts and each rollout's
// messages reach one of them while the pins hold: every rollout is
// decided by one replica, and no decision is made again on the bucket's
// record because the one a replica held was out of date (which, with the
// shared consumers, happens more than once per step:
// docs/benchmarks.md). When a replica is killed, another takes over its
// partitions and decides on their rollouts.
func TestPartitionsGiveEachRolloutOneOwner(t *testing.T) {
	srv := startServer(t)
	d := &deciders{by: map[string]map[int]bool{}}
	var (
		regs  []*prometheus.Registry
		procs []*orchestratorProc
	)
	for i := range 3 {
		reg := prometheus.NewRegistry()
		m, err := telemetry.New(reg)
		if err != nil {
			t.Fatal(err)
		}
		// A TTL far above any stall of a loaded machine's pulls: the
		// pins hold until the kill, whatever the load.
		p := startOrchestratorWith(t, srv.ClientURL(), Config{Partitions: 8, OwnerTTL: ownersTestTTL, Metrics: m, Logger: d.logger(i)})
		regs, procs = append(regs, reg), append(procs, p)
	}
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	refs := createAndUpdate(t, c, status, 16)
	owner := map[string]int{}
	perReplica := make([]int, len(procs))
	for _, r := range refs {
		by := d.of(r.String())
		if len(by) != 1 {
			t.Errorf("%s was decided by replicas %v, want one", r, by)
			continue
		}
		owner[r.String()] = by[0]
		perReplica[by[0]]++
	}
	t.Logf("rollouts owned per replica: %v", perReplica)
	for i, reg := range regs {
		if n := counterValue(t, reg, "sluice_orchestrator_state_reads_total", readStale); n != 0 {
			t.Errorf("replica %d decided %v times again on the bucket's record after finding the one it held out of date, want 0 with one owner per rollout", i, n)
		}
		if n := counterValue(t, reg, "sluice_orchestrator_cas_conflicts_total", ""); n != 0 {
			t.Errorf("replica %d lost %v writes, want 0 with one owner per rollout", i, n)
		}
	}

	// The replica that owns the most rollouts dies, as with SIGKILL; the
	// others take its partitions once its pins expire, and decide on its
	// rollouts.
	victim := 0
	for i, n := range perReplica {
		if n > perReplica[victim] {
			victim = i
		}
	}
	killed := time.Now()
	procs[victim].kill()
	var orphans []events.Ref
	for _, r := range refs {
		if owner[r.String()] == victim {
			orphans = append(orphans, r)
			request(t, c, r, "app:3", loadSteps)
		}
	}
	var last time.Duration
	for _, r := range orphans {
		poll.Until(t, fmt.Sprintf("%s completed a third time, decided by a survivor", r), func() error {
			if n := countOf(status, r, events.TypeRolloutCompleted); n < 3 {
				return fmt.Errorf("completed %d times", n)
			}
			return nil
		}, poll.Timeout(time.Minute))
		last = max(last, time.Since(killed))
	}
	t.Logf("the %d rollouts of the killed replica completed an update within %s of the kill (owner TTL %s)", len(orphans), last.Round(time.Millisecond), ownersTestTTL)
}

// ownersTestTTL is the owner TTL of TestPartitionsGiveEachRolloutOneOwner.
const ownersTestTTL = 10 * time.Second

// countOf is how many status events of typ r has had.
func countOf(l *statusLog, r events.Ref, typ string) int {
	n := 0
	for _, e := range l.of(r) {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// An upgrade to partitions loses nothing: the requests published while
// the bus's orchestrators ran the shared consumers and were down (pending
// in orchestrator-commands) are decided by the first replica started with
// --partitions, which then deletes the shared consumers. Starting with
// another partition count on that bus is refused, saying how to change it.
func TestUpgradeToPartitionsTakesOverTheSharedConsumersMessages(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	steps := `    canary:
      steps: [{setWeight: 50}]`
	before := events.Ref{Namespace: "prod", Name: "before"}
	shared := startOrchestratorWith(t, srv.ClientURL(), Config{})
	request(t, c, before, "web:1", steps)
	status.waitFor(t, before, events.TypeRolloutCompleted)
	shared.stop()

	var pending []events.Ref
	for i := range 5 {
		r := events.Ref{Namespace: "prod", Name: fmt.Sprintf("pending-%d", i)}
		pending = append(pending, r)
		request(t, c, r, "web:1", steps)
	}
	js := c.JetStream()
	cons, err := js.Consumer(t.Context(), events.StreamCommands, DurableCommands)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := cons.Info(t.Context()); err != nil || info.NumPending != uint64(len(pending)) {
		t.Fatalf("orchestrator-commands: %v pending (%v), want the %d requests", info.NumPending, err, len(pending))
	}

	startOrchestratorWith(t, srv.ClientURL(), Config{Partitions: 4})
	for _, r := range pending {
		status.waitFor(t, r, events.TypeRolloutCompleted)
	}
	if got := countOf(status, before, events.TypeRolloutAccepted); got != 1 {
		t.Errorf("the rollout decided before the upgrade was accepted %d times, want once: the partitions began before the shared consumer's end", got)
	}
	for _, durable := range []string{DurableCommands, DurableResults} {
		if _, err := js.Consumer(t.Context(), legacyStream(durable), durable); err == nil {
			t.Errorf("the shared consumer %s is still there after the upgrade", durable)
		}
	}

	svc, err := New(connect(t, srv.ClientURL()), Config{Partitions: 8, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	err = svc.Run(t.Context())
	if err == nil || !errors.Is(err, events.ErrInvalidConfig) || !strings.Contains(err.Error(), "Changing the partitions") {
		t.Errorf("a replica with --partitions 8 on a bus of 4: %v, want an invalid configuration that says how to change them", err)
	}
}

// legacyStream is the stream of a shared consumer.
func legacyStream(durable string) string {
	for stream, d := range legacy {
		if d == durable {
			return stream
		}
	}
	return ""
}
