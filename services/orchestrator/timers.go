package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/deadlines"
	"github.com/sluicehq/sluice/pkg/events"
)

// timers keeps every rollout's next deadline, learnt by watching the state
// bucket, and fires each once when it is due.
type timers struct {
	log  *slog.Logger
	now  func() time.Time
	fire func(ctx context.Context, r events.Ref, due time.Time) error

	queue  *deadlines.Queue
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newTimers(log *slog.Logger, now func() time.Time, fire func(context.Context, events.Ref, time.Time) error) *timers {
	return &timers{log: log, now: now, fire: fire, queue: deadlines.New()}
}

// watch starts following the bucket; it returns once the current entries
// have been read, so that deadlines from before a restart are known.
func (t *timers) watch(ctx context.Context, kv jetstream.KeyValue) error {
	ctx, t.cancel = context.WithCancel(ctx)
	watched, err := deadlines.Follow(ctx, kv, t.queue, t.log)
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

// loop fires due deadlines in order. A deadline fires once; the next one
// for the rollout comes from the bucket.
func (t *timers) loop(ctx context.Context) {
	for {
		key, due, ok, next, hasNext := t.queue.PopDue(t.now())
		if ok {
			t.fireOne(ctx, key, due)
			continue
		}
		if !t.queue.Wait(ctx.Done(), next, hasNext, t.now) {
			return
		}
	}
}

func (t *timers) fireOne(ctx context.Context, key string, due time.Time) {
	r, err := refFromKey(key)
	if err != nil {
		t.log.Warn("bucket key is not a rollout", "key", key, "error", err)
		return
	}
	if err := t.fire(ctx, r, due); err != nil && ctx.Err() == nil {
		t.log.Warn("timer event not published; retrying in 1s", "rollout", r.String(), "error", err)
		// Unless the bucket moved the deadline meanwhile, try again soon.
		t.queue.SetIfAbsent(key, t.now().Add(time.Second))
	}
}
