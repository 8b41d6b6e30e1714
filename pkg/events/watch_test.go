package events

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/records/recordstest"
)

// TestWatchBehindTheLeaderIsMadeAgain starts watches of a bucket one of
// whose replicas fell behind (recordstest): JetStream places each watch's
// consumer on a replica of its choosing, about one in three on the one
// behind, which delivers nothing written since. Every watch must deliver
// an entry written after they started: before a watch was made again when
// it fell behind the leader, those on that replica never did, and the
// orchestrators' timers and the analyzer's schedule follow their buckets
// with such watches.
func TestWatchBehindTheLeaderIsMadeAgain(t *testing.T) {
	defer func(d time.Duration) { watchCheck = d }(watchCheck)
	watchCheck = 500 * time.Millisecond
	c := recordstest.Start(t)
	kv := c.Bucket(t, jetstream.KeyValueConfig{Bucket: "watched"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := kv.Put(ctx, "early", []byte("1")); err != nil {
		t.Fatal(err)
	}
	c.FallBehind(t, kv)

	delivered := make([]atomic.Bool, recordstest.Tries)
	for i := range delivered {
		if _, err := WatchKV(ctx, kv, func(e jetstream.KeyValueEntry) {
			if e.Key() == "late" {
				delivered[i].Store(true)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	written := time.Now()
	if _, err := kv.Put(ctx, "late", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for i := range delivered {
		poll.True(t, fmt.Sprintf("watch %d of %d delivering an entry written after the replica fell behind", i+1, len(delivered)), delivered[i].Load, poll.Timeout(time.Minute))
	}
	t.Logf("every watch of %d delivered the entry %s after it was written", len(delivered), time.Since(written).Round(10*time.Millisecond))
}
