package events

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// WatchKV calls fn with every entry now in kv and then with every change
// (puts, deletes and purges) until ctx ends, from one goroutine, in order.
// It returns once the current entries have been passed to fn, so a caller
// that rebuilds state from a bucket knows it has seen all of it. done is
// closed when the watch has stopped.
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
		loaded := false
		for {
			select {
			case <-ctx.Done():
				return
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
