package machine

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
)

// BenchmarkNext measures one decision on a rollout in the middle of an
// update with background analysis: the report that the scale task started.
//
//	go test -run '^$' -bench Next ./services/orchestrator/machine
func BenchmarkNext(b *testing.B) {
	w, _ := midUpdate(b)
	st := w.st
	scale := st.Scale
	obs := Observation{Started: &tasks.Started{TaskID: scale.ID, Attempt: scale.Attempt}}
	now := w.now
	b.ReportAllocs()
	for b.Loop() {
		next, _ := Machine{}.Next(st, obs, now.Add(time.Millisecond))
		if next.Version == st.Version {
			b.Fatal("the observation changed nothing")
		}
	}
}
