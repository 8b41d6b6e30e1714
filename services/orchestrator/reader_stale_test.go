package orchestrator

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/records/recordstest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// TestLeaderReaderReadsTheLeadersRecord reads a rollout whose record has
// a replica that fell behind at revision 1 (recordstest) while the
// orchestrator holds revision 2. A Reader's view is moment-old now and
// then; a LeaderReader, which the status writer of Rollout objects reads
// through (an older status written there stays until the rollout's next
// event), must read revision 2 every time.
func TestLeaderReaderReadsTheLeadersRecord(t *testing.T) {
	c := recordstest.Start(t)
	kv := c.Bucket(t, jetstream.KeyValueConfig{Bucket: BucketRollouts})
	st := newStore(kv, 0, nil)
	ctx := context.Background()
	r := events.Ref{Namespace: "prod", Name: "web"}
	rev, err := st.Put(ctx, records.KeyOf(r), record{State: machine.State{Revision: 1}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.FallBehind(t, kv)
	if rev, err = st.Put(ctx, records.KeyOf(r), record{State: machine.State{Revision: 2}}, rev); err != nil {
		t.Fatal(err)
	}
	c.Behind(t, kv, records.KeyOf(r), rev)

	client := eventstest.Connect(t, c.URL)
	view, err := NewReader(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	leader, err := NewLeaderReader(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	older := 0
	for i := range recordstest.Tries {
		if snap, err := view.Get(ctx, r); err != nil {
			t.Fatal(err)
		} else if snap.Revision == 1 {
			older++
		}
		snap, err := leader.Get(ctx, r)
		if err != nil || snap.Revision != 2 {
			t.Fatalf("try %d: the leader reader read revision %d (%v), want 2", i+1, snap.Revision, err)
		}
	}
	t.Logf("the view read the older record %d times of %d; the leader reader never did", older, recordstest.Tries)
}
