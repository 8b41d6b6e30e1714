package events

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// BenchmarkPublish is one publish waiting for the stream's ack, file
// storage, one at a time: the latency floor of every Sluice effect. It runs
// with JetStream's default fsync interval and with an fsync per write
// (sync_interval: always), the setting that makes R1 safe against power loss.
func BenchmarkPublish(b *testing.B) {
	for _, always := range []bool{false, true} {
		name := "sync=default"
		if always {
			name = "sync=always"
		}
		b.Run(name, func(b *testing.B) {
			c := benchClientWith(b, embedded.Options{SyncAlways: always})
			ev := benchEvent(b)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ev.SetID(benchID(i))
				if _, err := c.Publish(ctx, cmdSubject("web"), ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublishParallel is many publishers at once on one connection.
func BenchmarkPublishParallel(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ev := benchEvent(b)
		for pb.Next() {
			ev.SetID(benchID(int(n.Add(1))))
			if _, err := c.Publish(ctx, cmdSubject("web"), ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRoundTrip is publish -> durable consumer -> handler -> ack, one
// event in flight: the latency of one hop between two services.
func BenchmarkRoundTrip(b *testing.B) {
	c := benchClient(b)
	handled := make(chan struct{})
	sub, err := c.Consume(context.Background(), ConsumerConfig{Stream: StreamCommands, Durable: "bench"}, func(context.Context, Delivery, Event) error {
		handled <- struct{}{}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Stop(context.Background())
	ev := benchEvent(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev.SetID(benchID(i))
		if _, err := c.Publish(ctx, cmdSubject("web"), ev); err != nil {
			b.Fatal(err)
		}
		<-handled
	}
}

// BenchmarkConsumeThroughput publishes b.N events on 78 subjects, then times
// a durable consumer with the default 4 workers handling all of them, with
// the default prefetch (8) and a larger one.
func BenchmarkConsumeThroughput(b *testing.B) {
	for _, prefetch := range []int{8, 64} {
		b.Run("prefetch="+itoa(prefetch), func(b *testing.B) {
			c := benchClient(b)
			ctx := context.Background()
			ev := benchEvent(b)
			for i := 0; i < b.N; i++ {
				ev.SetID(benchID(i))
				if _, err := c.Publish(ctx, cmdSubject("r"+itoa(i%78)), ev); err != nil {
					b.Fatal(err)
				}
			}
			var done atomic.Int64
			all := make(chan struct{})
			b.ResetTimer()
			start := time.Now()
			sub, err := c.Consume(ctx, ConsumerConfig{Stream: StreamCommands, Durable: "bench", Prefetch: prefetch}, func(context.Context, Delivery, Event) error {
				if done.Add(1) == int64(b.N) {
					close(all)
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			<-all
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			sub.Stop(ctx)
		})
	}
}

func benchClient(b *testing.B) *Client { return benchClientWith(b, embedded.Options{}) }

func benchClientWith(b *testing.B, opts embedded.Options) *Client {
	b.Helper()
	opts.StoreDir = b.TempDir()
	srv, err := embedded.Start(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Shutdown)
	ctx := context.Background()
	c, err := Connect(ctx, ConnConfig{URLs: []string{srv.ClientURL()}}, WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.Provision(ctx, BusConfig{}); err != nil {
		b.Fatal(err)
	}
	return c
}

func benchEvent(b *testing.B) Event {
	ev, err := New("/sluice/bench", TypeRolloutPromote, "default/web", PromoteData{Full: false})
	if err != nil {
		b.Fatal(err)
	}
	return ev
}

func benchID(i int) string { return "bench-" + time.Now().Format("150405.000000000") + "-" + itoa(i) }

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var buf [20]byte
	n := len(buf)
	for ; i > 0; i /= 10 {
		n--
		buf[n] = byte('0' + i%10)
	}
	return string(buf[n:])
}
