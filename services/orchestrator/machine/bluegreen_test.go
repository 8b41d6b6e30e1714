package machine

import (
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// routeHashes returns the active and preview hashes of the last route.
func routeHashes(w *world) (active, preview string) {
	rt := w.lastRoute()
	return rt.ActiveHash, rt.PreviewHash
}

func expectServices(t *testing.T, w *world, active, preview string) {
	t.Helper()
	if a, p := routeHashes(w); a != active || p != preview {
		t.Fatalf("active %s preview %s; want active %s preview %s", a, p, active, preview)
	}
}

func TestBlueGreen(t *testing.T) {
	manual := spec.BlueGreenStrategy{
		PreviewReplicaCount:   ptr(int32(1)),
		AutoPromotionEnabled:  ptr(false),
		ScaleDownDelaySeconds: ptr(int32(60)),
		PrePromotionAnalysis:  analysisRef("smoke"),
		PostPromotionAnalysis: analysisRef("error-rate"),
	}
	tests := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"first revision is active at once", func(t *testing.T, w *world) {
			m := w.mark()
			start(w, blueGreen(3, manual))
			w.expectEvents(m, "rollout.accepted", "rollout.completed")
			expectServices(t, w, h1, h1)
			w.expectPods(map[int64]int32{1: 3})
			if s := w.snap(); s.StepIndex != nil || s.StepCount != 0 || s.Strategy != "blueGreen" || s.StableWeight != 100 {
				t.Fatalf("snapshot %+v", s)
			}
		}},
		{"preview, analyses and a manual promotion", func(t *testing.T, w *world) {
			ro := blueGreen(3, manual)
			start(w, ro)
			w.verdicts[purposePrePromotion] = string(phaseSuccessful)
			w.verdicts[purposePostPromotion] = string(phaseSuccessful)
			m := w.mark()
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectEvents(m, "rollout.accepted", "rollout.step.started", "analysis.measured", "analysis.completed", "rollout.paused")
			if ev := w.lastEvent("rollout.step.started"); ev.Data.Step.Action != "preview" {
				t.Fatalf("step %+v", ev.Data.Step)
			}
			w.expectPods(map[int64]int32{1: 3, 2: 1})
			expectServices(t, w, h1, h2)
			w.expectPhase(events.PhasePaused)
			if c := w.st.PauseConditions; len(c) != 1 || c[0].Reason != PauseBlueGreen {
				t.Fatalf("pause conditions %v", c)
			}
			w.advance(time.Hour)
			w.expectStep(0)
			w.expectWeight(0)
			m = w.mark()
			w.command(CommandPromote)
			w.settle()
			w.expectEvents(m, "rollout.resumed", "rollout.step.completed", "rollout.step.started",
				"rollout.step.completed", "rollout.step.started", "analysis.measured", "analysis.completed",
				"rollout.step.completed", "rollout.completed")
			expectServices(t, w, h2, h2)
			w.expectPods(map[int64]int32{1: 3, 2: 3})
			w.expectPhase(events.PhaseHealthy)
			if s := w.snap(); s.StableRevision != 2 {
				t.Fatalf("snapshot %+v", s)
			}
			w.advance(59 * time.Second)
			w.expectPods(map[int64]int32{1: 3, 2: 3})
			w.advance(time.Second)
			w.expectPods(map[int64]int32{2: 3})
		}},
		{"the active service switches only once the new revision runs every replica", func(t *testing.T, w *world) {
			ro := blueGreen(3, spec.BlueGreenStrategy{PreviewReplicaCount: ptr(int32(1)), AutoPromotionEnabled: ptr(false)})
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.command(CommandPromote)
			var order []string
			for i := 0; len(w.pending) > 0; i++ {
				tk := w.pending[0]
				w.pending = w.pending[1:]
				switch {
				case tk.Scale != nil:
					for _, r := range tk.Scale.Revisions {
						if r.PodHash == h2 {
							order = append(order, "scale "+string(r.Role))
						}
					}
				case tk.Route != nil && tk.Route.ActiveHash == h2:
					order = append(order, "switch")
				}
				w.answer(tk)
			}
			if !slices.Equal(order[:2], []string{"scale preview", "switch"}) {
				t.Fatalf("order %v", order)
			}
			w.expectPhase(events.PhaseHealthy)
			w.expectWeight(0)
		}},
		{"a failed pre-promotion analysis aborts; the preview is scaled down later", func(t *testing.T, w *world) {
			ro := blueGreen(3, manual)
			start(w, ro)
			w.verdicts[purposePrePromotion] = string(phaseFailed)
			w.request(image(ro, "web:2"))
			w.settle()
			if r := w.lastEvent("rollout.aborted").Data.Reason; r != "prePromotion analysis run web-"+h2+"-2-pre failed: metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)" {
				t.Fatalf("reason %q", r)
			}
			expectServices(t, w, h1, h1)
			w.expectPods(map[int64]int32{1: 3, 2: 1})
			w.advance(30 * time.Second)
			w.expectPods(map[int64]int32{1: 3, 2: 0})
			w.expectPhase(events.PhaseDegraded)
		}},
		{"a failed post-promotion analysis switches the active service back", func(t *testing.T, w *world) {
			ro := blueGreen(3, manual)
			start(w, ro)
			w.verdicts[purposePrePromotion] = string(phaseSuccessful)
			w.verdicts[purposePostPromotion] = string(phaseFailed)
			w.request(image(ro, "web:2"))
			w.settle()
			tm := len(w.sent)
			w.command(CommandPromote)
			w.settle()
			var actives []string
			for _, tk := range w.sentSince(tm) {
				if tk.Route != nil {
					actives = append(actives, tk.Route.ActiveHash)
				}
			}
			if !slices.Equal(actives, []string{h2, h1}) {
				t.Fatalf("active service %v, want switched and back", actives)
			}
			if s := w.snap(); !s.Aborted || s.StableRevision != 1 || s.StablePodHash != h1 {
				t.Fatalf("snapshot %+v", s)
			}
			w.advance(30 * time.Second)
			w.expectPods(map[int64]int32{1: 3, 2: 0})
		}},
		{"autoPromotionSeconds promotes after the delay", func(t *testing.T, w *world) {
			ro := blueGreen(3, spec.BlueGreenStrategy{AutoPromotionSeconds: 20})
			start(w, ro)
			m := w.mark()
			w.request(image(ro, "web:2"))
			w.advance(19 * time.Second)
			w.expectPhase(events.PhasePaused)
			w.advance(time.Second)
			w.expectPhase(events.PhaseHealthy)
			w.expectContains(m, "rollout.paused", "rollout.resumed", "rollout.completed")
		}},
		{"without a pause, promotion is automatic", func(t *testing.T, w *world) {
			ro := blueGreen(2, spec.BlueGreenStrategy{})
			start(w, ro)
			m := w.mark()
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectEvents(m, "rollout.accepted", "rollout.step.started", "rollout.step.completed", "rollout.step.started", "rollout.step.completed", "rollout.completed")
			expectServices(t, w, h2, h2)
		}},
		{"an inconclusive pre-promotion analysis pauses until promoted", func(t *testing.T, w *world) {
			ro := blueGreen(3, spec.BlueGreenStrategy{PrePromotionAnalysis: analysisRef("smoke")})
			start(w, ro)
			w.verdicts[purposePrePromotion] = string(phaseInconclusive)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPhase(events.PhasePaused)
			if c := w.st.PauseConditions; len(c) != 1 || c[0].Reason != PauseInconclusive {
				t.Fatalf("pause conditions %v", c)
			}
			w.command(CommandPromote)
			w.settle()
			w.expectPhase(events.PhaseHealthy)
		}},
		{"promote full skips the analyses and the pause", func(t *testing.T, w *world) {
			ro := blueGreen(3, manual)
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle() // pre-promotion analysis runs
			tm := len(w.sent)
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			w.expectPhase(events.PhaseHealthy)
			for _, tk := range w.sentSince(tm) {
				if tk.Kind == tasks.KindAnalysisRun {
					t.Fatalf("analysis %s after promote full", tk.Analysis.RunName)
				}
			}
			expectServices(t, w, h2, h2)
		}},
		{"abort before promotion keeps the active service", func(t *testing.T, w *world) {
			ro := blueGreen(3, spec.BlueGreenStrategy{AutoPromotionEnabled: ptr(false), AbortScaleDownDelaySeconds: ptr(int32(0))})
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.command(CommandAbort)
			w.advance(time.Hour)
			expectServices(t, w, h1, h1)
			w.expectPods(map[int64]int32{1: 3, 2: 3}) // abortScaleDownDelaySeconds: 0 keeps it
			w.command(CommandRetry)
			w.settle()
			w.expectPhase(events.PhasePaused)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newWorld(t, Config{})) })
	}
}
