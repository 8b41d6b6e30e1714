package bench

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// rolloutCounts are the numbers of concurrent rollouts of BenchmarkSluice.
var rolloutCounts = []int{1, 100, 1000, 10000}

// tenSteps is a canary of ten setWeight steps through a router: each step
// is a route task (and, as the canary grows, scale tasks). The old revision
// goes as soon as the update completes (scaleDownDelaySeconds 0): the
// benchmark updates faster than the default 30 s delay, and every revision
// still waiting for its scale-down stays in the rollout's state, making
// each decision costlier (docs/benchmarks.md).
func tenSteps(name, image string) string {
	steps := ""
	for w := 10; w <= 100; w += 10 {
		steps += fmt.Sprintf(`{"setWeight": %d},`, w)
	}
	return canary(name, image, "", steps[:len(steps)-1])
}

// BenchmarkSluice runs the orchestrator, replicas (instant backend),
// traffic (instant router) and analyzer services, each on its own
// connection to one embedded server, and rolls n rollouts of ten steps out
// at once: the first revision straight to Healthy, a second one through
// every step to warm up, then as many more updates as make at least 1,000
// steps. A step's latency is from its step.started event to its
// step.completed event (the orchestrator's clock); steps/s counts every
// completed step of the update over the update's wall time.
//
// Each case first measures, on servers of its own that it stops before
// the services start, the bare step loops of BenchmarkBusLimit with n
// steps in flight (at least 10,000 steps, five per rollout at 10,000):
// the bus limit (task, result, compare-and-swap) and the contract's
// minimum (and the two status events), and reports Sluice's steps/s as a
// share of each (%-of-bus, %-of-contract), so that every ratio is taken in
// one process run, on the machine as it is then.
//
// The orchestrators=3 cases run three orchestrator replicas on the same
// consumers, where which replica decides on a rollout matters: each
// decision made on a record read from the bucket rather than the one the
// replica knew (stale-reads/step) and each lost compare-and-swap
// (conflicts/step) is reported, as in every case.
func BenchmarkSluice(b *testing.B) {
	for _, n := range rolloutCounts {
		b.Run(fmt.Sprintf("rollouts=%d", n), func(b *testing.B) {
			for range b.N {
				sluice(b, n, 1)
			}
		})
	}
	for _, n := range replicatedCounts {
		b.Run(fmt.Sprintf("orchestrators=3,rollouts=%d", n), func(b *testing.B) {
			for range b.N {
				sluice(b, n, 3)
			}
		})
	}
	// One owner per rollout (--partitions 8): the partitions' copies of
	// commands and results are one more hop through the server, and
	// the owner decides on the records it holds.
	for _, n := range replicatedCounts {
		for _, o := range []int{1, 3} {
			b.Run(fmt.Sprintf("orchestrators=%d,partitions=%d,rollouts=%d", o, benchPartitions, n), func(b *testing.B) {
				for range b.N {
					sluiceOf(b, n, o, benchPartitions)
				}
			})
		}
	}
}

// benchPartitions is --partitions in the partitioned cases.
const benchPartitions = 8

// replicatedCounts are the numbers of concurrent rollouts of
// BenchmarkSluice with three orchestrator replicas.
var replicatedCounts = []int{100, 1000}

func sluice(b *testing.B, n, orchestrators int) { sluiceOf(b, n, orchestrators, 0) }

