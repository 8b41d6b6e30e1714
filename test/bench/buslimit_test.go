// Package bench measures Sluice against the physical limit of its bus, in
// one run on one machine (issue 8): BenchmarkBusLimit is a bare nats.go
// program doing exactly the bus work one rollout step needs, and the Sluice
// benchmarks run the real services on the same embedded server.
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
func startServer(b *testing.B) *embedded.Server {
	b.Helper()
	srv, err := embedded.Start(embedded.Options{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	return srv
}

// BenchmarkBusLimit runs steps the way Sluice's services exchange them, with
// nothing else: the "orchestrator" publishes a task with a Nats-Msg-Id; the
// "worker" (its own connection and durable pull consumer) publishes a result
// with a Nats-Msg-Id and acks the task; the orchestrator's consumer receives
// the result, compare-and-swaps the rollout's key-value entry, acks the
// result and starts the next step. Latency is from the task's publish to
// the result's ack. n rollouts step at once, each one step at a time.
func BenchmarkBusLimit(b *testing.B) {
	for _, n := range inFlight {
		b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) { busLimit(b, n) })
	}
}

func busLimit(b *testing.B, n int) {
	srv := startServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	connect := func(name string) jetstream.JetStream {
		nc, err := nats.Connect(srv.ClientURL(), nats.Name(name))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		return js
	}
	orch, work := connect("orchestrator"), connect("worker")
	for name, subject := range map[string]string{"TASKS": "bench.task.>", "RESULTS": "bench.result.>"} {
		if _, err := orch.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
	kv, err := orch.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench-state", Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	revisions := make([]uint64, n)
	for i := range n {
		if revisions[i], err = kv.Create(ctx, "r"+strconv.Itoa(i), []byte("0")); err != nil {
			b.Fatal(err)
		}
	}

	total := b.N
	if total < n {
		total = n
	}
	var (
		lat     latencies
		started = make([]time.Time, n)
		steps   = make([]int, n)
		mu      sync.Mutex
		done    = make(chan struct{})
		left    = total
		seq     int
	)
	publishTask := func(i int) {
		mu.Lock()
		seq++
		id := "task-" + strconv.Itoa(seq)
		started[i] = time.Now()
		mu.Unlock()
		msg := &nats.Msg{Subject: "bench.task." + strconv.Itoa(i), Data: []byte(id), Header: nats.Header{}}
		if _, err := orch.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil && ctx.Err() == nil {
			b.Error(err)
		}
	}
	tasks, err := work.CreateOrUpdateConsumer(ctx, "TASKS", jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		b.Fatal(err)
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
			b.Error(err)
		}
		_ = m.Ack()
	}), jetstream.PullMaxMessages(64))
	if err != nil {
		b.Fatal(err)
	}
	defer wc.Stop()
	results, err := orch.CreateOrUpdateConsumer(ctx, "RESULTS", jetstream.ConsumerConfig{Durable: "orchestrator", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		b.Fatal(err)
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
			b.Error(err)
			return
		}
		_ = m.DoubleAck(ctx)
		mu.Lock()
		revisions[i] = newRev
		lat.add(time.Since(started[i]))
		left--
		more := left >= n
		if left == 0 {
			close(done)
		}
		mu.Unlock()
		if more {
			publishTask(i)
		}
	}), jetstream.PullMaxMessages(64))
	if err != nil {
		b.Fatal(err)
	}
	defer oc.Stop()

	b.ResetTimer()
	begin := time.Now()
	for i := range n {
		go publishTask(i)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d steps not done after 5m", left, total)
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	lat.report(b, elapsed)
}
