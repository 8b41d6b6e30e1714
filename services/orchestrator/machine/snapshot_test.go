package machine

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
)

// TestSnapshotArgoFields: the snapshot carries what Argo's status needs
// beyond phase and weights: the update's analysis runs, abortedAt,
// promoteFull, a user's pause, blue/green's selectors and restartedAt.
func TestSnapshotArgoFields(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"the update's runs, and the abort a failed one causes", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(20), analysisStep("latency"), pauseIndefinitely())
			ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate")}
			start(w, ro)
			if s := w.snap(); s.Runs != nil || s.Aborted || !s.AbortedAt.IsZero() {
				t.Fatalf("before any update: %+v", s)
			}
			w.request(image(ro, "web:2"))
			w.settle()
			s := w.snap()
			if len(s.Runs) != 2 {
				t.Fatalf("runs %+v", s.Runs)
			}
			bg, step := s.Runs[0], s.Runs[1]
			if bg.Purpose != purposeBackground || bg.Step != nil || bg.Phase != string(phasePending) && bg.Phase != string(phaseRunning) {
				t.Fatalf("background run %+v", bg)
			}
			if step.Purpose != purposeStep || step.Step == nil || *step.Step != 1 || step.Name == bg.Name {
				t.Fatalf("step run %+v", step)
			}
			w.advance(time.Minute)
			abortAt := w.now
			w.finishRun(purposeStep, string(phaseFailed))
			s = w.snap()
			if !s.Aborted || !s.AbortedAt.Equal(abortAt) {
				t.Fatalf("aborted %v at %s, want %s", s.Aborted, s.AbortedAt, abortAt)
			}
			// The orchestrator forgets a finished run the update no longer
			// needs, as Argo's status drops an aborted canary's runs.
			for _, r := range s.Runs {
				if r.Name == step.Name {
					t.Fatalf("the aborted update's step run is still listed: %+v", s.Runs)
				}
			}

			// A new revision: the runs are its own, the abort is over.
			w.request(image(ro, "web:3"))
			w.settle()
			s = w.snap()
			if s.Aborted || !s.AbortedAt.IsZero() || len(s.Runs) == 0 {
				t.Fatalf("a new update: %+v", s)
			}
			for _, r := range s.Runs {
				if r.Name == bg.Name || r.Name == step.Name {
					t.Fatalf("revision 3's snapshot lists revision 2's run %+v", r)
				}
			}
		}},
		{"a user's pause and a full promotion", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(20), pauseIndefinitely(), setWeight(50), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			if s := w.snap(); s.UserPaused || s.PromoteFull {
				t.Fatalf("paused at a step: %+v", s)
			}
			w.command(CommandPause)
			w.settle()
			if s := w.snap(); !s.UserPaused {
				t.Fatalf("pause command: %+v", s)
			}
			w.command(CommandResume)
			w.settle()
			if s := w.snap(); s.UserPaused {
				t.Fatalf("resumed: %+v", s)
			}
			w.down["replicas"] = true // the full promotion stays in progress
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			if s := w.snap(); !s.PromoteFull {
				t.Fatalf("promote full: %+v", s)
			}
		}},
		{"blue/green's selectors", func(t *testing.T, w *world) {
			ro := blueGreen(3, spec.BlueGreenStrategy{PreviewService: "web-preview", AutoPromotionEnabled: ptr(false)})
			start(w, ro)
			if s := w.snap(); s.ActivePodHash != h1 || s.PreviewPodHash != h1 {
				t.Fatalf("stable: active %q preview %q, want %q", s.ActivePodHash, s.PreviewPodHash, h1)
			}
			w.request(image(ro, "web:2"))
			w.settle()
			if s := w.snap(); s.ActivePodHash != h1 || s.PreviewPodHash != h2 {
				t.Fatalf("preview: active %q preview %q, want %q %q", s.ActivePodHash, s.PreviewPodHash, h1, h2)
			}
			w.command(CommandPromote)
			w.settle()
			if s := w.snap(); s.ActivePodHash != h2 || s.PreviewPodHash != h2 {
				t.Fatalf("promoted: active %q preview %q, want %q", s.ActivePodHash, s.PreviewPodHash, h2)
			}
		}},
		{"blue/green without a preview Service", func(t *testing.T, w *world) {
			ro := blueGreen(3, spec.BlueGreenStrategy{})
			ro.Spec.Strategy.BlueGreen.PreviewService = ""
			start(w, ro)
			if s := w.snap(); s.ActivePodHash != h1 || s.PreviewPodHash != "" {
				t.Fatalf("active %q preview %q", s.ActivePodHash, s.PreviewPodHash)
			}
		}},
		{"a canary has no blue/green selectors", func(t *testing.T, w *world) {
			start(w, nginxCanary(4, setWeight(20)))
			if s := w.snap(); s.ActivePodHash != "" || s.PreviewPodHash != "" {
				t.Fatalf("%+v", s)
			}
		}},
		{"restartedAt once the restart is done", func(t *testing.T, w *world) {
			start(w, nginxCanary(4, setWeight(20)))
			w.down["replicas"] = true
			w.command(CommandRestart)
			at := w.now
			if s := w.snap(); !s.RestartedAt.IsZero() {
				t.Fatalf("restartedAt %s while pods are being restarted", s.RestartedAt)
			}
			w.up("replicas")
			w.settle()
			if s := w.snap(); !s.RestartedAt.Equal(at) {
				t.Fatalf("restartedAt %s, want %s", s.RestartedAt, at)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newWorld(t, Config{}))
		})
	}
}
