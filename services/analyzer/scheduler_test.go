package analyzer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/deadlines"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// startScheduler runs a scheduler's loop without a bucket: the test sets
// the wakeups.
func startScheduler(t *testing.T, limit int, work func(context.Context, string) time.Time) *deadlines.Scheduler {
	t.Helper()
	s := newScheduler(eventstest.Quiet(), time.Now, limit, work)
	s.Start(context.Background())
	t.Cleanup(s.Stop)
	return s
}

func TestSchedulerWorksOneKeyAtATimeAndAgainWhenItCameDue(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	inFlight := map[string]int{}
	firstA := make(chan struct{})
	releaseA := make(chan struct{})
	done := make(chan string, 16)
	s := startScheduler(t, 4, func(ctx context.Context, key string) time.Time {
		mu.Lock()
		calls[key]++
		n := calls[key]
		inFlight[key]++
		if inFlight[key] > 1 {
			t.Errorf("key %s worked on twice at once", key)
		}
		mu.Unlock()
		if key == "a" && n == 1 {
			close(firstA)
			<-releaseA
		}
		mu.Lock()
		inFlight[key]--
		mu.Unlock()
		var again time.Time
		if key == "b" && n == 1 {
			again = time.Now().Add(50 * time.Millisecond) // as after a failure
		}
		done <- key
		return again
	})

	now := time.Now()
	s.Set("a", now)
	<-firstA
	// "a" comes due again while it is being worked on: once more after.
	again := time.Now()
	s.Set("a", again)
	s.Set("b", again)
	later := time.Now().Add(time.Hour)
	s.Set("c", later)
	s.Delete("c") // forgotten before it was due
	close(releaseA)

	want := map[string]int{"a": 2, "b": 2}
	got := map[string]int{}
	deadline := time.After(patience)
	for got["a"] < want["a"] || got["b"] < want["b"] {
		select {
		case k := <-done:
			got[k]++
		case <-deadline:
			t.Fatalf("work calls %v, want %v", got, want)
		}
	}
	select {
	case k := <-done:
		t.Fatalf("an extra call for %s", k)
	case <-time.After(100 * time.Millisecond):
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["c"] != 0 {
		t.Errorf("a forgotten key was worked on")
	}
}
