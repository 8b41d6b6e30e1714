// Package endpoints is how the local platform's replicas service tells its
// traffic service where a revision's ready processes listen: one entry per
// revision in the JetStream key-value bucket sluice-endpoints, written by the
// replicas service whenever readiness changes and watched by the proxy. It is
// the local platform's stand-in for Kubernetes Endpoints.
package endpoints

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// Bucket is the key-value bucket that holds the entries.
const Bucket = "sluice-endpoints"

// Revision is where one revision's ready processes listen.
type Revision struct {
	Ref      events.Ref `json:"ref"`
	Revision int64      `json:"revision"`
	PodHash  string     `json:"podHash"`
	// Ready lists host:port of every ready process, sorted.
	Ready []string `json:"ready"`
	// MetricsPath is where each process serves Prometheus metrics, when the
	// pod template says so (annotation prometheus.io/path), else /metrics.
	MetricsPath string    `json:"metricsPath,omitempty"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Key is the entry key of one revision: <namespace>.<name>.<podHash>.
func Key(r events.Ref, podHash string) string {
	return r.Namespace + "." + r.Name + "." + podHash
}

// ParseKey splits a key into the rollout and pod hash.
func ParseKey(k string) (events.Ref, string, error) {
	parts := strings.Split(k, ".")
	if len(parts) != 3 {
		return events.Ref{}, "", fmt.Errorf("endpoints key %q is not <namespace>.<name>.<podHash>", k)
	}
	r := events.Ref{Namespace: parts[0], Name: parts[1]}
	return r, parts[2], r.Validate()
}

// Config returns the bucket's configuration on the bus's storage.
func Config(bus events.BusConfig) jetstream.KeyValueConfig {
	bus.Defaults()
	return bus.Bucket(Bucket, "Sluice local platform: ready processes per revision", 1)
}

// Store reads and writes entries.
type Store struct{ KV jetstream.KeyValue }

// Open provisions the bucket (idempotently) and returns a store on it.
func Open(ctx context.Context, js jetstream.JetStream, bus events.BusConfig) (Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, Config(bus))
	if err != nil {
		return Store{}, fmt.Errorf("open bucket %s: %w", Bucket, err)
	}
	return Store{KV: kv}, nil
}

// Put writes rev's entry.
func (s Store) Put(ctx context.Context, rev Revision) error {
	data, err := json.Marshal(rev)
	if err != nil {
		return err
	}
	_, err = s.KV.Put(ctx, Key(rev.Ref, rev.PodHash), data)
	return err
}

// Delete removes a revision's entry (it has no processes left).
func (s Store) Delete(ctx context.Context, r events.Ref, podHash string) error {
	err := s.KV.Delete(ctx, Key(r, podHash))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// Watch calls fn with every entry now in the bucket and then with every
// change (a deleted entry comes with Ready empty) until ctx ends. It returns
// once the current entries have been passed to fn.
func (s Store) Watch(ctx context.Context, fn func(Revision)) error {
	_, err := events.WatchKV(ctx, s.KV, func(e jetstream.KeyValueEntry) {
		var rev Revision
		if e.Operation() == jetstream.KeyValuePut {
			if json.Unmarshal(e.Value(), &rev) != nil {
				return
			}
		} else {
			r, hash, err := ParseKey(e.Key())
			if err != nil {
				return
			}
			rev = Revision{Ref: r, PodHash: hash}
		}
		fn(rev)
	})
	return err
}
