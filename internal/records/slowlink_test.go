package records

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/test/systest"
)

// TestUpdateOverASlowLink writes records through a link that delays
// every byte 500 ms each way (systest.DelayProxy), so that every request
// takes a second or more: the replicas service's pending tasks at
// TestSlowLinksToTheBus's 500 ms wave. The key to create was written and
// deleted before, as a pending task is once its task is done: creating it
// over its delete marker takes the client three requests (a write
// expecting no entry, which the marker refuses, a read of the marker, a
// write at its revision). Before the fix the three shared one 2 s attempt,
// the read was cut off, and the client reported the first refusal as the
// key existing, so every Update ended "8 concurrent updates in a row"
// though nobody else wrote.
func TestUpdateOverASlowLink(t *testing.T) {
	srv := eventstest.StartServer(t)
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := systest.StartDelayProxy(t, u.Host)
	c := eventstest.Connect(t, "nats://"+proxy.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kv, err := c.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(kv, Config[counter]{Name: "counter"})
	rev, err := s.Put(ctx, "deleted", counter{N: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "deleted", rev); err != nil {
		t.Fatal(err)
	}
	proxy.SetDelay(500 * time.Millisecond)

	for _, key := range []string{"deleted", "new"} {
		start := time.Now()
		calls := 0
		_, err := s.Update(ctx, key, func(rec *counter, _ uint64) error {
			calls++
			rec.N = 7
			return nil
		})
		if err != nil {
			t.Fatalf("update %s over a slow link: %v (change called %d times)", key, err, calls)
		}
		if calls != 1 {
			t.Errorf("update %s: change called %d times, want 1: nobody else writes", key, calls)
		}
		got, _, err := s.Get(ctx, key)
		if err != nil || got.N != 7 {
			t.Errorf("%s holds %+v (%v), want n=7", key, got, err)
		}
		t.Logf("%s: created in %s", key, time.Since(start).Round(10*time.Millisecond))
	}
}
