package orchestrator

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// BucketRollouts holds one entry per rollout, keyed <namespace>.<name>.
const BucketRollouts = "sluice-rollouts"

// record is what the bucket stores for one rollout. Wakeup and Phase come
// first, always present, so that watchers read them without scanning the
// rest (jsonlead.Fields).
type record struct {
	// Wakeup mirrors State.NextWakeup so that timer watchers need not
	// interpret the state; null when nothing is scheduled.
	Wakeup *time.Time `json:"wakeup"`
	// Phase mirrors State.Phase for the rollouts-by-phase gauge; empty for
	// a standalone Experiment, which the gauge does not count.
	Phase string        `json:"phase"`
	State machine.State `json:"state"`
	// Outbox holds the effects of the decision that produced State. They
	// are published after the write and republished, idempotently, when the
	// message that triggered the decision is redelivered.
	Outbox []machine.Effect `json:"outbox,omitempty"`
	// Commands are the event ids of the last commands applied (requests
	// included), oldest first, so that a command delivered again later,
	// after newer ones, is recognised and changes nothing.
	Commands []string `json:"commands,omitempty"`
}

// store reads and writes rollout records with compare-and-swap. It keeps
// the records it read or wrote last, decoded, by revision: a rollout that
// is busy is decided on again and again, and decoding its record each time
// was the largest cost of a decision after the decision itself. A record
// from the cache is shared: callers must not modify it (the machine never
// modifies the state it is given).
type store struct {
	*records.Store[record]
}

// newStore returns the store of the rollouts bucket kv, keeping up to
// cache decoded records (none when cache <= 0).
func newStore(kv jetstream.KeyValue, cache int) store {
	return store{records.New(kv, records.Config[record]{Name: "rollout state", Prepare: prepare, Cache: cache})}
}

// prepare fills the fields that lead the record from its state.
func prepare(rec *record) {
	rec.Wakeup, rec.Phase = nil, rec.State.Phase
	if rec.State.Kind != "" {
		rec.Phase = ""
	}
	if w, ok := rec.State.NextWakeup(); ok {
		rec.Wakeup = &w
	}
}

// load returns the record and its revision; a missing rollout is the zero
// record at revision 0.
func (s store) load(ctx context.Context, r events.Ref) (record, uint64, error) {
	return s.Get(ctx, records.KeyOf(r))
}

// save writes rec if the entry is still at revision rev (0: must not
// exist). It returns an error wrapping records.ErrConflict when another
// writer got there first.
func (s store) save(ctx context.Context, r events.Ref, rec record, rev uint64) error {
	_, err := s.Put(ctx, records.KeyOf(r), rec, rev)
	return err
}
