package crd

import (
	"context"
	"sync"
)

// rounds writes each key's changes one write at a time, and merges the
// changes that arrive while a write of the key is in progress into one
// next write: client-go's work queue semantics (a key waiting is not
// queued twice, and its writer reads the latest state when it takes it),
// but every caller learns the outcome of the write that covered its
// change, so a status event is acknowledged only once written.
//
// A write waits for nothing but the previous write of its key: a change
// that finds its key idle is written at once (no batching delay). While
// the API server is slow or the client rate-limited, the changes of one
// Rollout that pile up behind its write in progress cost one write
// together, not one each; and the status events and Counts' rewrites of
// one Rollout no longer race each other into conflicts.
type rounds[K comparable, C any] struct {
	write func(context.Context, K, []C) error

	mu sync.Mutex
	// next is the round of each key that collects changes; busy the keys
	// whose write is in progress.
	next map[K]*round[C]
	busy map[K]bool
}

// round is one write of a key: the changes it covers, and its outcome.
type round[C any] struct {
	// ctx is the context of the round's first change, under which it is
	// written.
	ctx     context.Context
	changes []C
	done    chan struct{}
	err     error
}

func newRounds[K comparable, C any](write func(context.Context, K, []C) error) *rounds[K, C] {
	return &rounds[K, C]{write: write, next: map[K]*round[C]{}, busy: map[K]bool{}}
}

// do adds c to k's next write and returns that write's error once it
// ran, or ctx's error if ctx ends first (the write still runs).
func (r *rounds[K, C]) do(ctx context.Context, k K, c C) error {
	r.mu.Lock()
	n := r.next[k]
	if n == nil {
		n = &round[C]{ctx: ctx, done: make(chan struct{})}
		r.next[k] = n
	}
	n.changes = append(n.changes, c)
	if !r.busy[k] {
		r.busy[k] = true
		go r.run(k)
	}
	r.mu.Unlock()
	select {
	case <-n.done:
		return n.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes k's rounds until none is waiting.
func (r *rounds[K, C]) run(k K) {
	for {
		r.mu.Lock()
		n := r.next[k]
		if n == nil {
			delete(r.busy, k)
			r.mu.Unlock()
			return
		}
		delete(r.next, k)
		r.mu.Unlock()
		if n.err = n.ctx.Err(); n.err == nil {
			n.err = r.write(n.ctx, k, n.changes)
		}
		close(n.done)
	}
}
