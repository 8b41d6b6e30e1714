package orchestrator

import (
	"context"
	"slices"
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
	// Applied are the commands applied to the rollout (requests
	// included) within the commands stream's retention, so that a command
	// delivered again later, after any number of newer ones, is recognised
	// and changes nothing (applied.go).
	Applied appliedSet `json:"applied,omitempty"`
	// CommandSeq is the commands stream's sequence of the last command
	// applied: a command stored after it and before the one being decided
	// was not decided yet, and is decided first (order.go).
	CommandSeq uint64 `json:"commandSeq,omitempty"`
	// Commands are the event ids of the last 64 commands applied, as
	// records written before Applied kept them; read, and folded into
	// Applied by the next command.
	Commands []string `json:"commands,omitempty"`
}

// applied reports whether the command with event id id was applied to
// the rollout.
func (r record) applied(id string) bool {
	return r.Applied.has(id) || slices.Contains(r.Commands, id)
}

// withApplied returns r's applied commands with id added at now, kept for
// retention (ids of the older form folded in); forgotten counts the ids
// dropped before their time, past maxApplied.
func (r record) withApplied(id string, now time.Time, retention time.Duration) (appliedSet, int) {
	set, forgotten := r.Applied, 0
	for _, old := range append(slices.Clone(r.Commands), id) {
		var n int
		set, n = set.add(old, now, retention)
		forgotten += n
	}
	return set, forgotten
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
// cache decoded records (none when cache <= 0). leader, when not nil, is
// the connection through which a decision that would change nothing
// checks the record with the leader of the bucket's stream (records.Latest).
func newStore(kv jetstream.KeyValue, cache int, leader records.Requester) store {
	return store{records.New(kv, records.Config[record]{Name: "rollout state", Prepare: prepare, Cache: cache, Leader: leader})}
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
