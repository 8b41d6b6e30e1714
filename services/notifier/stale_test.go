package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records/recordstest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// TestStateIsReadFromTheLeader keeps the notifier's state in a bucket one
// of whose replicas fell behind (recordstest) after the rollout's first
// status event was planned: it has neither the delivery mark nor the
// thread of a message delivered since, and holds the snapshot before the
// last. Each read is made recordstest.Tries times, and each must see what
// was written:
//   - the message was sent: read as "not sent", a redelivery of its task
//     sent it twice;
//   - its thread: read as none, the next message of its grouping key
//     started a thread of its own;
//   - the rollout's last snapshot: read as the one before, the next
//     event was planned against it (on-scaling-replica-set notified a
//     scaling that had been notified).
func TestStateIsReadFromTheLeader(t *testing.T) {
	c := recordstest.Start(t)
	kv := c.Bucket(t, jetstream.KeyValueConfig{Bucket: BucketState})
	st := newState(kv, c.Conn)
	ctx := context.Background()
	r := events.Ref{Namespace: "prod", Name: "web"}
	before := events.Snapshot{Namespace: r.Namespace, Name: r.Name, Phase: "Progressing", UpdatedAt: time.Now()}
	if err := st.remember(ctx, before); err != nil {
		t.Fatal(err)
	}
	c.FallBehind(t, kv)

	m := notify.Message{ID: "message-1", Destination: notify.Destination{Service: "slack", Recipient: "deploys"},
		Notification: notify.Notification{Slack: &notify.Slack{GroupingKey: "web"}}}
	if err := st.keepThread(ctx, m, "thread-1"); err != nil {
		t.Fatal(err)
	}
	if err := st.markSent(ctx, m.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	last := before
	last.Phase, last.UpdatedAt = "Paused", before.UpdatedAt.Add(time.Second)
	if err := st.remember(ctx, last); err != nil {
		t.Fatal(err)
	}
	_, rev, err := st.prev.Latest(ctx, prevKey(r))
	if err != nil {
		t.Fatal(err)
	}
	c.Behind(t, kv, prevKey(r), rev)

	for i := range recordstest.Tries {
		if sent, err := st.wasSent(ctx, m.ID); err != nil || !sent {
			t.Fatalf("try %d: message %s sent: %v (%v), want true: a redelivery would send it again", i+1, m.ID, sent, err)
		}
		if thread, err := st.thread(ctx, m); err != nil || thread != "thread-1" {
			t.Fatalf("try %d: thread %q (%v), want thread-1: the message would start a thread of its own", i+1, thread, err)
		}
		if prev, err := st.previous(ctx, r); err != nil || prev == nil || prev.Phase != "Paused" {
			t.Fatalf("try %d: previous snapshot %+v (%v), want the last (Paused)", i+1, prev, err)
		}
	}
}
