package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watchCheck is how often a watch asks the leader of its bucket's stream
// how far the stream has gone. A watch is an ordered consumer, which
// JetStream may place on a replica of the bucket that lags behind (a node
// past its store limit goes on serving what it had): such a watch sees
// nothing written since. A watch that has not reached, by a check, the
// sequence the leader had at the check before is made again from the
// revision after the last it delivered, on a replica drawn afresh.
var watchCheck = 5 * time.Second

// WatchKV calls fn with every entry now in kv and then with every change
// (puts, deletes and purges) until ctx ends, from one goroutine, in order.
// It returns once the current entries have been passed to fn, so a caller
// that rebuilds state from a bucket knows it has seen all of it. done is
// closed when the watch has stopped. A watch that falls behind the
// bucket's stream leader is made again (watchCheck): fn may then be called
// again with changes it was given, in their order.
func WatchKV(ctx context.Context, kv jetstream.KeyValue, fn func(jetstream.KeyValueEntry)) (done <-chan struct{}, err error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch bucket %s: %w", kv.Bucket(), err)
	}
	initial := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer func() { _ = w.Stop() }()
		check := time.NewTicker(watchCheck)
		defer check.Stop()
		loaded := false
		// seen is the last revision delivered; owed, the leader's last
		// sequence at the last check.
		var seen, owed uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-check.C:
				if owed > seen {
					if again, err := kv.WatchAll(ctx, jetstream.ResumeFromRevision(seen+1)); err == nil {
						_ = w.Stop()
						w = again
					}
				}
				owed = leaderLastSeq(ctx, kv)
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if !loaded {
						loaded = true
						close(initial)
					}
					continue
				}
				seen = max(seen, e.Revision())
				fn(e)
			}
		}
	}()
	select {
	case <-initial:
		return stopped, nil
	case <-ctx.Done():
		<-stopped
		return stopped, ctx.Err()
	}
}

// leaderLastSeq is the last sequence of kv's stream as its leader has it
// (a stream info only the leader answers); 0 when it cannot be read, which
// makes no watch again.
func leaderLastSeq(ctx context.Context, kv jetstream.KeyValue) uint64 {
	ctx, cancel := context.WithTimeout(ctx, watchCheck)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return 0
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return 0
	}
	return bs.StreamInfo().State.LastSeq
}