func sluiceOf(b *testing.B, n, orchestrators, partitions int) {
	limitSteps := max(10000, 5*n)
	bare := runLimit(b, n, limitSteps, false)
	contract := runLimit(b, n, limitSteps, true)
	st := startStack(b, instantRouter{}, orchestrators, partitions)
	rollouts := names(n)

	// Follow every status event from here on: count rollout.completed
	// events and, during the measured updates, each step's latency.
	type stepKey struct {
		subject string
		index   int32
	}
	var (
		mu        sync.Mutex
		measuring bool
		lat       latencies
		completed = make(chan time.Time, n)
		failed    = make(chan string, n)
		started   = map[stepKey]time.Time{}
	)
	st.follow(b, events.StreamStatus, func(_ string, ev events.Event) {
		switch ev.Type() {
		case events.TypeRolloutCompleted:
			completed <- ev.Time()
		case events.TypeRolloutDegraded, events.TypeRolloutAborted:
			// The instant platform never fails a task: an update that
			// does not complete is a fault to report, not a wait.
			var d events.StatusData
			_ = events.DecodeData(ev, &d)
			select {
			case failed <- fmt.Sprintf("%s %s at %s: %s %s", ev.Subject(), ev.Type(), ev.Time().Format(time.RFC3339), d.Status.Message, d.Reason):
			default:
			}
		case events.TypeRolloutStepStarted, events.TypeRolloutStepCompleted:
			var d events.StatusData
			if err := events.DecodeData(ev, &d); err != nil || d.Step == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if !measuring {
				return
			}
			k := stepKey{ev.Subject(), d.Step.Index}
			if ev.Type() == events.TypeRolloutStepStarted {
				started[k] = ev.Time()
			} else if s, ok := started[k]; ok {
				lat.add(ev.Time().Sub(s))
			}
		}
	})
	update := func(version string) time.Time {
		st.request(b, rollouts, func(name string) string { return tenSteps(name, "web:"+version) })
		var last time.Time
		for done := 0; done < n; done++ {
			select {
			case last = <-completed:
			case why := <-failed:
				b.Fatalf("%d of %d rollouts completed web:%s, then one did not: %s", done, n, version, why)
			}
		}
		return last
	}

	// The first revision goes straight to Healthy; one update warms the
	// services up; then updates are measured until at least 1,000 steps.
	update("v1")
	if n < 10000 {
		update("v2") // at 10,000 the first revision has warmed up enough
	}
	rounds := max(1, 1000/(10*n))
	mu.Lock()
	measuring = true
	mu.Unlock()
	writes := st.stateWrites(b)
	const reads = "sluice_orchestrator_state_reads_total"
	stale := st.counter(b, reads, map[string]string{"reason": "stale"})
	lost := st.counter(b, reads, map[string]string{"reason": "conflict"})
	uncached := st.counter(b, reads, map[string]string{"reason": "uncached"})
	conflicts := st.counter(b, "sluice_orchestrator_cas_conflicts_total", nil)
	b.ResetTimer()
	var busy time.Duration
	for round := range rounds {
		begin := time.Now()
		last := update(fmt.Sprintf("v%d", round+3))
		busy += last.Sub(begin)
	}
	b.StopTimer()
	lat.report(b, busy)
	rate := lat.rate(busy)
	b.ReportMetric(bare.stepsPerSecond(), "bus-steps/s")
	b.ReportMetric(contract.stepsPerSecond(), "contract-steps/s")
	b.ReportMetric(100*rate/bare.stepsPerSecond(), "%-of-bus")
	b.ReportMetric(100*rate/contract.stepsPerSecond(), "%-of-contract")
	b.Logf("%d rollouts, %d orchestrator(s): Sluice %.0f steps/s (p50 %s, p99 %s) is %.1f%% of the bus limit %.0f steps/s (p50 %s, p99 %s) and %.1f%% of the contract's minimum %.0f steps/s (p50 %s, p99 %s), measured just before it",
		n, orchestrators, rate, lat.percentile(50), lat.percentile(99),
		100*rate/bare.stepsPerSecond(), bare.stepsPerSecond(), bare.lat.percentile(50), bare.lat.percentile(99),
		100*rate/contract.stepsPerSecond(), contract.stepsPerSecond(), contract.lat.percentile(50), contract.lat.percentile(99))
	// What a step costs the state bucket, whatever the machine's load:
	// the rollouts' state writes and the bytes they carried.
	count, bytes := writes()
	steps := float64(rounds * n * 10)
	b.ReportMetric(float64(count)/steps, "writes/step")
	b.ReportMetric(float64(bytes)/steps, "state-B/step")
	// How much of a state write changes only with a new revision: the
	// spec and the pod templates kept for history, in the states at rest
	// (what the record still holds inline, and the part kept apart).
	whole, revision, apart := st.stateParts(b)
	b.ReportMetric(whole, "rest-B/state")
	b.ReportMetric(revision, "revision-B/state")
	b.ReportMetric(apart, "part-B/state")
	// What the replicas' knowledge of each rollout costs: decisions made
	// again on the bucket's record because the one the replica knew was
	// out of date (or a write on the bucket's lost), decisions on a
	// rollout the replica knew nothing of, and lost writes.
	b.ReportMetric((stale()+lost())/steps, "stale-reads/step")
	b.ReportMetric(uncached()/steps, "uncached-reads/step")
	b.ReportMetric(conflicts()/steps, "conflicts/step")
}
