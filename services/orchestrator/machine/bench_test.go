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

// BenchmarkNextUnchanged measures a decision that changes nothing, on the
// same rollout: a tick before any deadline, which compares the whole state.
func BenchmarkNextUnchanged(b *testing.B) {
	w, _ := midUpdate(b)
	st := w.st
	wake, ok := st.NextWakeup()
	if !ok || !wake.After(w.now) {
		b.Fatalf("setup: next wakeup %s (%t), now %s", wake, ok, w.now)
	}
	b.ReportAllocs()
	for b.Loop() {
		next, effects := Machine{}.Next(st, Observation{Tick: true}, w.now)
		if next.Version != st.Version || len(effects) != 0 {
			b.Fatal("an early tick changed the state")
		}
	}
}
