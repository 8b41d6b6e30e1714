package orchestrator

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// timers keeps every rollout's next deadline, learnt by watching the state
// bucket, and fires each once when it is due.
type timers struct {
	log  *slog.Logger
	now  func() time.Time
	fire func(ctx context.Context, r events.Ref, due time.Time) error

	mu      sync.Mutex
	current map[string]time.Time // key -> deadline not yet fired
	queue   deadlineHeap         // may hold superseded entries; checked against current
	wake    chan struct{}
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

func newTimers(log *slog.Logger, now func() time.Time, fire func(context.Context, events.Ref, time.Time) error) *timers {
	return &timers{log: log, now: now, fire: fire, current: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

// watch starts following the bucket; it returns once the current entries
// have been read, so that deadlines from before a restart are known.
func (t *timers) watch(ctx context.Context, kv jetstream.KeyValue) error {
	ctx, t.cancel = context.WithCancel(ctx)
	watched, err := events.WatchKV(ctx, kv, t.observe)
	if err != nil {
		t.cancel()
		return fmt.Errorf("timers: %w", err)
	}
	t.done.Add(2)
	go func() {
		defer t.done.Done()
		<-watched
	}()
	go func() {
		defer t.done.Done()
		t.loop(ctx)
	}()
	return nil
}

func (t *timers) stop() {
	if t.cancel != nil {
		t.cancel()
	}
	t.done.Wait()
}

// observe records the deadline of one bucket entry.
func (t *timers) observe(e jetstream.KeyValueEntry) {
	var rec struct {
		Wakeup *time.Time `json:"wakeup"`
	}
	if e.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.log.Warn("unreadable rollout state in bucket", "key", e.Key(), "error", err)
		}
	}
	t.set(e.Key(), rec.Wakeup)
}

func (t *timers) set(key string, due *time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if due == nil {
		delete(t.current, key)
		return
	}
	if cur, ok := t.current[key]; ok && cur.Equal(*due) {
		return
	}
	t.current[key] = *due
	heap.Push(&t.queue, deadline{key: key, due: *due})
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// loop fires due deadlines in order.
func (t *timers) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := t.fireDue(ctx)
		wait := time.Hour
		if ok {
			wait = max(next.Sub(t.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-timer.C:
		}
	}
}

// fireDue fires every deadline at or before now and returns the next one.
func (t *timers) fireDue(ctx context.Context) (time.Time, bool) {
	for {
		t.mu.Lock()
		if t.queue.Len() == 0 {
			t.mu.Unlock()
			return time.Time{}, false
		}
		d := t.queue[0]
		if cur, ok := t.current[d.key]; !ok || !cur.Equal(d.due) {
			heap.Pop(&t.queue) // superseded
			t.mu.Unlock()
			continue
		}
		if d.due.After(t.now()) {
			t.mu.Unlock()
			return d.due, true
		}
		heap.Pop(&t.queue)
		// Fired once; a new deadline for the key comes from the bucket.
		delete(t.current, d.key)
		t.mu.Unlock()

		r, err := refFromKey(d.key)
		if err != nil {
			t.log.Warn("bucket key is not a rollout", "key", d.key, "error", err)
			continue
		}
		if err := t.fire(ctx, r, d.due); err != nil {
			if ctx.Err() != nil {
				return time.Time{}, false
			}
			t.log.Warn("timer event not published; retrying", "rollout", r.String(), "error", err)
			retry := d.due
			t.mu.Lock()
			if _, superseded := t.current[d.key]; !superseded {
				t.current[d.key] = retry
				heap.Push(&t.queue, deadline{key: d.key, due: retry})
			}
			t.mu.Unlock()
			return t.now().Add(time.Second), true
		}
	}
}

type deadline struct {
	key string
	due time.Time
}

type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}
