package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/records/recordstest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

const canaryNoPause = `    canary:
      steps:
      - setWeight: 20
      - setWeight: 60`

// TestADecisionWritesTheTemplatesOnlyWithANewRevision follows every
// write to the rollouts bucket while a rollout is updated twice, and
// checks what issue 20 asked: the spec and the templates kept for history
// are written once per change, not with every decision, so a decision
// writes fewer bytes than the record with everything inline; and the
// part the first revision left behind is removed.
func TestADecisionWritesTheTemplatesOnlyWithANewRevision(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	ctx := t.Context()
	kv, err := c.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	w := watchWrites(t, kv)
	r := events.Ref{Namespace: "prod", Name: "web"}

	request(t, c, r, "web:1", canaryNoPause)
	status.waitFor(t, r, events.TypeRolloutCompleted)
	request(t, c, r, "web:2", canaryNoPause)
	waitForN(t, status, r, events.TypeRolloutCompleted, 2)
	writes := w.all(t, c)

	parts := map[string]machine.RevisionPart{}
	var (
		partWrites, changes, recordWrites int
		stored, inline                    int
		last                              *machine.RevisionPart
		latest                            string
	)
	for _, e := range writes {
		if IsRevisionPart(e.key) {
			var p machine.RevisionPart
			if err := json.Unmarshal(e.value, &p); err != nil {
				t.Fatalf("part %s: %v", e.key, err)
			}
			if _, again := parts[e.key]; again {
				t.Errorf("part %s written twice", e.key)
			}
			parts[e.key] = p
			partWrites++
			stored += len(e.value)
			continue
		}
		var rec record
		if err := json.Unmarshal(e.value, &rec); err != nil {
			t.Fatalf("record at %d: %v", e.rev, err)
		}
		if rec.part == "" {
			t.Fatalf("record at %d holds its revision part inline: %s", e.rev, e.value)
		}
		p, ok := parts[rec.part]
		if !ok {
			t.Fatalf("record at %d references part %s, not written before it", e.rev, rec.part)
		}
		if last == nil || !p.Same(last) {
			changes++
		}
		last, latest = &p, rec.part
		recordWrites++
		stored += len(e.value)
		// What this write would have been with everything inline, as
		// every write was before.
		rec.State.SetRevisionPart(p)
		rec.part = ""
		whole, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		inline += len(whole)
	}
	if partWrites != changes {
		t.Errorf("%d revision parts written for %d changes of the part over %d record writes", partWrites, changes, recordWrites)
	}
	if stored >= inline {
		t.Errorf("the writes stored %d bytes, records and parts; with everything inline they would have stored %d", stored, inline)
	}
	t.Logf("%d record writes and %d part writes stored %d bytes (%.0f per record write); inline they would have stored %d (%.0f per write)",
		recordWrites, partWrites, stored, float64(stored)/float64(recordWrites), inline, float64(inline)/float64(recordWrites))

	if left := partKeys(t, kv); !slices.Equal(left, []string{latest}) {
		t.Errorf("revision parts in the bucket: %v, want only the one the record references, %s", left, latest)
	}
	rd, err := NewReader(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	d, err := rd.Detail(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Revisions) != 2 || len(d.Steps) != 2 {
		t.Errorf("the reader sees %d revisions and %d steps, want 2 and 2", len(d.Revisions), len(d.Steps))
	}
}

// A process that dies after writing a new revision part and before the
// record that references it loses nothing: the record it did not write
// still reads whole, with the part it had, and the decision made again
// stores the new part and removes the old.
func TestACrashBetweenTheRevisionPartAndTheRecordLosesNothing(t *testing.T) {
	kv, newSt := partsBucket(t)
	ctx := t.Context()
	r := events.Ref{Namespace: "prod", Name: "web"}
	k := records.KeyOf(r)
	v1 := requested(t, r, machine.State{}, "web:1")
	v2 := requested(t, r, v1, "web:2")
	a := newSt()
	if _, err := a.Update(ctx, k, func(rec *record, _ uint64) error { rec.State = v1; return nil }); err != nil {
		t.Fatal(err)
	}
	before, rev, err := a.load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}

	// The dying replica decides on revision 2 and gets as far as its part.
	dying := before
	dying.State = v2
	p := before.State.RevisionPart()
	if _, err := a.place(ctx, k, &dying, rev, &p); err != nil {
		t.Fatal(err)
	}
	if dying.part == before.part {
		t.Fatal("a new revision wrote no new part")
	}

	// Another replica, which knows nothing, reads the rollout whole.
	b := newSt()
	got, _, err := b.load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if got.State.Revision != 1 || len(got.State.History) != 1 || got.State.Spec == nil || !sameState(got.State, v1) {
		t.Fatalf("after the crash the rollout reads revision %d with %d templates", got.State.Revision, len(got.State.History))
	}
	// The message comes again and is decided again.
	if _, err := b.Update(ctx, k, func(rec *record, _ uint64) error { rec.State = v2; return nil }); err != nil {
		t.Fatal(err)
	}
	got, _, err = newSt().load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if !sameState(got.State, v2) {
		t.Fatalf("after the decision made again the rollout reads revision %d with %d templates", got.State.Revision, len(got.State.History))
	}
	if left := partKeys(t, kv); !slices.Equal(left, []string{got.part}) {
		t.Errorf("revision parts in the bucket: %v, want only %s", left, got.part)
	}
}

