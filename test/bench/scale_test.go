package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
	"github.com/sluicehq/sluice/test/systest"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

// scaleRollouts is how many rollouts BenchmarkAtScale keeps active
// (SLUICE_BENCH_ROLLOUTS overrides it, for a quick look).
var scaleRollouts = func() int {
	if n, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_ROLLOUTS")); err == nil && n > 0 {
		return n
	}
	return 10_000
}()

// pausedCanary pauses at 20% until promoted.
func pausedCanary(name, image string) string {
	return canary(name, image, "", `{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}`)
}

// rolloutStates follows the orchestrator's state bucket.
type rolloutStates struct {
	mu     sync.Mutex
	latest map[string]machine.State
	moved  map[string]time.Time // when each first reached step moveStep
	// moveStep is the step whose first reach is recorded in moved.
	moveStep int32
}

func (s *rolloutStates) count(cond func(machine.State) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, st := range s.latest {
		if cond(st) {
			n++
		}
	}
	return n
}

// BenchmarkAtScale runs the services as separate processes (the real
// orchestrator and analyzer binaries; the replicas and traffic services on
// the data plane, which completes tasks at once) and brings 10,000
// rollouts to a paused canary step. It reports:
//   - decisions/s while the rollouts are created and updated;
//   - each process's resident memory with the rollouts active, and the
//     orchestrator's growth per active rollout (orch-KB/rollout) over its
//     memory when idle; state-KB/rollout is the state bucket's size per
//     rollout, which the NATS server holds;
//   - recovery: the orchestrator is killed with SIGKILL, a promote is
//     queued for every rollout while it is down, and it is started again:
//     recovery-first-ms is from its start until the first rollout moves,
//     recovery-all-s until every rollout has moved.
func BenchmarkAtScale(b *testing.B) {
	for range b.N {
		atScale(b, scaleRollouts)
	}
}

func atScale(b *testing.B, n int) {
	bus := systest.StartBus(b)
	dp, err := dataplane.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dp.Close() })
	sys := systest.Start(b, systest.Spec{NATS: bus.URL, DataPlane: dp.URL(), LogDir: b.TempDir(), Restart: 5 * time.Second})
	poll.True(b, "every process ready", sys.Ready, poll.Timeout(5*time.Minute), poll.Every(50*time.Millisecond))
	ctx := context.Background()
	client, err := events.Connect(ctx, events.ConnConfig{URLs: []string{bus.URL}}, events.WithLogger(systest.Quiet()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	time.Sleep(time.Second)
	baseline := map[string]int64{}
	for _, p := range sys.Procs {
		baseline[p.Name] = p.RSS()
	}

	kv, err := client.JetStream().KeyValue(ctx, orchestrator.BucketRollouts)
	if err != nil {
		b.Fatal(err)
	}
	states := &rolloutStates{latest: map[string]machine.State{}, moved: map[string]time.Time{}, moveStep: 2}
	if _, err := events.WatchKV(ctx, kv, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut || orchestrator.IsRevisionPart(e.Key()) {
			return
		}
		st, err := orchestrator.DecodeState(e.Value())
		if err != nil {
			return
		}
		states.mu.Lock()
		states.latest[st.Ref.Name] = st
		if st.Revision == 2 && st.Step >= states.moveStep {
			if _, ok := states.moved[st.Ref.Name]; !ok {
				states.moved[st.Ref.Name] = time.Now()
			}
		}
		states.mu.Unlock()
	}); err != nil {
		b.Fatal(err)
	}
	st := &stack{admin: client, ctx: ctx}
	rollouts := names(n)
	waitAll := func(what string, cond func(machine.State) bool) {
		err := poll.Wait(what, func() error {
			if got := states.count(cond); got < n {
				return fmt.Errorf("%d of %d", got, n)
			}
			return nil
		}, poll.Timeout(20*time.Minute), poll.Every(100*time.Millisecond))
		if err != nil {
			b.Fatalf("%v\n%s", err, sys.LogTails(10))
		}
	}

	b.ResetTimer()
	begin := time.Now()
	st.request(b, rollouts, func(name string) string { return pausedCanary(name, "web:v1") })
	waitAll("live", func(s machine.State) bool { return s.Revision == 1 && s.Completed })
	st.request(b, rollouts, func(name string) string { return pausedCanary(name, "web:v2") })
	waitAll("paused", func(s machine.State) bool { return s.Revision == 2 && s.Step == 1 && s.Phase == "Paused" })
	elapsed := time.Since(begin)
	b.StopTimer()
	var writes int
	for _, s := range states.latest {
		writes += int(s.Version)
	}
	b.ReportMetric(float64(writes)/elapsed.Seconds(), "decisions/s")

	time.Sleep(2 * time.Second) // let garbage collection catch up
	for _, p := range sys.Procs {
		b.ReportMetric(float64(p.RSS())/(1<<20), p.Service+"-MB")
	}
	orch := sys.Proc("orchestrator-1")
	b.ReportMetric(float64(orch.RSS()-baseline[orch.Name])/1024/float64(n), "orch-KB/rollout")
	if info, err := client.JetStream().Stream(ctx, "KV_"+orchestrator.BucketRollouts); err == nil {
		b.ReportMetric(float64(info.CachedInfo().State.Bytes)/1024/float64(n), "state-KB/rollout")
	}

	// Recovery: promotes queue while the orchestrator is down.
	killed := time.Now()
	if !sys.Kill(orch) {
		b.Fatal("the orchestrator was not running")
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, name := range rollouts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			st.publish(b, events.Ref{Namespace: "bench", Name: name}, events.TypeRolloutPromote, json.RawMessage(`{}`))
		})
	}
	wg.Wait()
	queued := time.Since(killed)
	poll.True(b, "orchestrator-1 started again", func() bool { return orch.Started().After(killed) }, poll.Timeout(5*time.Minute))
	restarted := orch.Started()
	if queued > restarted.Sub(killed) {
		b.Logf("the promotes took %s to queue, longer than the orchestrator was down (%s)", queued, restarted.Sub(killed))
	}
	waitAll("moved", func(s machine.State) bool { return s.Revision == 2 && s.Step >= 2 })
	states.mu.Lock()
	var first, last time.Time
	for _, at := range states.moved {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	states.mu.Unlock()
	b.ReportMetric(float64(first.Sub(restarted).Microseconds())/1000, "recovery-first-ms")
	b.ReportMetric(last.Sub(restarted).Seconds(), "recovery-all-s")
	b.ReportMetric(0, "ns/op")
}
