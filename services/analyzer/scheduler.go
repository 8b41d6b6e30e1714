package analyzer

import (
	"container/heap"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// scheduler keeps every run record's wakeup, learnt by watching the runs
// bucket, and hands each record to work when its wakeup is due: at most one
// work call per key at a time, at most limit at once.
type scheduler struct {
	log  *slog.Logger
	now  func() time.Time
	work func(ctx context.Context, key string) (again time.Time)
	sem  chan struct{}

	mu      sync.Mutex
	current map[string]time.Time // key -> wakeup not yet handed to work
	queue   wakeupHeap           // may hold superseded entries; checked against current
	busy    map[string]bool      // keys work is running for
	rerun   map[string]bool      // keys that came due while busy
	wake    chan struct{}
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

// newScheduler returns a scheduler that calls work for due keys. work
// returns a time to try the key again, or zero when the bucket will say.
func newScheduler(log *slog.Logger, now func() time.Time, limit int, work func(context.Context, string) time.Time) *scheduler {
	return &scheduler{
		log: log, now: now, work: work, sem: make(chan struct{}, limit),
		current: map[string]time.Time{}, busy: map[string]bool{}, rerun: map[string]bool{},
		wake: make(chan struct{}, 1),
	}
}

// watch starts following the bucket; it returns once the current entries
// have been read, so that runs from before a restart are known and the
// overdue ones are measured at once.
func (s *scheduler) watch(ctx context.Context, kv jetstream.KeyValue) error {
	ctx, s.cancel = context.WithCancel(ctx)
	watched, err := events.WatchKV(ctx, kv, s.observe)
	if err != nil {
		s.cancel()
		return err
	}
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		<-watched
	}()
	go func() {
		defer s.done.Done()
		s.loop(ctx)
	}()
	return nil
}

// stop ends the watch, cancels the work in progress and waits for it.
func (s *scheduler) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.done.Wait()
}

// observe records the wakeup of one bucket entry.
func (s *scheduler) observe(e jetstream.KeyValueEntry) {
	var rec struct {
		Wakeup *time.Time `json:"wakeup"`
	}
	if e.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			s.log.Warn("unreadable analysis run in bucket", "key", e.Key(), "error", err)
		}
	}
	s.set(e.Key(), rec.Wakeup, true)
}

// set makes due the key's wakeup; nil forgets the key. A wakeup from the
// bucket replaces the one known; a retry asked for by work only fills in
// for none (replace false).
func (s *scheduler) set(key string, due *time.Time, replace bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, known := s.current[key]
	switch {
	case due == nil:
		if replace {
			delete(s.current, key)
		}
		return
	case known && (cur.Equal(*due) || !replace):
		return
	}
	s.current[key] = *due
	heap.Push(&s.queue, wakeup{key: key, due: *due})
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop hands due keys to work in order of their wakeups.
func (s *scheduler) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := s.dispatchDue(ctx)
		wait := time.Hour
		if ok {
			wait = max(next.Sub(s.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// dispatchDue starts work for every key due at or before now and returns
// the next wakeup.
func (s *scheduler) dispatchDue(ctx context.Context) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.queue.Len() > 0 {
		w := s.queue[0]
		if cur, ok := s.current[w.key]; !ok || !cur.Equal(w.due) {
			heap.Pop(&s.queue) // superseded
			continue
		}
		if w.due.After(s.now()) {
			return w.due, true
		}
		heap.Pop(&s.queue)
		delete(s.current, w.key)
		if s.busy[w.key] {
			s.rerun[w.key] = true
			continue
		}
		s.busy[w.key] = true
		s.done.Add(1)
		go s.run(ctx, w.key)
	}
	return time.Time{}, false
}

// run calls work for key, within the concurrency limit, and then runs it
// again if the key came due meanwhile.
func (s *scheduler) run(ctx context.Context, key string) {
	defer s.done.Done()
	for {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			s.mu.Lock()
			delete(s.busy, key)
			s.mu.Unlock()
			return
		}
		again := s.work(ctx, key)
		<-s.sem

		s.mu.Lock()
		if s.rerun[key] && ctx.Err() == nil {
			delete(s.rerun, key)
			s.mu.Unlock()
			continue
		}
		delete(s.busy, key)
		s.mu.Unlock()
		if !again.IsZero() && ctx.Err() == nil {
			s.set(key, &again, false)
		}
		return
	}
}

type wakeup struct {
	key string
	due time.Time
}

type wakeupHeap []wakeup

func (h wakeupHeap) Len() int           { return len(h) }
func (h wakeupHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h wakeupHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *wakeupHeap) Push(x any)        { *h = append(*h, x.(wakeup)) }
func (h *wakeupHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	*h = old[:len(old)-1]
	return w
}
