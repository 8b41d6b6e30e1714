package orchestrator

import (
	"context"
	"errors"
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

	// part is the key of the entry that holds State's revision part
	// (parts.go), empty when the record holds it inline; resolved says
	// that State has it (a record read from the bucket has not, until
	// the store reads the part or finds it in its cache).
	part     string
	resolved bool
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
//
// A record keeps its state's revision part (the spec and the templates
// kept for history) in an entry of its own, written only when the part
// changes (parts.go). Update and UpdateFrom hand the change function, and
// load and latest return, records whose state is whole; the embedded
// Store's own reads (Get, Latest, Recent) may return a record whose state
// lacks its revision part, which is enough for what it leads with
// (commands applied, wakeup, phase).
type store struct {
	*records.Store[record]
	kv jetstream.KeyValue
	// parts reads and writes revision parts; its cache holds them by key
	// (a part's content never changes under its key), so a replica reads
	// each part once while it stays cached.
	parts *records.Store[machine.RevisionPart]
	// inline writes records with their revision part inline, as
	// releases before the split did (Config.InlineState).
	inline bool
}

// partCache is how many revision parts a store keeps decoded when it
// keeps no records (a Reader): each rollout's status needs its spec.
const partCache = 256

// newStore returns the store of the rollouts bucket kv, keeping up to
// cache decoded records (none when cache <= 0). leader, when not nil, is
// the connection through which a decision that would change nothing
// checks the record with the leader of the bucket's stream (records.Latest).
func newStore(kv jetstream.KeyValue, cache int, leader records.Requester) store {
	return store{
		Store: records.New(kv, records.Config[record]{Name: "rollout state", Prepare: prepare, Cache: cache, Leader: leader}),
		kv:    kv,
		parts: newParts(kv, cache, leader),
	}
}

// newParts returns the store of the revision parts in the rollouts bucket
// kv, keeping up to cache of them (partCache when cache <= 0). Through
// leader, when not nil, a part a replica of the bucket does not hold yet
// is read from the leader.
func newParts(kv jetstream.KeyValue, cache int, leader records.Requester) *records.Store[machine.RevisionPart] {
	if cache <= 0 {
		cache = partCache
	}
	return records.New(kv, records.Config[machine.RevisionPart]{Name: "rollout revision part", Cache: cache, Leader: leader})
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
	k := records.KeyOf(r)
	rec, rev, err := s.Get(ctx, k)
	if err != nil {
		return rec, rev, err
	}
	if err := s.resolve(ctx, k, &rec); errors.Is(err, errPartMissing) {
		return s.latest(ctx, r) // an older record, from a replica behind
	} else if err != nil {
		return rec, rev, err
	}
	return rec, rev, nil
}

// latest is load answered by the leader of the bucket's stream
// (records.Store.Latest).
func (s store) latest(ctx context.Context, r events.Ref) (record, uint64, error) {
	k := records.KeyOf(r)
	rec, rev, err := s.Latest(ctx, k)
	if err != nil {
		return rec, rev, err
	}
	return rec, rev, s.resolve(ctx, k, &rec)
}

// save writes rec if the entry is still at revision rev (0: must not
// exist). It returns an error wrapping records.ErrConflict when another
// writer got there first.
func (s store) save(ctx context.Context, r events.Ref, rec record, rev uint64) error {
	k := records.KeyOf(r)
	var before *machine.RevisionPart
	if rec.part != "" {
		if p, _, ok := s.parts.Recent(rec.part); ok {
			before = &p
		}
	}
	if _, err := s.place(ctx, k, &rec, rev, before); err != nil {
		return err
	}
	_, err := s.Put(ctx, k, rec, rev)
	return err
}

// Update is records.Store.Update whose change sees the whole state, and
// whose write stores the state's revision part apart first when it
// changed; parts no longer referenced are then removed.
func (s store) Update(ctx context.Context, key string, change func(rec *record, rev uint64) error) (uint64, error) {
	w := &partWriter{s: s, ctx: ctx, key: key, change: change}
	rev, err := s.Store.Update(ctx, key, w.attempt)
	w.collect(rev, err)
	return rev, err
}

// UpdateFrom is records.Store.UpdateFrom as Update is records.Store.Update.
func (s store) UpdateFrom(ctx context.Context, key string, rec record, rev uint64, change func(rec *record, rev uint64) error) (uint64, error) {
	w := &partWriter{s: s, ctx: ctx, key: key, change: change}
	written, err := s.Store.UpdateFrom(ctx, key, rec, rev, w.attempt)
	w.collect(written, err)
	return written, err
}
