package analyzer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/deadlines"
)

// scheduler keeps every run record's wakeup, learnt by watching the runs
// bucket, and hands each record to work when its wakeup is due: at most one
// work call per key at a time, at most limit at once.
type scheduler struct {
	log  *slog.Logger
	now  func() time.Time
	work func(ctx context.Context, key string) (again time.Time)
	sem  chan struct{}

	queue *deadlines.Queue // wakeups not yet handed to work

	mu     sync.Mutex
	busy   map[string]bool // keys work is running for
	rerun  map[string]bool // keys that came due while busy
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// newScheduler returns a scheduler that calls work for due keys. work
// returns a time to try the key again, or zero when the bucket will say.
func newScheduler(log *slog.Logger, now func() time.Time, limit int, work func(context.Context, string) time.Time) *scheduler {
	return &scheduler{
		log: log, now: now, work: work, sem: make(chan struct{}, limit),
		queue: deadlines.New(), busy: map[string]bool{}, rerun: map[string]bool{},
	}
}

// watch starts following the bucket; it returns once the current entries
// have been read, so that runs from before a restart are known and the
// overdue ones are measured at once.
func (s *scheduler) watch(ctx context.Context, kv jetstream.KeyValue) error {
	ctx, s.cancel = context.WithCancel(ctx)
	watched, err := deadlines.Follow(ctx, kv, s.queue, s.log)
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

// set makes due the key's wakeup; nil forgets the key. A wakeup from the
// bucket replaces the one known; a retry asked for by work only fills in
// for none (replace false).
func (s *scheduler) set(key string, due *time.Time, replace bool) {
	switch {
	case due == nil:
		if replace {
			s.queue.Delete(key)
		}
	case replace:
		s.queue.Set(key, *due)
	default:
		s.queue.SetIfAbsent(key, *due)
	}
}

// loop hands due keys to work in order of their wakeups.
func (s *scheduler) loop(ctx context.Context) {
	for {
		key, _, ok, next, hasNext := s.queue.PopDue(s.now())
		if ok {
			s.dispatch(ctx, key)
			continue
		}
		if !s.queue.Wait(ctx.Done(), next, hasNext, s.now) {
			return
		}
	}
}

// dispatch starts work for a due key, or marks it to run again when work
// for it is already running.
func (s *scheduler) dispatch(ctx context.Context, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[key] {
		s.rerun[key] = true
		return
	}
	s.busy[key] = true
	s.done.Add(1)
	go s.run(ctx, key)
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
