package gateway

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/local"
)

// Pod is one pod (on the local platform, one process) of a revision.
type Pod struct {
	Name      string    `json:"name"`
	PodHash   string    `json:"-"`
	Image     string    `json:"image,omitempty"`
	Ready     bool      `json:"ready"`
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"startedAt,omitzero"`
}

// Pods reads the pods of a rollout's revisions where they run.
type Pods interface {
	// Pods returns every pod of rollout r, with its revision's pod hash;
	// none (and no error) when it cannot see where r runs.
	Pods(ctx context.Context, r events.Ref) ([]Pod, error)
}

// LocalPods reads the local platform's processes from its state directory,
// as `sluice get` does; with no StateDir it sees none.
type LocalPods struct{ StateDir string }

var _ Pods = LocalPods{}

// Pods implements Pods.
func (l LocalPods) Pods(_ context.Context, r events.Ref) ([]Pod, error) {
	if l.StateDir == "" {
		return nil, nil
	}
	procs, err := local.Processes(l.StateDir, r)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Pod, len(procs))
	for i, p := range procs {
		out[i] = Pod{Name: p.Name(), PodHash: p.PodHash, Image: p.Image, Ready: p.Ready, Restarts: p.Restarts, StartedAt: p.StartedAt}
	}
	return out, nil
}
