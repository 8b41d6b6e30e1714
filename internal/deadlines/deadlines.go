// Package deadlines keeps one deadline per key and hands them out in time
// order. A Scheduler rebuilds the deadlines from a key-value bucket
// (Follow) and hands each due key to its work: the orchestrator's timers
// and the analyzer's measurement schedule are both one.
package deadlines

import (
	"container/heap"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/jsonlead"
	"github.com/sluicehq/sluice/pkg/events"
)

// Queue holds at most one deadline per key. It is safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	current map[string]time.Time
	order   entries // may hold superseded entries, skipped against current
	wake    chan struct{}
}

// New returns an empty queue.
func New() *Queue {
	return &Queue{current: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

// Set makes due the key's deadline, replacing any other, and wakes a waiter.
func (q *Queue) Set(key string, due time.Time) {
	q.set(key, due, true)
}

// SetIfAbsent sets the key's deadline only when it has none.
func (q *Queue) SetIfAbsent(key string, due time.Time) {
	q.set(key, due, false)
}

func (q *Queue) set(key string, due time.Time, replace bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur, ok := q.current[key]; ok && (cur.Equal(due) || !replace) {
		return
	}
	q.current[key] = due
	heap.Push(&q.order, entry{key: key, due: due})
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Delete forgets the key's deadline.
func (q *Queue) Delete(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.current, key)
}

// PopDue removes and returns the earliest deadline at or before now. When
// none is due it returns the next deadline (ok false, next set when there
// is one).
func (q *Queue) PopDue(now time.Time) (key string, due time.Time, ok bool, next time.Time, hasNext bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.order.Len() > 0 {
		e := q.order[0]
		if cur, known := q.current[e.key]; !known || !cur.Equal(e.due) {
			heap.Pop(&q.order) // superseded
			continue
		}
		if e.due.After(now) {
			return "", time.Time{}, false, e.due, true
		}
		heap.Pop(&q.order)
		delete(q.current, e.key)
		return e.key, e.due, true, time.Time{}, false
	}
	return "", time.Time{}, false, time.Time{}, false
}

// Wake is signalled when a deadline is set, so that a waiter can look
// again at the earliest one.
func (q *Queue) Wake() <-chan struct{} { return q.wake }

// Wait blocks until the next deadline is due (as now tells), a deadline is
// set, or done is closed. It returns false when done is closed.
func (q *Queue) Wait(done <-chan struct{}, next time.Time, hasNext bool, now func() time.Time) bool {
	wait := time.Hour
	if hasNext {
		wait = max(next.Sub(now()), 0)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-q.wake:
	case <-t.C:
	}
	return true
}

type entry struct {
	key string
	due time.Time
}

type entries []entry

func (h entries) Len() int           { return len(h) }
func (h entries) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entries) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entries) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *entries) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Follow keeps q in step with the key-value bucket kv: an entry's JSON
// field "wakeup" is its key's deadline, and an entry without one (or with
// null), or a deleted entry, has none. Writers that put "wakeup" first
// spare the watcher a scan of the whole entry (jsonlead.Fields). It
// returns once the bucket's current entries are in q; the returned channel
// is closed when following stops (ctx ended).
func Follow(ctx context.Context, kv jetstream.KeyValue, q *Queue, log *slog.Logger) (<-chan struct{}, error) {
	return events.WatchKV(ctx, kv, func(e jetstream.KeyValueEntry) {
		var wakeup *time.Time
		if e.Operation() == jetstream.KeyValuePut {
			var err error
			if wakeup, err = Wakeup(e.Value()); err != nil {
				log.Warn("unreadable entry in bucket; its deadline is ignored", "bucket", kv.Bucket(), "key", e.Key(), "error", err)
			}
		}
		if wakeup == nil {
			q.Delete(e.Key())
			return
		}
		q.Set(e.Key(), *wakeup)
	})
}

// Wakeup reads the "wakeup" field of a bucket entry (nil when absent or
// null).
func Wakeup(entry []byte) (*time.Time, error) {
	var rec struct {
		Wakeup *time.Time `json:"wakeup"`
	}
	if lead, ok := jsonlead.Fields(entry, "wakeup"); ok {
		err := json.Unmarshal(lead["wakeup"], &rec.Wakeup)
		return rec.Wakeup, err
	}
	err := json.Unmarshal(entry, &rec)
	return rec.Wakeup, err
}
