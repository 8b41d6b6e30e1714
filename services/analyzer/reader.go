package analyzer

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
)

// ErrNoRun means the analyzer holds no run of that name: it never started,
// or its record passed Config.Retention.
var ErrNoRun = errors.New("no such analysis run")

// RunReader reads analysis runs as the analyzer holds them: their metrics
// with the conditions they are judged by, and the measurements they keep.
// Any replica of the bucket answers a read, and one that lags behind
// answers with an older record: a moment-old view, which the gateway
// shows until it reads again. A reader that writes what it reads where
// it stays opens a LeaderRunReader.
type RunReader struct {
	st runStore
}

// NewRunReader opens the runs bucket through client. It fails, wrapping
// jetstream.ErrBucketNotFound, when no analyzer ever ran on the bus.
func NewRunReader(ctx context.Context, client *events.Client) (*RunReader, error) {
	kv, err := client.JetStream().KeyValue(ctx, BucketRuns)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketRuns, err)
	}
	return &RunReader{st: newRunStore(kv, 0, 0, nil)}, nil
}

// NewLeaderRunReader is NewRunReader whose every read is the record of
// the leader of the bucket's stream (records.Store.Latest): the mirror of
// runs into AnalysisRun objects would otherwise write an older run, or
// none, kept until the run's next event, which a finished run never has.
func NewLeaderRunReader(ctx context.Context, client *events.Client) (*RunReader, error) {
	kv, err := client.JetStream().KeyValue(ctx, BucketRuns)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", BucketRuns, err)
	}
	return &RunReader{st: newRunStore(kv, 0, 0, client.Conn())}, nil
}

// Get returns run name of rollout r; an error wrapping ErrNoRun when the
// analyzer does not hold it.
func (rr *RunReader) Get(ctx context.Context, r events.Ref, name string) (analysis.Run, error) {
	key, err := runKey(r, name)
	if err != nil {
		return analysis.Run{}, err
	}
	// Latest is Get without the store's Leader (NewRunReader).
	rec, rev, err := rr.st.Latest(ctx, key)
	if err != nil {
		return analysis.Run{}, err
	}
	if rev == 0 || rec.Run == nil {
		return analysis.Run{}, fmt.Errorf("%w: %s %s", ErrNoRun, r, name)
	}
	return *rec.Run, nil
}
