package replicas

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
)

// BucketPending holds the scale task each rollout waits on, keyed
// <namespace>.<name>, from the moment it is accepted until its finished
// report is published. A restarted service resumes the waits it finds.
const BucketPending = "sluice-replicas-pending"

// pendingTask is one entry of BucketPending.
type pendingTask struct {
	Task tasks.Task `json:"task"`
	// Deadline is when the task is reported Failed if its revisions are
	// still not available; a redelivery or a restart does not extend it.
	Deadline time.Time `json:"deadline"`
}

// pendingStore reads and writes BucketPending with compare-and-swap, so
// that a redelivered older task never replaces a newer one. An entry that
// does not decode is replaced by the next task of its rollout.
//
// Any replica of the bucket may answer a read, and one that lags behind
// answers with an older entry: every decision to leave an entry as it is
// (put's Unchanged, done's "not mine") and every resumed wait (list) is
// made on the entry of the leader of the bucket's stream.
type pendingStore struct{ *records.Store[pendingTask] }

// newPendingStore returns the store of BucketPending kv; leader is the
// connection through which it reads the leader's entries.
func newPendingStore(kv jetstream.KeyValue, leader records.Requester) pendingStore {
	return pendingStore{records.New(kv, records.Config[pendingTask]{Name: "pending task", OverwriteUnreadable: true, Leader: leader})}
}

// put records t as its rollout's pending task unless the entry holds a task
// with a higher seq. It returns the deadline in force: the stored one when
// the entry already holds this attempt of t (a redelivery), else deadline.
// held reports whether the entry now holds t. Both are decided on the
// leader's entry when t is not written: on an older entry a redelivered
// older attempt would be "held" and replace the wait for the newer task,
// whose report would then never come.
func (s pendingStore) put(ctx context.Context, t tasks.Task, deadline time.Time) (effective time.Time, held bool, err error) {
	_, err = s.Update(ctx, records.KeyOf(t.Ref), records.Checked(func(cur *pendingTask, rev uint64) error {
		effective, held = deadline, false
		if rev != 0 {
			if cur.Task.Seq > t.Seq {
				return records.Unchanged
			}
			if cur.Task.ID == t.ID && cur.Task.Attempt == t.Attempt {
				effective, held = cur.Deadline, true
				return records.Unchanged
			}
		}
		*cur, held = pendingTask{Task: t, Deadline: deadline}, true
		return nil
	}))
	if err != nil {
		return deadline, false, err
	}
	return effective, held, nil
}

// done removes the rollout's entry if it still holds this attempt of t (or
// does not decode). It reads the leader's entry: on an older one (none
// yet, or the task before t) the entry would stay, and the next start
// would apply t again.
func (s pendingStore) done(ctx context.Context, t tasks.Task) error {
	key := records.KeyOf(t.Ref)
	cur, rev, err := s.Latest(ctx, key)
	switch {
	case rev == 0:
		return err
	case err != nil && !errors.Is(err, records.ErrUnreadable):
		return err
	case err == nil && (cur.Task.ID != t.ID || cur.Task.Attempt != t.Attempt):
		return nil
	}
	// A conflict means a newer task replaced it meanwhile: it stays.
	if err := s.Delete(ctx, key, rev); err != nil && !errors.Is(err, records.ErrConflict) {
		return err
	}
	return nil
}

// list returns every pending task, each the leader's entry, listed by the
// leader: an older one would resume the wait for a task its rollout has
// left (or none), and the current task would never be reported.
// Unreadable entries are skipped.
func (s pendingStore) list(ctx context.Context) ([]pendingTask, error) {
	keys, err := s.LatestKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []pendingTask
	for _, k := range keys {
		if _, err := records.RefOf(k); err != nil {
			continue
		}
		p, rev, err := s.Latest(ctx, k)
		switch {
		case errors.Is(err, records.ErrUnreadable):
			continue
		case err != nil:
			return nil, err
		case rev == 0 || p.Task.Scale == nil:
			continue
		}
		out = append(out, p)
	}
	return out, nil
}
