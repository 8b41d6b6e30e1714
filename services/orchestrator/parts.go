package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// A rollout's record keeps its state's revision part (machine.RevisionPart:
// the spec and the templates kept for history, which change only with a
// new revision) in an entry of its own in the rollouts bucket, under
//
//	_rev.<namespace>.<name>.<base>.<hash>
//
// where base is the revision of the record the writer decided on (0 for
// a new rollout) and hash the SHA-256 of the part's JSON (128 bits, hex).
// A decision that leaves the part as it was carries its key over and
// writes only the rest; one that changes it writes the new part first and
// then the record that references it, so a crash between the two leaves
// an unreferenced part, never a record without its part. The "_" keeps
// these keys from reading as a rollout (records.RefOf: a namespace is a
// DNS-1123 label), so listings of the bucket pass them by.
//
// Removal. A part is garbage once a record of its rollout at a revision
// after its base leaves it out: from then on no record references it
// again. The record written over base comes from the one writer whose
// compare-and-swap at base won; every later record is written over the
// one before it, and either carries that record's part over or writes a
// part under its own base, which is not the part's. So once a record
// later than base leaves a part out, the records after it do too, and a
// writer still holding an older record (a stale replica) is fenced by the
// compare-and-swap: its write fails, whatever part it wrote first. The
// writer that left a part out removes it after its write, and a writer
// whose own part lost the race removes it once it has seen a later record
// without it (partWriter.collect). A part written just before a crash, or
// whose removal failed, stays in the bucket unreferenced
// (docs/orchestrator.md).
const partPrefix = "_rev."

// IsRevisionPart reports whether key, in the rollouts bucket, holds a
// rollout's revision part rather than its record. Watchers of the bucket
// that decode records pass such keys by.
func IsRevisionPart(key string) bool { return strings.HasPrefix(key, partPrefix) }

// partKey is the key of the revision part encoded as data for the record
// under key, written over the record at revision base.
func partKey(key string, base uint64, data []byte) string {
	sum := sha256.Sum256(data)
	return partPrefix + key + "." + strconv.FormatUint(base, 10) + "." + hex.EncodeToString(sum[:16])
}

// partBase returns the base revision in part key pk.
func partBase(pk string) (uint64, bool) {
	f := strings.Split(pk, ".")
	if len(f) != 5 || f[0]+"." != partPrefix {
		return 0, false
	}
	base, err := strconv.ParseUint(f[3], 10, 64)
	return base, err == nil
}

// errPartMissing is a record whose revision part the bucket does not
// hold. A part is removed only once a later record leaves it out, so the
// record is out of date (a replica of the bucket lagging behind answered
// it) unless the leader's record says the same, which is then unreadable.
var errPartMissing = fmt.Errorf("%w: its revision part is missing", records.ErrUnreadable)

// resolve gives rec's state its revision part, from the store's cache of
// parts or, once, from the bucket. A record that references a part the
// bucket does not hold is unreadable: it is surfaced, never decided on
// without its spec.
func (s store) resolve(ctx context.Context, key string, rec *record) error {
	if rec.resolved || rec.part == "" {
		rec.resolved = true
		return nil
	}
	p, _, ok := s.parts.Recent(rec.part)
	if !ok {
		var (
			rev uint64
			err error
		)
		p, rev, err = s.parts.Get(ctx, rec.part)
		if err == nil && rev == 0 {
			// The record was read from a replica of the bucket that
			// has it, the part from one that lags behind: the part is
			// written first, so the leader has it.
			p, rev, err = s.parts.Latest(ctx, rec.part)
		}
		if err != nil {
			return err
		}
		if rev == 0 {
			return events.Permanent(fmt.Errorf("rollout state %s: %w (%s)", key, errPartMissing, rec.part))
		}
	}
	rec.State.SetRevisionPart(p)
	rec.resolved = true
	return nil
}

// place readies rec to be written under key over the record at revision
// base: its revision part stays under rec.part when it is the same as
// before (the part under rec.part, nil when unknown), and is written now,
// under a new key, when it changed. It returns the key of a part it
// wrote, "" when it wrote none.
func (s store) place(ctx context.Context, key string, rec *record, base uint64, before *machine.RevisionPart) (string, error) {
	rec.resolved = true
	p := rec.State.RevisionPart()
	switch {
	case p.IsZero() || s.inline:
		rec.part = ""
		return "", nil
	case rec.part != "" && before != nil && p.Same(before):
		return "", nil
	}
	data, err := json.Marshal(p)
	if err != nil {
		return "", events.Permanent(fmt.Errorf("encode the revision part of %s: %w", key, err))
	}
	pk := partKey(key, base, data)
	// The key names the content: one already there (another replica
	// decided the same from the same record, or this write is made
	// again) holds this part.
	if _, err := s.parts.Put(ctx, pk, p, 0); err != nil && !errors.Is(err, records.ErrConflict) {
		return "", err
	}
	rec.part = pk
	return pk, nil
}

// partWriter carries one Update through its attempts: it hands change
// whole records, places the revision part of what change leaves to write,
// and removes the parts the update left unreferenced.
type partWriter struct {
	s      store
	ctx    context.Context
	key    string
	change func(*record, uint64) error
	// seen are the records the attempts were given, and written the part
	// of the record the last attempt left to write ("" when it wrote
	// nothing: unchanged, or an error).
	seen       []seenRecord
	written    string
	writes     bool
	introduced []string
	// missed: a record read named a part the bucket no longer holds.
	missed bool
}

