package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
)

// ErrNoRollout means a rollout was never requested, or was deleted.
var ErrNoRollout = errors.New("no such rollout")

// Reader reads rollouts' status as the orchestrator holds it now. A status
// event's snapshot is the status when the event was published; what
// changed since without an event (replica counts a finished scale-down
// reported) shows only here.
type Reader struct {
	st store
}

// NewReader opens the rollouts bucket through client. It fails, wrapping
// jetstream.ErrBucketNotFound, when no orchestrator ever ran on the bus.
func NewReader(ctx context.Context, client *events.Client) (*Reader, error) {
	kv, err := client.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketRollouts, err)
	}
	return &Reader{st: newStore(kv, 0)}, nil
}

// Get returns r's status, as of the orchestrator's last decision on it.
func (rd *Reader) Get(ctx context.Context, r events.Ref) (events.Snapshot, error) {
	rec, rev, err := rd.st.load(ctx, r)
	if err != nil {
		return events.Snapshot{}, err
	}
	if rev == 0 || rec.State.Revision == 0 {
		return events.Snapshot{}, fmt.Errorf("%w: %s", ErrNoRollout, r)
	}
	return rec.State.Snapshot(rec.State.EvaluatedAt), nil
}

// List returns the status of every rollout in namespace ("" for all), by
// namespace and name.
func (rd *Reader) List(ctx context.Context, namespace string) ([]events.Snapshot, error) {
	keys, err := rd.st.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var out []events.Snapshot
	for _, k := range keys {
		r, err := records.RefOf(k)
		if err != nil || namespace != "" && r.Namespace != namespace {
			continue
		}
		snap, err := rd.Get(ctx, r)
		switch {
		case errors.Is(err, ErrNoRollout):
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, snap)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
