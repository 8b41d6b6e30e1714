package events

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestConsumersKeepPullingUnderLoad runs several consumers with the smallest
// prefetch side by side, so that each pulls again after almost every
// message, many times a second, while the process is busy. The jetstream
// iterator may skip a re-pull it decides on while its previous pull request
// is still being sent, and then waits for its missed-heartbeat check (two
// idle heartbeats, 30 s by default) before pulling again: a consumer that
// stalls that way handles nothing for longer than waitFor.
func TestConsumersKeepPullingUnderLoad(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	const (
		subjects   = 20
		perSubject = 30
		consumers  = 4
		total      = subjects * perSubject
	)
	for n := 0; n < perSubject; n++ {
		for s := 0; s < subjects; s++ {
			subject := cmdSubject(fmt.Sprintf("svc-%d", s))
			publish(t, c, subject, mustEvent(t, TypeRolloutPause, subject, map[string]int{"n": n}))
		}
	}

	var handled [consumers]atomic.Int32
	for i := range consumers {
		cfg := ConsumerConfig{Stream: StreamCommands, Durable: fmt.Sprintf("loaded-%d", i), Workers: 4, Prefetch: 1 + i%2}
		consume(t, c, cfg, func(ctx context.Context, _ Delivery, ev Event) error {
			// A little work per event keeps the workers, and so the
			// dispatcher, busy.
			time.Sleep(time.Millisecond)
			handled[i].Add(1)
			return nil
		})
	}
	// Every consumer must keep going: healthy ones handle an event every
	// few milliseconds, a stalled one handles none for 30 s.
	var last [consumers]int32
	var since [consumers]time.Time
	for i := range consumers {
		since[i] = time.Now()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for done := 0; done < consumers; <-tick.C {
		done = 0
		for i := range consumers {
			n := handled[i].Load()
			switch {
			case n == total:
				done++
			case n != last[i]:
				last[i], since[i] = n, time.Now()
			case time.Since(since[i]) > waitFor:
				t.Fatalf("consumer loaded-%d handled no event for %s, at %d of %d: it stopped pulling", i, waitFor, n, total)
			}
		}
	}
}
