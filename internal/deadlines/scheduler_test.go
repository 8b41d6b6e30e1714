package deadlines

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

type call struct {
	key string
	due time.Time
}

// Without workers, keys are worked on one at a time in the order of their
// deadlines, each with its own deadline; what Work asks for comes again.
func TestSchedulerInOrderRetriesWhatWorkAsksFor(t *testing.T) {
	t0 := time.Now()
	calls := make(chan call, 16)
	failedOnce := false
	s := NewScheduler(SchedulerConfig{
		Logger: eventstest.Quiet(),
		Work: func(_ context.Context, key string, due time.Time) time.Time {
			calls <- call{key, due}
			if key == "b" && !failedOnce {
				failedOnce = true
				return t0 // as after a failure: again at once
			}
			return time.Time{}
		},
	})
	s.Set("c", t0.Add(-time.Second))
	s.Set("b", t0.Add(-2*time.Second))
	s.Set("a", t0.Add(-3*time.Second))
	s.Start(context.Background())
	defer s.Stop()

	want := []call{{"a", t0.Add(-3 * time.Second)}, {"b", t0.Add(-2 * time.Second)}, {"c", t0.Add(-time.Second)}, {"b", t0}}
	for i, w := range want {
		select {
		case got := <-calls:
			if got.key != w.key || !got.due.Equal(w.due) {
				t.Fatalf("call %d: %s due %v, want %s due %v", i, got.key, got.due, w.key, w.due)
			}
		case <-time.After(eventstest.Wait):
			t.Fatalf("call %d (%s) did not come", i, w.key)
		}
	}
}

// Watch hands out the deadlines of the bucket's entries, those written
// before it started included.
func TestSchedulerWatchesTheBucket(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv, err := c.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test"})
	if err != nil {
		t.Fatal(err)
	}
	due := time.Unix(1000, 0).UTC()
	put := func(key string) {
		if _, err := kv.Put(ctx, key, []byte(`{"wakeup":"`+due.Format(time.RFC3339)+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	put("before")
	calls := make(chan call, 4)
	s := NewScheduler(SchedulerConfig{
		Logger:  eventstest.Quiet(),
		Workers: 2,
		Work: func(_ context.Context, key string, due time.Time) time.Time {
			calls <- call{key, due}
			return time.Time{}
		},
	})
	if err := s.Watch(ctx, kv); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	put("after")
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case cl := <-calls:
			if !cl.due.Equal(due) {
				t.Errorf("%s handed out due %v, want %v", cl.key, cl.due, due)
			}
			got[cl.key] = true
		case <-time.After(eventstest.Wait):
			t.Fatalf("handed out %v, want before and after", got)
		}
	}
}