// A record written before the split, with the spec and templates inline,
// reads whole, and the next write keeps them apart. An orchestrator older
// than the split cannot read a record that keeps them apart: it stops
// (records.ErrUnreadable) instead of deciding on a rollout without a spec.
func TestARecordWithEverythingInlineStillReads(t *testing.T) {
	kv, newSt := partsBucket(t)
	ctx := t.Context()
	r := events.Ref{Namespace: "prod", Name: "web"}
	k := records.KeyOf(r)
	v1 := requested(t, r, machine.State{}, "web:1")
	// The record as the orchestrator before the split wrote it.
	type older struct {
		Wakeup *time.Time    `json:"wakeup"`
		Phase  string        `json:"phase"`
		State  machine.State `json:"state"`
	}
	data, err := json.Marshal(older{Phase: v1.Phase, State: v1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, k, data); err != nil {
		t.Fatal(err)
	}
	st := newSt()
	got, _, err := st.load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if !sameState(got.State, v1) {
		t.Fatalf("the inline record reads revision %d with %d templates, spec %v", got.State.Revision, len(got.State.History), got.State.Spec != nil)
	}
	if _, err := st.Update(ctx, k, func(rec *record, _ uint64) error { rec.State.Message = "moved on"; return nil }); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err = newSt().load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if got.part == "" || !sameState(got.State, func() machine.State { s := v1; s.Message = "moved on"; return s }()) {
		t.Fatalf("after a write the record keeps its part under %q and reads revision %d with %d templates", got.part, got.State.Revision, len(got.State.History))
	}
	var old older
	if err := json.Unmarshal(e.Value(), &old); err == nil {
		t.Errorf("the record before the split decodes a split record without an error: %s", e.Value())
	}
}

// Two replicas decide the same new revision from the same record; the
// one that loses the compare-and-swap wrote the same part (same content,
// same base), and then finds nothing left to do. It must not remove that
// part, which the winner's record references; the part the winner left
// behind goes, and a replica still holding the old record cannot bring
// it back into a record.
func TestRemovingPartsNeverRemovesAReferencedOne(t *testing.T) {
	kv, newSt := partsBucket(t)
	ctx := t.Context()
	r := events.Ref{Namespace: "prod", Name: "web"}
	k := records.KeyOf(r)
	v1 := requested(t, r, machine.State{}, "web:1")
	v2 := requested(t, r, v1, "web:2")
	a, b := newSt(), newSt()
	if _, err := a.Update(ctx, k, func(rec *record, _ uint64) error { rec.State = v1; return nil }); err != nil {
		t.Fatal(err)
	}
	old, rev, err := b.load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	toV2 := func(rec *record, _ uint64) error {
		if rec.State.Revision == 2 {
			return records.Unchanged
		}
		rec.State = v2
		return nil
	}
	if _, err := a.Update(ctx, k, toV2); err != nil {
		t.Fatal(err)
	}
	// b decides on the record it knew: its write loses, and on the
	// bucket's record there is nothing left to do.
	attempts := 0
	if _, err := b.UpdateFrom(ctx, k, old, rev, func(rec *record, rev uint64) error { attempts++; return toV2(rec, rev) }); err != nil {
		t.Fatal(err)
	}
	if attempts != 2 {
		t.Fatalf("b decided %d times, want 2 (its first write must lose)", attempts)
	}
	// A replica still holding revision 1 writes over it: fenced.
	if err := b.save(ctx, r, old, rev); !errors.Is(err, records.ErrConflict) {
		t.Fatalf("a write over the old record: %v, want a conflict", err)
	}
	got, _, err := newSt().load(ctx, r)
	if err != nil {
		t.Fatalf("the rollout after the race: %v", err)
	}
	if !sameState(got.State, v2) {
		t.Fatalf("after the race the rollout reads revision %d with %d templates", got.State.Revision, len(got.State.History))
	}
	if left := partKeys(t, kv); !slices.Equal(left, []string{got.part}) {
		t.Errorf("revision parts in the bucket: %v, want only %s", left, got.part)
	}
}

// partsBucket returns the rollouts bucket on a fresh server and a
// function that opens a store over it as a new replica would.
func partsBucket(t *testing.T) (jetstream.KeyValue, func() store) {
	t.Helper()
	srv := startServer(t)
	c := connect(t, srv.ClientURL())
	kv, err := c.JetStream().CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: BucketRollouts})
	if err != nil {
		t.Fatal(err)
	}
	return kv, func() store { return newStore(kv, 16, c.Conn()) }
}

