// Package bench measures Sluice against the physical limit of its bus, in
// one run on one machine (issue 8): BenchmarkBusLimit is a bare nats.go
// program doing exactly the bus work one rollout step needs (and, in its
// contract cases, the two status events the public contract asks of a
// step: issue 20), and the Sluice benchmarks run the real services on the
// same kind of embedded server, measuring both limits in their own run.
//
//	make bench   (or: go test -run '^$' -bench . ./test/bench)
package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// inFlight are the concurrencies BenchmarkBusLimit runs at: as many steps
// in flight as BenchmarkSluice has rollouts (each rollout has one step in
// flight at a time).
var inFlight = []int{1, 100, 1000, 10000}

// handlers is how many messages each side of BusLimit handles at once.
const handlers = 32

// latencies collects per-step latencies from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// report adds steps/s, p50 and p99 (in µs) to b.
func (l *latencies) report(b *testing.B, elapsed time.Duration) { l.reportAs(b, elapsed, "steps") }

// reportAs is report with the rate counted in what (what/s).
func (l *latencies) reportAs(b *testing.B, elapsed time.Duration, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	n := len(l.d)
	if n == 0 {
		return
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), what+"/s")
	b.ReportMetric(float64(l.d[n/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.d[min(n-1, n*99/100)].Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op") // the per-op time is meaningless here
}

// rate is how many latencies were added per second of elapsed.
func (l *latencies) rate(elapsed time.Duration) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(len(l.d)) / elapsed.Seconds()
}

// percentile is the p-th percentile (0 with none).
func (l *latencies) percentile(p int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	n := len(l.d)
	if n == 0 {
		return 0
	}
	return l.d[min(n-1, n*p/100)].Round(time.Microsecond)
}

// reportPercentiles adds the p50 and p99 (in µs) to b as
// <name>-p50-µs and <name>-p99-µs.
func (l *latencies) reportPercentiles(b *testing.B, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.Sort(l.d)
	if n := len(l.d); n > 0 {
		b.ReportMetric(float64(l.d[n/2].Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(l.d[min(n-1, n*99/100)].Microseconds()), name+"-p99-µs")
	}
}

// startServer runs an embedded server as Sluice's benchmarks do: file
// storage, default sync interval, in this process.
func startServer(tb testing.TB) *embedded.Server {
	tb.Helper()
	srv, err := embedded.Start(embedded.Options{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Shutdown)
	return srv
}

// BenchmarkBusLimit runs steps the way Sluice's services exchange them, with
// nothing else: the "orchestrator" publishes a task with a Nats-Msg-Id; the
// "worker" (its own connection and durable pull consumer) publishes a result
// with a Nats-Msg-Id and acks the task; the orchestrator's consumer receives
// the result, compare-and-swaps the rollout's key-value entry, acks the
// result and starts the next step. Latency is from the task's publish to
// the result's ack. n rollouts step at once, each one step at a time.
//
// The contract cases do the least bus work the public event contract asks
// of a step besides: the orchestrator publishes the finished step's
// step.completed and the next step's step.started status events, Sluice's
// own size, on the status stream pkg/events provisions, in one batch with
// the next task (as Sluice's orchestrator publishes a decision's effects).
func BenchmarkBusLimit(b *testing.B) {
	for _, n := range inFlight {
		for _, contract := range []bool{false, true} {
			name := fmt.Sprintf("inflight=%d", n)
			if contract {
				name = "contract," + name
			}
			b.Run(name, func(b *testing.B) {
				run := runLimit(b, n, max(b.N, n), contract)
				run.lat.report(b, run.elapsed)
			})
		}
	}
}

// limitRun is what one bare step loop measured.
type limitRun struct {
	elapsed time.Duration
	lat     latencies
	// statusEvents is how many status events the status stream stored
	// (0 without the contract).
	statusEvents uint64
}

// stepsPerSecond is the loop's throughput.
func (r *limitRun) stepsPerSecond() float64 { return r.lat.rate(r.elapsed) }

// runLimit runs total steps of the bare step loop with n in flight on a
// server of its own, which it shuts down before it returns (so that
// BenchmarkSluice can measure the limits in its own run without leaving
// them running beside the services). With contract set, each step also
// publishes the step's two status events.
func runLimit(tb testing.TB, n, total int, contract bool) *limitRun {
	tb.Helper()
	srv, err := embedded.Start(embedded.Options{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	connect := func(name string) jetstream.JetStream {
		nc, err := nats.Connect(srv.ClientURL(), nats.Name(name))
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, nc)
		// The contract's batches of three, n at once, stay under the
		// client's bound on publishes awaiting their ack (4,000 by
		// default), beyond which it refuses them.
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(max(4000, 4*n)))
		if err != nil {
			tb.Fatal(err)
		}
		return js
	}
	orch, work := connect("orchestrator"), connect("worker")
	for name, subject := range map[string]string{"TASKS": "bench.task.>", "RESULTS": "bench.result.>"} {
		if _, err := orch.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
			tb.Fatal(err)
		}
	}
	var status []statusPair
	if contract {
		if _, err := orch.CreateStream(ctx, statusStream()); err != nil {
			tb.Fatal(err)
		}
		status = make([]statusPair, n)
		for i := range status {
			status[i] = newStatusPair(tb, events.Ref{Namespace: "bench", Name: "r" + strconv.Itoa(i)})
		}
	}
	kv, err := orch.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench-state", Storage: jetstream.FileStorage})
	if err != nil {
		tb.Fatal(err)
	}
	revisions := make([]uint64, n)
	for i := range n {
		if revisions[i], err = kv.Create(ctx, "r"+strconv.Itoa(i), []byte("0")); err != nil {
			tb.Fatal(err)
		}
	}

	var (
		run     = &limitRun{}
		started = make([]time.Time, n)
		steps   = make([]int, n)
		mu      sync.Mutex
		done    = make(chan struct{})
		left    = total
		seq     int
	)
	// publishTask starts rollout i's next step; with the contract, the
	// status events of the step before (unless it is the first) and of
	// this one go with the task, in one batch.
	publishTask := func(i int, first bool) {
		mu.Lock()
		seq++
		id := "task-" + strconv.Itoa(seq)
		started[i] = time.Now()
		mu.Unlock()
		msg := &nats.Msg{Subject: "bench.task." + strconv.Itoa(i), Data: []byte(id), Header: nats.Header{}}
		if !contract {
			if _, err := orch.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil && ctx.Err() == nil {
				tb.Error(err)
			}
			return
		}
		var batch []outgoing
		if !first {
			batch = append(batch, status[i].completed.with(id+"-completed"))
		}
		batch = append(batch, status[i].started.with(id+"-started"), outgoing{msg, id})
		acks := make([]jetstream.PubAckFuture, 0, len(batch))
		for _, o := range batch {
			f, err := orch.PublishMsgAsync(o.msg, jetstream.WithMsgID(o.id))
			if err != nil {
				if ctx.Err() == nil {
					tb.Error(err)
				}
				return
			}
			acks = append(acks, f)
		}
		for _, f := range acks {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if ctx.Err() == nil {
					tb.Error(err)
				}
			case <-ctx.Done():
				return
			}
		}
	}
	tasks, err := work.CreateOrUpdateConsumer(ctx, "TASKS", jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		tb.Fatal(err)
	}
	// Both sides handle messages on a pool, as Sluice's consumers do: a
	// callback per message would serialise the round trips.
	pool := func(h func(jetstream.Msg)) jetstream.MessageHandler {
		sem := make(chan struct{}, handlers)
		return func(m jetstream.Msg) {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				h(m)
			}()
		}
	}
	wc, err := tasks.Consume(pool(func(m jetstream.Msg) {
		i := strings.TrimPrefix(m.Subject(), "bench.task.")
		res := &nats.Msg{Subject: "bench.result." + i, Data: m.Data(), Header: nats.Header{}}
		if _, err := work.PublishMsg(ctx, res, jetstream.WithMsgID("result-"+string(m.Data()))); err != nil && ctx.Err() == nil {
			tb.Error(err)
		}
		_ = m.Ack()
	}), jetstream.PullMaxMessages(64))
	if err != nil {
		tb.Fatal(err)
	}
	defer wc.Stop()
	results, err := orch.CreateOrUpdateConsumer(ctx, "RESULTS", jetstream.ConsumerConfig{Durable: "orchestrator", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		tb.Fatal(err)
	}
	oc, err := results.Consume(pool(func(m jetstream.Msg) {
		i, _ := strconv.Atoi(strings.TrimPrefix(m.Subject(), "bench.result."))
		mu.Lock()
		steps[i]++
		value := []byte(strconv.Itoa(steps[i]))
		rev := revisions[i]
		mu.Unlock()
		newRev, err := kv.Update(ctx, "r"+strconv.Itoa(i), value, rev)
		if err != nil && ctx.Err() == nil {
			tb.Error(err)
			return
		}
		_ = m.DoubleAck(ctx)
		mu.Lock()
		revisions[i] = newRev
		run.lat.add(time.Since(started[i]))
		left--
		more := left >= n
		if left == 0 {
			close(done)
		}
		mu.Unlock()
		if more {
			publishTask(i, false)
		}
	}), jetstream.PullMaxMessages(64))
	if err != nil {
		tb.Fatal(err)
	}
	defer oc.Stop()

	begin := time.Now()
	for i := range n {
		go publishTask(i, true)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		tb.Fatalf("%d of %d steps not done after 5m", left, total)
	}
	run.elapsed = time.Since(begin)
	if contract {
		st, err := orch.Stream(ctx, events.StreamStatus)
		if err != nil {
			tb.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		run.statusEvents = info.State.Msgs
	}
	return run
}
