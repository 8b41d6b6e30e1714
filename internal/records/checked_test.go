package records

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records/recordstest"
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