type seenRecord struct {
	rev  uint64
	part string
}

func (w *partWriter) attempt(rec *record, rev uint64) error {
	w.writes = false
	if err := w.s.resolve(w.ctx, w.key, rec); err != nil {
		if errors.Is(err, errPartMissing) && !w.missed {
			// Read again, from the leader.
			w.missed = true
			return records.ErrStale
		}
		return err
	}
	w.seen = append(w.seen, seenRecord{rev: rev, part: rec.part})
	before, beforeKey := rec.State.RevisionPart(), rec.part
	if err := w.change(rec, rev); err != nil {
		return err
	}
	rec.part = beforeKey
	pk, err := w.s.place(w.ctx, w.key, rec, rev, &before)
	if err != nil {
		return err
	}
	if pk != "" {
		w.introduced = append(w.introduced, pk)
	}
	w.written, w.writes = rec.part, true
	return nil
}

// collect removes the parts this update read or wrote that a record it
// saw (or wrote) later than their base leaves out: no record references
// them any more (see partPrefix). Removal is best effort: a part it
// fails to remove stays, unreferenced.
func (w *partWriter) collect(rev uint64, err error) {
	witnesses := w.seen
	if err == nil && w.writes {
		witnesses = append(witnesses, seenRecord{rev: rev, part: w.written})
	}
	candidates := w.introduced
	for _, r := range w.seen {
		candidates = append(candidates, r.part)
	}
	done := map[string]bool{"": true}
	for _, pk := range candidates {
		if done[pk] {
			continue
		}
		done[pk] = true
		base, ok := partBase(pk)
		if !ok {
			continue
		}
		for _, r := range witnesses {
			if r.rev > base && r.part != pk {
				_ = w.s.kv.Delete(w.ctx, pk)
				break
			}
		}
	}
}

// The record as stored: its state without the revision part, which
// "spec" names by its key when the part is kept apart, or with the part
// inline ("spec" an object, as every record written before the split).
// An orchestrator older than the split fails to decode a record that
// names its part (a string where it reads a Rollout): it stops on
// records.ErrUnreadable rather than deciding on a rollout without spec or
// templates.
type (
	recordFields record
	storedRecord struct {
		*recordFields
		State storedState `json:"state"`
	}
	storedState struct {
		*machine.State
		Spec specField `json:"spec,omitzero"`
	}
	// specField is the spec, inline, or the key of the revision part.
	specField struct {
		inline *spec.Rollout
		part   string
	}
)

func (r record) MarshalJSON() ([]byte, error) {
	st := r.State
	out := storedRecord{recordFields: (*recordFields)(&r), State: storedState{State: &st}}
	if r.part != "" {
		st.SetRevisionPart(machine.RevisionPart{})
		out.State.Spec.part = r.part
	} else {
		out.State.Spec.inline = st.Spec
	}
	return json.Marshal(out)
}

func (r *record) UnmarshalJSON(data []byte) error {
	*r = record{}
	in := storedRecord{recordFields: (*recordFields)(r), State: storedState{State: &r.State}}
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	r.State.Spec, r.part = in.State.Spec.inline, in.State.Spec.part
	r.resolved = r.part == ""
	return nil
}

func (f specField) IsZero() bool { return f.inline == nil && f.part == "" }

func (f specField) MarshalJSON() ([]byte, error) {
	if f.part != "" {
		return json.Marshal(f.part)
	}
	return json.Marshal(f.inline)
}

func (f *specField) UnmarshalJSON(data []byte) error {
	*f = specField{}
	switch {
	case len(data) > 0 && data[0] == '"':
		return json.Unmarshal(data, &f.part)
	case string(data) == "null":
		return nil
	}
	f.inline = new(spec.Rollout)
	return json.Unmarshal(data, f.inline)
}

// DecodeState returns the state in value, an entry of the rollouts bucket
// that holds a rollout's record, as watchers of the bucket read it:
// without its spec and templates when the record keeps them apart.
func DecodeState(value []byte) (machine.State, error) {
	var rec record
	err := json.Unmarshal(value, &rec)
	return rec.State, err
}

// inlineAll rewrites every rollout record that keeps its revision part
// apart with the part inline, so that a release before the split reads
// it (Config.InlineState); the parts left out are then removed. A record
// it cannot rewrite is logged and left: its next decision writes it
// inline.
func (s store) inlineAll(ctx context.Context, log *slog.Logger) {
	keys, err := s.LatestKeys(ctx)
	if err != nil {
		log.Warn("could not list the rollouts to write their records inline; each is written inline at its next decision", "error", err)
		return
	}
	n := 0
	for _, k := range keys {
		if IsRevisionPart(k) {
			continue
		}
		split := false
		_, err := s.Update(ctx, k, func(rec *record, rev uint64) error {
			if split = rev != 0 && rec.part != ""; !split {
				return records.Unchanged
			}
			return nil
		})
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("could not write a rollout's record inline; it is at its next decision", "key", k, "error", err)
		case err == nil && split:
			n++
		}
	}
	log.Info("rollout records written with their spec and templates inline", "records", n)
}
