package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
)

type batchEntry struct {
	rollout string
	n       int
	attempt uint64
}

type batchData struct {
	N    int    `json:"n"`
	Fail string `json:"fail,omitempty"`
}

// Messages of one rollout that wait while their worker is busy are handed
// over together, in order, and never mixed with another rollout's; each
// message is settled by its own result.
func TestConsumeBatchesHandsOverWhatWaitedTogether(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	var (
		mu      sync.Mutex
		batches [][]batchEntry
		handled = map[string]int{} // successful handlings per message
		hold    chan struct{}
		entered = make(chan struct{}, 1)
	)
	cfg := ConsumerConfig{Stream: StreamCommands, Durable: "batches", Workers: 1, Prefetch: 64,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
	sub, err := c.ConsumeBatches(context.Background(), cfg, func(ctx context.Context, batch []Message) []error {
		mu.Lock()
		h := hold
		hold = nil
		mu.Unlock()
		if h != nil {
			entered <- struct{}{}
			<-h
		}
		var entries []batchEntry
		errs := make([]error, len(batch))
		for i, m := range batch {
			r, err := RefFromSubject(m.Delivery.Subject)
			if err != nil {
				t.Error(err)
			}
			var d batchData
			if err := DecodeData(m.Event, &d); err != nil {
				t.Error(err)
			}
			name := fmt.Sprintf("%s/%d", r.Name, d.N)
			entries = append(entries, batchEntry{rollout: r.Name, n: d.N, attempt: m.Delivery.Attempt})
			switch {
			case d.Fail == "permanent":
				errs[i] = Permanent(errors.New("cannot be handled"))
			case d.Fail == "once" && m.Delivery.Attempt == 1:
				errs[i] = errors.New("try again")
			default:
				mu.Lock()
				handled[name]++
				mu.Unlock()
			}
		}
		mu.Lock()
		batches = append(batches, entries)
		mu.Unlock()
		return errs
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Stop(context.Background()) })

	cons, err := c.JetStream().Consumer(context.Background(), StreamCommands, "batches")
	if err != nil {
		t.Fatal(err)
	}
	const perRollout = 6
	want := map[string]int{}
	n := 0
	// A round: the worker is held on one message while more of two
	// rollouts arrive; once the process has them all, it is let go.
	// Batches form only when messages wait, so rounds go on until one did.
	poll.Until(t, "a batch of more than one message", func() error {
		mu.Lock()
		hold = make(chan struct{})
		h := hold
		mu.Unlock()
		first := n
		publish(t, c, cmdSubject("a"), mustEvent(t, TypeRolloutPause, cmdSubject("a"), batchData{N: n}))
		want[fmt.Sprintf("a/%d", n)] = 1
		n++
		<-entered
		for i := 0; i < perRollout; i++ {
			for _, name := range []string{"a", "b"} {
				d := batchData{N: n}
				switch n - first {
				case 3:
					d.Fail = "once"
				case 5:
					d.Fail = "permanent"
				}
				publish(t, c, cmdSubject(name), mustEvent(t, TypeRolloutPause, cmdSubject(name), d))
				if d.Fail != "permanent" {
					want[fmt.Sprintf("%s/%d", name, n)] = 1
				}
				n++
			}
		}
		poll.Until(t, "every message of the round delivered to the process", func() error {
			info, err := cons.Info(context.Background())
			if err != nil {
				return err
			}
			if info.NumAckPending != 2*perRollout+1 {
				return fmt.Errorf("%d delivered and unacknowledged", info.NumAckPending)
			}
			return nil
		})
		close(h)
		poll.Until(t, "every message of the round handled", func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(handled) != len(want) {
				return fmt.Errorf("%d of %d handled", len(handled), len(want))
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		for _, b := range batches {
			if len(b) > 1 {
				return nil
			}
		}
		return fmt.Errorf("every batch so far had one message: %v", batches)
	})

	mu.Lock()
	defer mu.Unlock()
	for name, times := range handled {
		if times != want[name] {
			t.Errorf("%s handled %d times, want %d", name, times, want[name])
		}
	}
	// In each batch: one rollout, first deliveries in the order published.
	for _, b := range batches {
		last := -1
		for _, e := range b {
			if e.rollout != b[0].rollout {
				t.Errorf("batch mixes rollouts: %v", b)
			}
			if e.attempt > 1 {
				continue // a retried message comes back behind newer ones
			}
			if e.n < last {
				t.Errorf("batch out of order: %v", b)
			}
			last = e.n
		}
	}
	poll.Until(t, "the permanent failures dead-lettered", func() error {
		if got, want := len(deadLetters(t, c)), n/(2*perRollout+1); got < want {
			return fmt.Errorf("%d dead letters, want %d", got, want)
		}
		return nil
	})
}

// A message whose handling panics is retried and dead-lettered alone: the
// messages that waited with it are handed over again one at a time and
// handled, not retried with it until MaxDeliver dead-letters them too.
func TestConsumeBatchesIsolatesAPanickingMessage(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	var (
		mu       sync.Mutex
		handled  = map[int]int{}
		largest  int
		release  = make(chan struct{})
		released bool
	)
	cfg := ConsumerConfig{Stream: StreamCommands, Durable: "poison", Workers: 1, Prefetch: 64, MaxDeliver: 3,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
	sub, err := c.ConsumeBatches(context.Background(), cfg, func(ctx context.Context, batch []Message) []error {
		mu.Lock()
		if len(batch) > largest {
			largest = len(batch)
		}
		mu.Unlock()
		for _, m := range batch {
			var d batchData
			if err := DecodeData(m.Event, &d); err != nil {
				t.Error(err)
			}
			switch d.Fail {
			case "hold":
				mu.Lock()
				wait := !released
				released = true
				mu.Unlock()
				if wait {
					<-release
				}
			case "panic":
				panic("poison")
			}
		}
		mu.Lock()
		for _, m := range batch {
			var d batchData
			_ = DecodeData(m.Event, &d)
			handled[d.N]++
		}
		mu.Unlock()
		return make([]error, len(batch))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Stop(context.Background()) })

	// The worker is held on the first message while the poison and five
	// more of the same rollout arrive, so they wait, and go, together.
	publish(t, c, cmdSubject("a"), mustEvent(t, TypeRolloutPause, cmdSubject("a"), batchData{N: 0, Fail: "hold"}))
	publish(t, c, cmdSubject("a"), mustEvent(t, TypeRolloutPause, cmdSubject("a"), batchData{N: 1, Fail: "panic"}))
	for n := 2; n <= 6; n++ {
		publish(t, c, cmdSubject("a"), mustEvent(t, TypeRolloutPause, cmdSubject("a"), batchData{N: n}))
	}
	cons, err := c.JetStream().Consumer(context.Background(), StreamCommands, "poison")
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the six messages behind the first waiting in the process", func() error {
		info, err := cons.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumAckPending < 7 {
			return fmt.Errorf("%d delivered, not settled", info.NumAckPending)
		}
		return nil
	})
	close(release)
	poll.Until(t, "every message but the poison handled", func() error {
		mu.Lock()
		defer mu.Unlock()
		for n := 2; n <= 6; n++ {
			if handled[n] == 0 {
				return fmt.Errorf("message %d not handled; handled %v", n, handled)
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if largest < 2 {
		t.Errorf("no batch of more than one message formed (largest %d): the test proves nothing", largest)
	}
	if handled[1] != 0 {
		t.Errorf("the poison message was handled %d times", handled[1])
	}
}
