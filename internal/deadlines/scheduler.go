package deadlines

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	// Work is called with a key whose deadline, due, has come. It returns a time
	// to call it again for the key, unless the bucket says otherwise
	// first, or zero when the bucket will say (as after a success).
	Work func(ctx context.Context, key string, due time.Time) (again time.Time)
	// Workers bounds the keys worked on at once, each on a goroutine of
	// its own, one call per key at a time; a key that comes due again
	// while it is worked on is worked on once more after. Zero works on
	// one key at a time, in the order of their deadlines, on the
	// scheduler's own goroutine.
	Workers int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives warnings about unreadable entries (default
	// slog.Default()).
	Logger *slog.Logger
}

// Scheduler keeps the deadlines of a key-value bucket's entries, learnt by
// following the bucket (Follow), and hands each key to Work when its
// deadline is due. A deadline is handed out once; the next one for the key
// comes from the bucket (or from what Work returns).
type Scheduler struct {
	cfg   SchedulerConfig
	queue *Queue // deadlines not yet handed to Work
	sem   chan struct{}

	mu     sync.Mutex
	busy   map[string]bool      // keys Work is running for
	rerun  map[string]time.Time // keys that came due while busy
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// NewScheduler returns a scheduler; Watch or Start sets it going.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Scheduler{cfg: cfg, queue: New(), busy: map[string]bool{}, rerun: map[string]time.Time{}}
	if cfg.Workers > 0 {
		s.sem = make(chan struct{}, cfg.Workers)
	}
	return s
}

// Watch follows kv and starts handing out its due deadlines. It returns
// once the bucket's current entries have been read, so that deadlines
// from before a restart are known and the overdue ones are handed out at
// once.
func (s *Scheduler) Watch(ctx context.Context, kv jetstream.KeyValue) error {
	ctx, cancel := context.WithCancel(ctx)
	watched, err := Follow(ctx, kv, s.queue, s.cfg.Logger)
	if err != nil {
		cancel()
		return fmt.Errorf("follow the deadlines of bucket %s: %w", kv.Bucket(), err)
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		<-watched
	}()
	s.start(ctx, cancel)
	return nil
}

// Start hands out the deadlines given with Set, without a bucket, until
// Stop.
func (s *Scheduler) Start(ctx context.Context) {
	s.start(context.WithCancel(ctx))
}

func (s *Scheduler) start(ctx context.Context, cancel context.CancelFunc) {
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		s.loop(ctx)
	}()
}

// Stop ends the watch, cancels the work in progress and waits for it.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.done.Wait()
}

// Set makes due the key's deadline, replacing the one known.
func (s *Scheduler) Set(key string, due time.Time) { s.queue.Set(key, due) }

// Delete forgets the key's deadline.
func (s *Scheduler) Delete(key string) { s.queue.Delete(key) }

// loop hands out due keys in the order of their deadlines.
func (s *Scheduler) loop(ctx context.Context) {
	for {
		key, due, ok, next, hasNext := s.queue.PopDue(s.cfg.Now())
		switch {
		case ok && s.sem == nil:
			s.again(ctx, key, s.cfg.Work(ctx, key, due))
		case ok:
			s.dispatch(ctx, key, due)
		case !s.queue.Wait(ctx.Done(), next, hasNext, s.cfg.Now):
			return
		}
	}
}

// again sets the time Work asked to be called again for key, unless the
// bucket set a deadline for it meanwhile.
func (s *Scheduler) again(ctx context.Context, key string, at time.Time) {
	if !at.IsZero() && ctx.Err() == nil {
		s.queue.SetIfAbsent(key, at)
	}
}

// dispatch starts work for a due key, or marks it to run again when work
// for it is already running.
func (s *Scheduler) dispatch(ctx context.Context, key string, due time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[key] {
		s.rerun[key] = due
		return
	}
	s.busy[key] = true
	s.done.Add(1)
	go s.run(ctx, key, due)
}

// run calls Work for key, within the concurrency limit, and then calls it
// again if the key came due meanwhile.
func (s *Scheduler) run(ctx context.Context, key string, due time.Time) {
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
		again := s.cfg.Work(ctx, key, due)
		<-s.sem

		s.mu.Lock()
		if later, ok := s.rerun[key]; ok && ctx.Err() == nil {
			delete(s.rerun, key)
			due = later
			s.mu.Unlock()
			continue
		}
		delete(s.busy, key)
		s.mu.Unlock()
		s.again(ctx, key, again)
		return
	}
}
