// Package instant is a replicas backend whose pods are available the moment
// they are asked for. It runs nothing: it is the platform of benchmarks and
// end-to-end tests that measure Sluice itself, and a dry run for manifests.
package instant

import (
	"context"
	"fmt"
	"sync"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas"
)

// Backend keeps each rollout's desired revisions in memory.
type Backend struct {
	mu       sync.Mutex
	rollouts map[events.Ref]*rollout
}

type rollout struct {
	seq       int64
	revisions map[string]tasks.RevisionStatus // by pod hash
}

var _ replicas.Backend = (*Backend)(nil)

// New returns an empty backend.
func New() *Backend { return &Backend{rollouts: map[events.Ref]*rollout{}} }

// Start does nothing: there is nothing to adopt.
func (b *Backend) Start(context.Context) error { return nil }

// Close does nothing.
func (b *Backend) Close(context.Context) error { return nil }

// Apply records the desired counts and reports them available at once. A
// restart (RestartAt) is done the moment it is asked for: there are no pods
// to replace. Remove forgets the rollout.
func (b *Backend) Apply(_ context.Context, ref events.Ref, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.rollouts[ref]
	if r == nil {
		r = &rollout{revisions: map[string]tasks.RevisionStatus{}}
		b.rollouts[ref] = r
	}
	if seq < r.seq {
		return nil, fmt.Errorf("%w: seq %d, %d already applied for %s", tasks.ErrStale, seq, r.seq, ref)
	}
	if scale.Remove {
		// The rollout is deleted: forgotten, seq guard included, so that
		// the next task for it starts fresh.
		delete(b.rollouts, ref)
		out := make([]tasks.RevisionStatus, len(scale.Revisions))
		for i, rev := range scale.Revisions {
			out[i] = tasks.RevisionStatus{Revision: rev.Revision, PodHash: rev.PodHash, Template: template(rev)}
		}
		return out, nil
	}
	r.seq = seq
	out := make([]tasks.RevisionStatus, 0, len(scale.Revisions))
	for _, rev := range scale.Revisions {
		st := tasks.RevisionStatus{Revision: rev.Revision, PodHash: rev.PodHash, Template: template(rev), Replicas: rev.Replicas, Ready: rev.Replicas, Available: rev.Replicas}
		switch {
		case rev.Experiment != nil:
			// An experiment template's pods are not the revision's,
			// whose pod hash they may share: Replicas leaves them out.
		case rev.Replicas == 0:
			delete(r.revisions, rev.PodHash)
		default:
			r.revisions[rev.PodHash] = st
		}
		out = append(out, st)
	}
	return out, nil
}

// Replicas returns how many pods each revision of ref runs, by pod hash.
func (b *Backend) Replicas(ref events.Ref) map[string]int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int32{}
	if r := b.rollouts[ref]; r != nil {
		for hash, st := range r.revisions {
			out[hash] = st.Replicas
		}
	}
	return out
}

// template is the entry's experiment template name, empty for a revision.
func template(rs tasks.RevisionScale) string {
	if rs.Experiment == nil {
		return ""
	}
	return rs.Experiment.Template
}
