package deadlines

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func TestQueueOrdersReplacesAndForgets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	q := New()
	q.Set("b", t0.Add(2*time.Second))
	q.Set("a", t0.Add(time.Second))
	q.Set("c", t0.Add(3*time.Second))
	q.Set("b", t0.Add(5*time.Second)) // replaces
	q.SetIfAbsent("a", t0)            // a has one: kept
	q.Delete("c")

	if _, _, ok, next, has := q.PopDue(t0); ok || !has || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("nothing due at t0; next = %v %v", next, has)
	}
	var got []string
	for _, at := range []time.Duration{time.Second, 10 * time.Second} {
		for {
			key, _, ok, _, _ := q.PopDue(t0.Add(at))
			if !ok {
				break
			}
			got = append(got, key)
		}
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("popped %v, want [a b] (c deleted, b moved to 5s)", got)
	}
	if _, _, ok, _, has := q.PopDue(t0.Add(time.Hour)); ok || has {
		t.Error("queue should be empty")
	}
	q.SetIfAbsent("a", t0)
	if key, _, ok, _, _ := q.PopDue(t0); !ok || key != "a" {
		t.Error("SetIfAbsent on a popped key should set it")
	}
}

func TestWaitWakesOnSetAndStopsOnDone(t *testing.T) {
	q := New()
	done := make(chan struct{})
	res := make(chan bool)
	go func() { res <- q.Wait(done, time.Time{}, false, time.Now) }()
	q.Set("x", time.Now())
	if !<-res {
		t.Fatal("Wait returned false on a Set")
	}
	close(done)
	// Drain the wake signal the Set may have left behind.
	select {
	case <-q.Wake():
	default:
	}
	if q.Wait(done, time.Time{}, false, time.Now) {
		t.Error("Wait returned true after done closed")
	}
}

func TestFollowMirrorsTheBucketsWakeups(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv, err := c.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0).UTC()
	put := func(key, value string) {
		if _, err := kv.Put(ctx, key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	put("early", `{"wakeup":"`+t0.Format(time.RFC3339)+`"}`)
	put("none", `{"state":"idle"}`)
	q := New()
	if _, err := Follow(ctx, kv, q, eventstest.Quiet()); err != nil {
		t.Fatal(err)
	}
	if key, _, ok, _, _ := q.PopDue(t0); !ok || key != "early" {
		t.Fatalf("an entry present before Follow returned is not due: %q %v", key, ok)
	}
	put("late", `{"wakeup":"`+t0.Add(time.Hour).Format(time.RFC3339)+`"}`)
	if err := kv.Delete(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	put("later", `{"wakeup":"`+t0.Add(2*time.Hour).Format(time.RFC3339)+`"}`)
	// "late" was deleted; "none" never had a deadline.
	poll.Until(t, "the next deadline to be t0+2h", func() error {
		_, _, ok, next, has := q.PopDue(t0)
		if ok {
			t.Fatal("nothing else is due at t0")
		}
		if !has || !next.Equal(t0.Add(2*time.Hour)) {
			return fmt.Errorf("next deadline %v %v", next, has)
		}
		return nil
	}, poll.Timeout(eventstest.Wait))
}

// Entries with "wakeup" first are read without a full decode; entries
// written before it led (or by another writer) are still read whole.
func TestWakeupReadsLeadingAndOtherEntries(t *testing.T) {
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, entry string
		want        *time.Time
	}{
		{"leading", `{"wakeup":"2026-11-26T12:00:00Z","phase":"Paused","state":{"big":[1,2,3]}}`, &at},
		{"leading null", `{"wakeup":null,"state":{}}`, nil},
		{"trailing", `{"state":{"wakeup":"2020-01-01T00:00:00Z"},"outbox":[],"wakeup":"2026-11-26T12:00:00Z"}`, &at},
		{"absent", `{"state":{}}`, nil},
	} {
		got, err := Wakeup([]byte(c.entry))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if (got == nil) != (c.want == nil) || (got != nil && !got.Equal(*c.want)) {
			t.Errorf("%s: wakeup %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := Wakeup([]byte(`{"wakeup": "soon"}`)); err == nil {
		t.Error("an unreadable wakeup is not an error")
	}
}
