package records

import (
	"context"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records/recordstest"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// TestCheckedWritesNothingOnlyOnTheLeadersRecord reads a record one of
// whose replicas fell behind (recordstest): Get answers the older record
// now and then, Latest always the leader's. An Update whose change finds
// nothing to do on the older record (a claim a holds already) does
// nothing, while the leader's record says b holds it; with Checked, the
// change decides again on the leader's record.
func TestCheckedWritesNothingOnlyOnTheLeadersRecord(t *testing.T) {
	c := recordstest.Start(t)
	kv := c.Bucket(t, jetstream.KeyValueConfig{Bucket: "claims"})
	type claim struct{ Owner string }
	ctx := context.Background()
	st := New(kv, Config[claim]{Name: "claim", Leader: c.Conn})
	rev, err := st.Put(ctx, "k", claim{Owner: "a"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.FallBehind(t, kv)
	if rev, err = st.Put(ctx, "k", claim{Owner: "b"}, rev); err != nil {
		t.Fatal(err)
	}
	c.Behind(t, kv, "k", rev)

	// a claims again: held already, nothing to write, on the record it
	// reads.
	claimA := func(mine *bool) func(*claim, uint64) error {
		return func(rec *claim, rev uint64) error {
			*mine = rec.Owner == "a"
			return Unchanged
		}
	}
	fooled := 0
	for range recordstest.Tries {
		var mine bool
		if _, err := st.Update(ctx, "k", claimA(&mine)); err != nil {
			t.Fatal(err)
		}
		if mine {
			fooled++
		}
	}
	if fooled == 0 {
		t.Fatalf("no unchecked change of %d saw the older record: the node behind did not answer, and the test says nothing", recordstest.Tries)
	}
	for i := range recordstest.Tries {
		var mine bool
		got, err := st.Update(ctx, "k", Checked(claimA(&mine)))
		if err != nil {
			t.Fatal(err)
		}
		if mine || got != rev {
			t.Fatalf("checked change %d decided that a holds the claim (%v) at revision %d; the leader's record (revision %d) says b does", i+1, mine, got, rev)
		}
	}
	t.Logf("%d of %d unchecked changes decided on the older record; no checked one did", fooled, recordstest.Tries)

	// A change that writes on the older record conflicts and writes on
	// the current one.
	for range recordstest.Tries {
		if _, err := st.Update(ctx, "k", Checked(func(rec *claim, rev uint64) error {
			rec.Owner += "+"
			return nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	if rec, _, err := st.Latest(ctx, "k"); err != nil || len(rec.Owner) != 1+recordstest.Tries || rec.Owner[0] != 'b' {
		t.Errorf("after %d writes: %+v, %v; want owner b and a + for each", recordstest.Tries, rec, err)
	}
}

// TestLatestKeysListsTheLeadersKeys lists a bucket through its stream's
// leader: every key written, a deleted one too (Latest reads it as
// revision 0), as Keys lists them but without a consumer JetStream may
// place on a replica that lags (TestPendingTasksAreDecidedOnTheLeadersEntry
// shows the lagging case).
func TestLatestKeysListsTheLeadersKeys(t *testing.T) {
	srv := eventstest.StartServer(t)
	c := eventstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	kv, err := c.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "listed"})
	if err != nil {
		t.Fatal(err)
	}
	st := New(kv, Config[counter]{Name: "counter", Leader: c.Conn()})
	if keys, err := st.LatestKeys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("an empty bucket: %v, %v", keys, err)
	}
	for _, k := range []string{"a.x", "b", "c"} {
		if _, err := st.Put(ctx, k, counter{N: 1}, 0); err != nil {
			t.Fatal(err)
		}
	}
	_, rev, err := st.Get(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "c", rev); err != nil {
		t.Fatal(err)
	}
	keys, err := st.LatestKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	if want := []string{"a.x", "b", "c"}; !slices.Equal(keys, want) {
		t.Fatalf("LatestKeys: %v, want %v", keys, want)
	}
	if _, rev, err := st.Latest(ctx, "c"); err != nil || rev != 0 {
		t.Errorf("the deleted key read with Latest: revision %d, %v; want 0", rev, err)
	}
}
