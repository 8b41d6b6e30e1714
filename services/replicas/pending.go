package replicas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
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

func pendingKey(r events.Ref) string { return r.Namespace + "." + r.Name }

func refFromPendingKey(k string) (events.Ref, error) {
	ns, name, ok := strings.Cut(k, ".")
	if !ok {
		return events.Ref{}, fmt.Errorf("key %q is not <namespace>.<name>", k)
	}
	r := events.Ref{Namespace: ns, Name: name}
	return r, r.Validate()
}

// pendingStore reads and writes BucketPending with compare-and-swap, so
// that a redelivered older task never replaces a newer one.
type pendingStore struct{ kv jetstream.KeyValue }

// maxConflicts bounds compare-and-swap retries of one write.
const maxConflicts = 8

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// put records t as its rollout's pending task unless the entry holds a task
// with a higher seq. It returns the deadline in force: the stored one when
// the entry already holds this attempt of t (a redelivery), else deadline.
// held reports whether the entry now holds t.
func (s pendingStore) put(ctx context.Context, t tasks.Task, deadline time.Time) (effective time.Time, held bool, err error) {
	key := pendingKey(t.Ref)
	data, err := json.Marshal(pendingTask{Task: t, Deadline: deadline})
	if err != nil {
		return deadline, false, err
	}
	for range maxConflicts {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_, err = s.kv.Create(ctx, key, data)
			if isConflict(err) {
				continue
			}
			return deadline, err == nil, err
		}
		if err != nil {
			return deadline, false, err
		}
		var cur pendingTask
		if json.Unmarshal(e.Value(), &cur) == nil {
			if cur.Task.Seq > t.Seq {
				return deadline, false, nil
			}
			if cur.Task.ID == t.ID && cur.Task.Attempt == t.Attempt {
				return cur.Deadline, true, nil
			}
		}
		_, err = s.kv.Update(ctx, key, data, e.Revision())
		if isConflict(err) {
			continue
		}
		return deadline, err == nil, err
	}
	return deadline, false, fmt.Errorf("pending task of %s: %d concurrent updates in a row", t.Ref, maxConflicts)
}

// done removes the rollout's entry if it still holds this attempt of t.
func (s pendingStore) done(ctx context.Context, t tasks.Task) error {
	e, err := s.kv.Get(ctx, pendingKey(t.Ref))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var cur pendingTask
	if json.Unmarshal(e.Value(), &cur) == nil && (cur.Task.ID != t.ID || cur.Task.Attempt != t.Attempt) {
		return nil
	}
	err = s.kv.Delete(ctx, pendingKey(t.Ref), jetstream.LastRevision(e.Revision()))
	if isConflict(err) {
		return nil // replaced meanwhile by a newer task
	}
	return err
}

// list returns every pending task. Unreadable entries are skipped.
func (s pendingStore) list(ctx context.Context) ([]pendingTask, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	defer lister.Stop()
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []pendingTask
	for _, k := range keys {
		if _, err := refFromPendingKey(k); err != nil {
			continue
		}
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var p pendingTask
		if json.Unmarshal(e.Value(), &p) != nil || p.Task.Scale == nil {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}
