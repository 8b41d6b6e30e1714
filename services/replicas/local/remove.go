package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// remove carries out a scale task with Remove (the rollout is deleted):
// every revision the backend runs for ref, listed or not, goes to 0; once
// the last process has stopped, the rollout is forgotten, its seq guard
// included, so the next task for it starts fresh. Its log files stay, for
// whoever looks into what happened. A rollout the backend does not know is
// removed already.
func (b *Backend) remove(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error) {
	b.mu.Lock()
	if !b.running || b.closed {
		b.mu.Unlock()
		return nil, errNotRunning
	}
	ro := b.rollouts[ref]
	if ro == nil {
		b.mu.Unlock()
		out := make([]tasks.RevisionStatus, len(scale.Revisions))
		for i, rs := range scale.Revisions {
			out[i] = entryStatus(rs)
		}
		return out, nil
	}
	if seq < ro.seq {
		applied := ro.seq
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: seq %d, but seq %d was applied for %s", tasks.ErrStale, seq, applied, ref)
	}
	next := tasks.Scale{Workload: scale.Workload, Remove: true}
	listed := map[string]bool{}
	for _, rs := range scale.Revisions {
		rs.Replicas = 0
		listed[entryName(rs)] = true
		next.Revisions = append(next.Revisions, rs)
	}
	for key, rev := range ro.revisions {
		if !listed[key] {
			rs := rev.spec
			rs.Replicas = 0
			next.Revisions = append(next.Revisions, rs)
		}
	}
	if err := b.recordLocked(ro, seq, next); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	ro.removing = true
	b.log.Info("removing rollout", "rollout", ref.String(), "seq", seq, "revisions", len(ro.revisions))
	for _, rs := range next.Revisions {
		if rev := ro.revisions[entryName(rs)]; rev != nil {
			rev.spec = rs
			b.reconcileLocked(rev)
		}
	}
	if len(ro.revisions) == 0 {
		b.forgetLocked(ro)
	}
	b.mu.Unlock()
	st, err := b.wait(ctx, ro, seq, next)
	if err != nil {
		return st, err
	}
	return st[:len(scale.Revisions)], nil
}

// forgetLocked drops a removed rollout that has no revision left: from
// memory, and its state files from the state directory (logs stay).
func (b *Backend) forgetLocked(ro *rollout) {
	if b.rollouts[ro.ref] != ro {
		return
	}
	delete(b.rollouts, ro.ref)
	_ = os.Remove(filepath.Join(ro.dir, rolloutFileName))
	if files, _ := filepath.Glob(filepath.Join(ro.dir, "*.json")); len(files) == 0 {
		_ = os.Remove(ro.dir) // only when empty: logs keep it
	}
	b.log.Info("rollout removed", "rollout", ro.ref.String())
	b.changedLocked(nil)
}
