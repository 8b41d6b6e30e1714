// Package endpoints is how the local platform's replicas service tells its
// traffic service where a revision's ready processes listen: one entry per
// revision, and one per template of an experiment, in the JetStream
// key-value bucket sluice-endpoints, written by the replicas service
// whenever readiness changes and watched by the proxy. It is the local
// platform's stand-in for Kubernetes Endpoints.
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

// Revision is where one revision's ready processes listen, or those of
// one template of an experiment (Experiment and Template set): an
// experiment's processes have an entry of their own even when PodHash is a
// revision's (a specRef: stable template without metadata has the
// stable's hash), so that the proxy sends the template's share to them
// alone.
type Revision struct {
	Ref      events.Ref `json:"ref"`
	Revision int64      `json:"revision"`
	PodHash  string     `json:"podHash"`
	// Experiment and Template name the experiment and its template
	// (tasks.ExperimentPods) whose processes these are; empty for a
	// revision's own processes.
	Experiment string `json:"experiment,omitempty"`
	Template   string `json:"template,omitempty"`
	// Ready lists host:port of every ready process, sorted.
	Ready []string `json:"ready"`
	// MetricsPath is where each process serves Prometheus metrics, when the
	// pod template says so (annotation prometheus.io/path), else /metrics.
	MetricsPath string    `json:"metricsPath,omitempty"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// EntryName names an entry within its rollout: the pod hash for a
// revision's processes, <podHash>.<experiment>.<template> for an experiment
// template's (experiment empty: a revision's).
func EntryName(podHash, experiment, template string) string {
	if experiment == "" {
		return podHash
	}
	return podHash + "." + experiment + "." + template
}

// Name is the entry's name within its rollout (see EntryName).
func (r Revision) Name() string { return EntryName(r.PodHash, r.Experiment, r.Template) }

// Key is the entry's key in the bucket (see Key).
func (r Revision) Key() string { return Key(r.Ref, r.Name()) }

// Key is the entry key of one entry of rollout r: <namespace>.<name>.<entry>,
// where entry is EntryName's: <podHash> for a revision,
// <podHash>.<experiment>.<template> for an experiment template.
func Key(r events.Ref, entry string) string {
	return r.Namespace + "." + r.Name + "." + entry
}

// ParseKey turns a key back into the entry it names: Ref, PodHash and, for
// an experiment template's entry, Experiment and Template.
func ParseKey(k string) (Revision, error) {
	parts := strings.Split(k, ".")
	if len(parts) != 3 && len(parts) != 5 {
		return Revision{}, fmt.Errorf("endpoints key %q is not <namespace>.<name>.<podHash> nor <namespace>.<name>.<podHash>.<experiment>.<template>", k)
	}
	rev := Revision{Ref: events.Ref{Namespace: parts[0], Name: parts[1]}, PodHash: parts[2]}
	if len(parts) == 5 {
		rev.Experiment, rev.Template = parts[3], parts[4]
	}
	return rev, rev.Ref.Validate()
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
	_, err = s.KV.Put(ctx, rev.Key(), data)
	return err
}

// Delete removes an entry (it has no processes left); entry is its
// EntryName.
func (s Store) Delete(ctx context.Context, r events.Ref, entry string) error {
	err := s.KV.Delete(ctx, Key(r, entry))
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
			parsed, err := ParseKey(e.Key())
			if err != nil {
				return
			}
			rev = parsed
		}
		fn(rev)
	})
	return err
}
