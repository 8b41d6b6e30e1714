package replicas

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/records/recordstest"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// TestPendingTasksAreDecidedOnTheLeadersEntry keeps a rollout's pending
// tasks in a bucket one of whose replicas fell behind (recordstest) while
// it held the rollout's first task: reads answered by it say that task is
// still pending, while the entry holds the second.
//   - A redelivery of the first task must not be held: the service would
//     replace the wait for the second with it, and the second's report
//     would never come.
//   - list, which resumes the waits after a restart, must return the
//     second task, not the first, and the task of another rollout put
//     after the replica fell behind: listed by a consumer JetStream
//     placed on that replica, it was missing.
//   - done for the second task must remove the entry: left, the next
//     start would apply the task again.
//
// Each is made recordstest.Tries times; before the store read the
// leader's entry for these, about one in three went wrong.
func TestPendingTasksAreDecidedOnTheLeadersEntry(t *testing.T) {
	c := recordstest.Start(t)
	kv := c.Bucket(t, jetstream.KeyValueConfig{Bucket: BucketPending})
	st := newPendingStore(kv, c.Conn)
	ctx := context.Background()
	r := events.Ref{Namespace: "prod", Name: "web"}
	key := records.KeyOf(r)
	task := func(id string, seq int64) tasks.Task {
		return tasks.Task{ID: id, Attempt: 1, Kind: tasks.KindScale, Ref: r, Seq: seq, Revision: seq,
			Scale: &tasks.Scale{Revisions: []tasks.RevisionScale{{Revision: seq, Replicas: 1}}}}
	}
	first, second := task("first", 1), task("second", 2)
	other := task("other", 1)
	other.Ref = events.Ref{Namespace: "prod", Name: "api"}
	if _, held, err := st.put(ctx, first, time.Now().Add(time.Hour)); err != nil || !held {
		t.Fatalf("put the first task: held %v, %v", held, err)
	}
	c.FallBehind(t, kv)
	if _, held, err := st.put(ctx, second, time.Now().Add(time.Hour)); err != nil || !held {
		t.Fatalf("put the second task: held %v, %v", held, err)
	}
	if _, held, err := st.put(ctx, other, time.Now().Add(time.Hour)); err != nil || !held {
		t.Fatalf("put the other rollout's task: held %v, %v", held, err)
	}
	_, rev, err := st.Latest(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	c.Behind(t, kv, key, rev)

	for i := range recordstest.Tries {
		if _, held, err := st.put(ctx, first, time.Now().Add(time.Hour)); err != nil || held {
			t.Fatalf("try %d: a redelivery of the first task: held %v (%v), while the entry holds the second: its wait would replace the second's", i+1, held, err)
		}
		pending, err := st.list(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range pending {
			ids = append(ids, p.Task.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{other.ID, second.ID}) {
			t.Fatalf("try %d: list returned tasks %v, want %v", i+1, ids, []string{other.ID, second.ID})
		}
		if err := st.done(ctx, second); err != nil {
			t.Fatal(err)
		}
		if _, rev, err := st.Latest(ctx, key); err != nil || rev != 0 {
			t.Fatalf("try %d: after done the entry is at revision %d (%v), want removed", i+1, rev, err)
		}
		// The second task again, for the next try: the replica behind
		// still has the first. Creating an entry over a deleted one reads
		// it through any replica (nats.go's Create), and the older entry
		// the replica behind answers fails the create as a conflict now
		// and then: the task's delivery is retried, as here.
		poll.Until(t, "the second task pending again", func() error {
			_, held, err := st.put(ctx, second, time.Now().Add(time.Hour))
			if err == nil && !held {
				err = errors.New("not held")
			}
			return err
		}, poll.Timeout(time.Minute))
	}
}