// requested is st after a request for r with image.
func requested(t *testing.T, r events.Ref, st machine.State, image string) machine.State {
	t.Helper()
	ro, _, problems := parseRollout(r, manifest(r, image, canaryNoPause))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	next, _ := machine.Machine{}.Next(st, machine.Observation{Request: ro}, time.Now())
	return next
}

// sameState reports whether a and b encode alike.
func sameState(a, b machine.State) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// partKeys lists the revision parts in kv.
func partKeys(t *testing.T, kv jetstream.KeyValue) []string {
	t.Helper()
	lister, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range lister.Keys() {
		if IsRevisionPart(k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

type write struct {
	key   string
	rev   uint64
	value []byte
}

// writes follows every put to a bucket.
type writes struct {
	kv   jetstream.KeyValue
	mu   sync.Mutex
	seen []write
	last uint64
}

func watchWrites(t *testing.T, kv jetstream.KeyValue) *writes {
	t.Helper()
	w := &writes{kv: kv}
	watch, err := kv.WatchAll(t.Context(), jetstream.IncludeHistory())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watch.Stop() })
	go func() {
		for e := range watch.Updates() {
			if e == nil {
				continue
			}
			w.mu.Lock()
			if e.Operation() == jetstream.KeyValuePut {
				w.seen = append(w.seen, write{e.Key(), e.Revision(), e.Value()})
			}
			w.last = e.Revision()
			w.mu.Unlock()
		}
	}()
	return w
}

// all returns every put up to the bucket's last write now.
func (w *writes) all(t *testing.T, c *events.Client) []write {
	t.Helper()
	str, err := c.JetStream().Stream(context.Background(), "KV_"+BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the watch at the bucket's last write", func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.last < info.State.LastSeq {
			return fmt.Errorf("at %d of %d", w.last, info.State.LastSeq)
		}
		return nil
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

// A record read from the leader of the bucket's stream may name a part
// that a replica lagging behind does not hold yet (recordstest), and a
// part is read from any replica: the part, written before the record, is
// then read from the leader, and the rollout reads whole every time.
func TestAPartALaggingReplicaLacksIsReadFromTheLeader(t *testing.T) {
	c := recordstest.Start(t)
	kv := c.Bucket(t, jetstream.KeyValueConfig{Bucket: BucketRollouts})
	client := eventstest.Connect(t, c.URL)
	ctx := t.Context()
	r := events.Ref{Namespace: "prod", Name: "web"}
	k := records.KeyOf(r)
	v1 := requested(t, r, machine.State{}, "web:1")
	v2 := requested(t, r, v1, "web:2")
	st := newStore(kv, 16, client.Conn())
	if _, err := st.Update(ctx, k, func(rec *record, _ uint64) error { rec.State = v1; return nil }); err != nil {
		t.Fatal(err)
	}
	c.FallBehind(t, kv)
	if _, err := st.Update(ctx, k, func(rec *record, _ uint64) error { rec.State = v2; return nil }); err != nil {
		t.Fatal(err)
	}
	rec, _, ok := st.Recent(k)
	if !ok || rec.part == "" {
		t.Fatal("the writer does not know the record it wrote, or keeps its part inline")
	}
	c.Behind(t, kv, rec.part, 1)
	for i := range recordstest.Tries {
		// A new reader each time: one knows a part once it has read it.
		rd, err := NewLeaderReader(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		d, err := rd.Detail(ctx, r)
		if err != nil || d.Status.Revision != 2 || len(d.Revisions) != 2 {
			t.Fatalf("try %d: revision %d with %d revisions kept (%v), want 2 and 2", i+1, d.Status.Revision, len(d.Revisions), err)
		}
	}

	// The replica behind still answers the first record, whose part the
	// second write removed: a view reads a moment-old record or the
	// latest, never an error; a decision is made on the latest.
	for i := range recordstest.Tries {
		rd, err := NewReader(ctx, client)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Detail(ctx, r); err != nil {
			t.Fatalf("try %d: the view: %v", i+1, err)
		}
		var decided int64
		if _, err := newStore(kv, 16, client.Conn()).Update(ctx, k, func(rec *record, _ uint64) error {
			decided = rec.State.Revision
			return records.Unchanged
		}); err != nil || decided != 2 && decided != 1 {
			t.Fatalf("try %d: a decision on revision %d: %v", i+1, decided, err)
		}
	}
}

// A replica started with InlineState rewrites an idle rollout's split
// record inline, as a release before the split reads it, removes its
// part, and goes on writing inline: what a rolling upgrade from, or a
// rollback to, such a release needs.
func TestInlineStateWritesRecordsAnOlderReleaseReads(t *testing.T) {
	srv := startServer(t)
	split := startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	ctx := t.Context()
	kv, err := c.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	r := events.Ref{Namespace: "prod", Name: "web"}
	request(t, c, r, "web:1", canaryNoPause)
	status.waitFor(t, r, events.TypeRolloutCompleted)
	if len(partKeys(t, kv)) != 1 {
		t.Fatalf("revision parts after the first revision: %v, want one", partKeys(t, kv))
	}
	split.stop()

	startOrchestratorWith(t, srv.ClientURL(), Config{InlineState: true})
	// What an orchestrator before the split decodes.
	type older struct {
		State machine.State `json:"state"`
	}
	readsInline := func() error {
		e, err := kv.Get(ctx, records.KeyOf(r))
		if err != nil {
			return err
		}
		var old older
		if err := json.Unmarshal(e.Value(), &old); err != nil {
			return err
		}
		if old.State.Spec == nil || len(old.State.History) == 0 {
			return fmt.Errorf("revision %d without spec or templates", old.State.Revision)
		}
		if left := partKeys(t, kv); len(left) > 0 {
			return fmt.Errorf("revision parts left: %v", left)
		}
		return nil
	}
	poll.Until(t, "the idle rollout's record written inline", readsInline)
	request(t, c, r, "web:2", canaryNoPause)
	waitForN(t, status, r, events.TypeRolloutCompleted, 2)
	if err := readsInline(); err != nil {
		t.Fatalf("after an update: %v", err)
	}
}
