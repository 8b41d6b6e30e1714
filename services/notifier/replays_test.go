package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// TestChatReplaysAreRefusedByEveryReplica: a chat request one notifier
// replica accepted is refused when it is replayed to another (the state
// bucket remembers it), and without the bucket a request is not accepted
// blindly.
func TestChatReplaysAreRefusedByEveryReplica(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	bus := events.BusConfig{}
	bus.Defaults()
	if err := b.client.Provision(ctx, bus, bus.Bucket(BucketState, "test", 1)); err != nil {
		t.Fatal(err)
	}
	one, other := &chatReplays{client: b.client}, &chatReplays{client: eventstest.Connect(t, b.url)}
	now := time.Now()
	for _, c := range []struct {
		name    string
		replica *chatReplays
		sig     string
		want    bool
	}{
		{"first request, replica one", one, "v0=aaaa", true},
		{"the same request replayed to the other replica", other, "v0=aaaa", false},
		{"the same request replayed to replica one", one, "v0=aaaa", false},
		{"another request, the other replica", other, "v0=bbbb", true},
	} {
		got, err := c.replica.First(ctx, c.sig, now)
		if err != nil || got != c.want {
			t.Errorf("%s: First = %v, %v; want %v", c.name, got, err, c.want)
		}
	}

	bare := newBus(t)
	if got, err := (&chatReplays{client: bare.client}).First(ctx, "v0=cccc", now); err == nil || got {
		t.Errorf("without the state bucket: First = %v, %v; want an error, not an acceptance", got, err)
	}
}
