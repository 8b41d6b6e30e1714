package crd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/poll"
)

// The changes of a key that arrive while its write is in progress are
// written together by one next write, whose outcome each of their callers
// gets; a key whose write waits holds no other key back.
func TestRoundsMergeChangesThatWaitForAWrite(t *testing.T) {
	var (
		mu      sync.Mutex
		written [][]int
		// webWrites is touched by web's writes only, one at a time.
		webWrites int
	)
	release := make(chan struct{})
	refused := errors.New("API server refused the write")
	r := newRounds(func(_ context.Context, k string, changes []int) error {
		mu.Lock()
		changes = slices.Clone(changes)
		slices.Sort(changes)
		written = append(written, changes)
		mu.Unlock()
		if k != "web" {
			return nil
		}
		webWrites++
		n := webWrites
		if n == 1 {
			<-release // the API server is slow: changes pile up
		}
		if n == 2 {
			return refused
		}
		return nil
	})
	ctx := context.Background()
	results := make(chan error, 3)
	for i := 1; i <= 3; i++ {
		go func() { results <- r.do(ctx, "web", i) }()
		if i == 1 {
			poll.True(t, "the first change's write in progress", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(written) == 1
			})
		}
	}
	poll.True(t, "changes 2 and 3 waiting for the next write", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.next["web"] != nil && len(r.next["web"].changes) == 2
	})
	// Another Rollout is written at once, while web's write waits.
	if err := r.do(ctx, "api", 9); err != nil {
		t.Fatalf("api's write: %v", err)
	}
	close(release)
	var errs []error
	for range 3 {
		errs = append(errs, <-results)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(written); got != "[[1] [9] [2 3]]" {
		t.Errorf("writes %s, want [[1] [9] [2 3]]: the two changes that waited written by one write", got)
	}
	var refusedN, ok int
	for _, err := range errs {
		switch {
		case errors.Is(err, refused):
			refusedN++
		case err == nil:
			ok++
		}
	}
	if refusedN != 2 || ok != 1 {
		t.Errorf("results %v: want the merged write's error for both its changes and nil for the first", errs)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.busy) != 0 || len(r.next) != 0 {
		t.Errorf("after the writes: busy %v, next %v; want nothing left", r.busy, r.next)
	}
}

// BenchmarkRoundsIdle is what a write of an idle Rollout pays for the
// merging: the hand-off to the key's writer and back, with no waiting.
func BenchmarkRoundsIdle(b *testing.B) {
	r := newRounds(func(context.Context, string, []int) error { return nil })
	ctx := context.Background()
	for b.Loop() {
		if err := r.do(ctx, "web", 1); err != nil {
			b.Fatal(err)
		}
	}
}
