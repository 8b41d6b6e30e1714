package events

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
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

// TestASlowRolloutDoesNotHoldUpOthers: while one rollout's handler is
// stuck, the messages queued behind it wait, and every other rollout's
// messages, on the other worker, are handled meanwhile. Once it is
// released its messages are handled, in order, each once.
func TestASlowRolloutDoesNotHoldUpOthers(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	const workers = 2
	worker := func(name string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(Ref{Namespace: "default", Name: name}.String()))
		return h.Sum32() % workers
	}
	slow := "slow"
	var fast []string
	for i := 0; len(fast) < 5; i++ {
		if name := fmt.Sprintf("fast-%d", i); worker(name) != worker(slow) {
			fast = append(fast, name)
		}
	}
	const slowN, fastN = 6, 4
	for n := range slowN {
		publish(t, c, cmdSubject(slow), mustEvent(t, TypeRolloutPause, cmdSubject(slow), map[string]int{"n": n}))
	}
	for n := range fastN {
		for _, name := range fast {
			publish(t, c, cmdSubject(name), mustEvent(t, TypeRolloutPause, cmdSubject(name), map[string]int{"n": n}))
		}
	}

	release := make(chan struct{})
	var mu sync.Mutex
	var slowSeen []int
	var attempts []uint64
	var fastHandled atomic.Int32
	consume(t, c, ConsumerConfig{Stream: StreamCommands, Durable: "hol", Workers: workers, Prefetch: 4}, func(ctx context.Context, d Delivery, ev Event) error {
		if d.Subject != cmdSubject(slow) {
			fastHandled.Add(1)
			return nil
		}
		<-release
		var data struct{ N int }
		if err := DecodeData(ev, &data); err != nil {
			return Permanent(err)
		}
		mu.Lock()
		slowSeen, attempts = append(slowSeen, data.N), append(attempts, d.Attempt)
		mu.Unlock()
		return nil
	})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the subscription stops, should the test fail
	poll.Until(t, "other rollouts' messages handled while one rollout's handler is stuck", func() error {
		if n := fastHandled.Load(); n < int32(len(fast)*fastN) {
			return fmt.Errorf("%d of %d handled", n, len(fast)*fastN)
		}
		return nil
	})
	free()
	poll.Until(t, "the slow rollout's messages handled after its release", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(slowSeen) < slowN {
			return fmt.Errorf("%d of %d handled", len(slowSeen), slowN)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i, n := range slowSeen {
		if n != i || attempts[i] != 1 {
			t.Fatalf("the slow rollout's messages handled as %v (attempts %v), want 0..%d in order, each once", slowSeen, attempts, slowN-1)
		}
	}
}
