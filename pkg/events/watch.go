package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

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

// LeadingFields returns the raw values of the named fields of the JSON
// object data when they are its first keys, in any order: a watcher of a
// bucket whose writers put small fields first reads them without scanning
// the rest of a large entry. ok is false when another key comes before all
// of them were found, or data is not an object; the caller then decodes
// the whole entry.
func LeadingFields(data []byte, names ...string) (values map[string]json.RawMessage, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	values = make(map[string]json.RawMessage, len(names))
	for len(values) < len(names) {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, isKey := t.(string)
		if !isKey || !slices.Contains(names, key) {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		values[key] = v
	}
	return values, true
}
