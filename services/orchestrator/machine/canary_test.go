package machine

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

var (
	h1 = hashOf("web:1")
	h2 = hashOf("web:2")
	h3 = hashOf("web:3")
)

// start requests ro and lets its first revision come up.
func start(w *world, ro *spec.Rollout) {
	w.t.Helper()
	w.request(ro)
	w.settle()
	w.expectPhase(events.PhaseHealthy)
}

// routeWeights lists the canary weights of the route tasks sent after task
// index mark for revision rev.
func routeWeights(w *world, mark int, rev int64) []int32 {
	var out []int32
	for _, tk := range w.sentSince(mark) {
		if tk.Route != nil && tk.Revision == rev && tk.Attempt == 1 {
			out = append(out, tk.Route.CanaryWeight)
		}
	}
	return out
}

func kinds(ts []tasks.Task) []string {
	var out []string
	for _, tk := range ts {
		out = append(out, tk.Kind)
	}
	return out
}

func TestCanary(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"first revision is stable at once, without steps", func(t *testing.T, w *world) {
			effs := w.apply(Observation{Request: nginxCanary(4, setWeight(50), pauseIndefinitely())})
			if got := describeEffects(effs); !strings.HasPrefix(got, "[rollout.accepted, task shop/web/r1/scale/1#1, task shop/web/r1/route/1#1") {
				t.Fatalf("effects %s", got)
			}
			if s := w.snap(); s.Revision != 1 || s.StableRevision != 1 || s.PodHash != h1 || s.Phase != events.PhaseProgressing {
				t.Fatalf("snapshot %+v", s)
			}
			if rt := effs[2].Task.Route; rt.CanaryHash != h1 || rt.StableHash != h1 || rt.CanaryWeight != 0 {
				t.Fatalf("route %+v", rt)
			}
			m := w.mark()
			w.settle()
			w.expectEvents(m, "rollout.completed")
			w.expectPhase(events.PhaseHealthy)
			s := w.snap()
			if *s.StepIndex != 2 || s.StepCount != 2 || s.StableWeight != 100 || s.Replicas.Available != 4 || s.Replicas.Updated != 4 {
				t.Fatalf("snapshot %+v", s)
			}
		}},
		{"traffic moves only once the canary pods are available", func(t *testing.T, w *world) {
			ro := nginxCanary(10, setWeight(20), pauseFor(60), setWeight(50), pauseIndefinitely())
			start(w, ro)
			m, tm := w.mark(), len(w.sent)
			effs := w.apply(Observation{Request: image(ro, "web:2")})
			for _, e := range effs {
				if e.Task != nil && e.Task.Route != nil && (e.Task.Route.CanaryWeight != 0 || e.Task.Route.CanaryHash != h2) {
					t.Fatalf("route before the canary is up: %+v", e.Task.Route)
				}
			}
			w.settle()
			w.expectEvents(m, "rollout.accepted", "rollout.step.started", "rollout.step.completed", "rollout.step.started", "rollout.paused")
			w.expectPods(map[int64]int32{1: 10, 2: 2})
			w.expectWeight(20)
			w.expectPhase(events.PhasePaused)
			w.advance(59 * time.Second)
			w.expectStep(1)
			w.advance(time.Second)
			w.expectStep(3)
			w.expectPods(map[int64]int32{1: 10, 2: 5})
			w.expectWeight(50)
			w.command(CommandPromote)
			w.settle()
			w.expectPhase(events.PhaseHealthy)
			w.expectPods(map[int64]int32{1: 10, 2: 10})
			if got, want := routeWeights(w, tm, 2), []int32{0, 20, 50, 100, 0}; !slices.Equal(got, want) {
				t.Fatalf("route weights %v, want %v", got, want)
			}
			if rt := w.lastRoute(); rt.StableHash != h2 || rt.CanaryHash != h2 {
				t.Fatalf("stable service not switched: %+v", rt)
			}
			w.advance(29 * time.Second)
			w.expectPods(map[int64]int32{1: 10, 2: 10})
			w.advance(time.Second)
			w.expectPods(map[int64]int32{2: 10})
			if s := w.snap(); s.StableRevision != 2 || s.Revision != 2 || s.Replicas.Current != 10 {
				t.Fatalf("snapshot %+v", s)
			}
		}},
		{"abort, retry, then promote", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(50), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectWeight(50)
			w.expectPods(map[int64]int32{1: 4, 2: 2})
			m, tm := w.mark(), len(w.sent)
			w.command(CommandAbort)
			// The aborted event waits until the traffic is back on stable.
			w.expectEvents(m)
			if got := kinds(w.sentSince(tm)); !slices.Equal(got, []string{tasks.KindRoute}) {
				t.Fatalf("abort sent %v; want the route first", got)
			}
			if rt := w.lastRoute(); rt.CanaryWeight != 0 {
				t.Fatalf("abort route weight %d", rt.CanaryWeight)
			}
			w.settle()
			w.expectEvents(m, "rollout.aborted")
			if ab := w.lastEvent("rollout.aborted"); ab.Data.Status.CanaryWeight != 0 || ab.Data.Reason != "aborted by operator" {
				t.Fatalf("aborted event: weight %d, reason %q", ab.Data.Status.CanaryWeight, ab.Data.Reason)
			}
			w.expectPhase(events.PhaseDegraded)
			if w.st.Message != "RolloutAborted: Rollout aborted update to revision 2" {
				t.Fatalf("message %q", w.st.Message)
			}
			w.expectWeight(0)
			w.expectPods(map[int64]int32{1: 4, 2: 2})
			w.advance(30 * time.Second)
			w.expectPods(map[int64]int32{1: 4, 2: 0})
			m = w.mark()
			w.command(CommandRetry)
			w.settle()
			w.expectEvents(m, "rollout.resumed", "rollout.step.started", "rollout.step.completed", "rollout.step.started", "rollout.paused")
			w.expectWeight(50)
			w.expectPods(map[int64]int32{1: 4, 2: 2})
			w.command(CommandPromote)
			w.advance(30 * time.Second)
			w.expectPhase(events.PhaseHealthy)
			w.expectPods(map[int64]int32{2: 4})
		}},
		{"promote full during a pause skips steps and analysis", func(t *testing.T, w *world) {
			ro := nginxCanary(5, setWeight(20), pauseIndefinitely(), setWeight(40), pauseIndefinitely(), analysisStep("smoke"))
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectStep(1)
			m, tm := w.mark(), len(w.sent)
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			w.expectEvents(m, "rollout.resumed", "rollout.completed")
			w.expectPhase(events.PhaseHealthy)
			for _, tk := range w.sentSince(tm) {
				if tk.Analysis != nil {
					t.Fatalf("analysis task %s after promote full", tk.ID)
				}
			}
			if got, want := routeWeights(w, tm, 2), []int32{100, 0}; !slices.Equal(got, want) {
				t.Fatalf("route weights %v, want %v", got, want)
			}
		}},
		{"an abort waits for its own route when the step's route is still out", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(20), pauseIndefinitely())
			start(w, ro)
			w.down[tasks.ServiceTraffic] = true // the step's route waits for a worker
			w.request(image(ro, "web:2"))
			w.settle()
			if rt := w.lastRoute(); rt.CanaryWeight != 20 {
				t.Fatalf("step route weight %d, want 20", rt.CanaryWeight)
			}
			m := w.mark()
			w.command(CommandAbort)
			if rt := w.lastRoute(); rt.CanaryWeight != 0 {
				t.Fatalf("abort route weight %d, want 0", rt.CanaryWeight)
			}
			// No traffic has moved yet, but the step's route could still be
			// applied: the event waits for the abort's route.
			w.expectEvents(m)
			w.up(tasks.ServiceTraffic)
			w.settle()
			w.expectEvents(m, "rollout.aborted")
			w.expectWeight(0)
		}},
		{"abort during an analysis step terminates the run; retry runs it again", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectStep(1)
			if _, ok := w.running["web-"+h2+"-2-1"]; !ok {
				t.Fatalf("no step analysis running: %v", w.running)
			}
			m := w.mark()
			w.command(CommandAbort)
			w.settle()
			w.expectEvents(m, "analysis.completed", "rollout.aborted")
			if len(w.running) != 0 || len(w.st.Runs) != 0 {
				t.Fatalf("runs left: %v %v", w.running, w.st.Runs)
			}
			w.expectPhase(events.PhaseDegraded)
			w.verdicts[purposeStep] = string(phaseSuccessful)
			m = w.mark()
			w.command(CommandRetry)
			w.settle()
			w.expectStep(2)
			ac := w.lastEvent("analysis.completed")
			if ac.Data.Analysis.Name != "web-"+h2+"-2-1.1" || ac.Data.Analysis.Phase != "Successful" {
				t.Fatalf("analysis after retry: %+v", ac.Data.Analysis)
			}
			w.expectContains(m, "analysis.measured", "analysis.completed")
			w.expectPhase(events.PhasePaused)
		}},
		{"a failed analysis aborts; a good update then completes", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"), setWeight(50), pauseFor(10))
			start(w, ro)
			w.verdicts[purposeStep] = string(phaseFailed)
			w.request(image(ro, "web:2"))
			w.settle()
			ab := w.lastEvent("rollout.aborted")
			wantReason := "step analysis run web-" + h2 + "-2-1 failed: metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)"
			if ab.Data.Reason != wantReason || ab.Data.Status.Phase != events.PhaseDegraded {
				t.Fatalf("aborted %q %s", ab.Data.Reason, ab.Data.Status.Phase)
			}
			if w.st.Message != "RolloutAborted: Rollout aborted update to revision 2: "+wantReason {
				t.Fatalf("message %q", w.st.Message)
			}
			w.expectWeight(0)
			if s := w.snap(); s.Analysis == nil || s.Analysis.Phase != "Failed" || !s.Aborted {
				t.Fatalf("snapshot %+v", s)
			}
			w.verdicts[purposeStep] = string(phaseSuccessful)
			m := w.mark()
			w.request(image(ro, "web:3"))
			w.advance(10 * time.Second)
			w.expectContains(m, "rollout.accepted", "rollout.completed")
			w.expectPhase(events.PhaseHealthy)
			w.expectPods(map[int64]int32{1: 4, 3: 4})
			w.advance(30 * time.Second)
			w.expectPods(map[int64]int32{3: 4})
		}},
		{"a canary that never becomes available is replaced by a good update", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.broken[h2] = true
			w.request(image(ro, "web:2"))
			w.advance(time.Minute)
			w.expectStep(0)
			w.expectWeight(0)
			w.expectPhase(events.PhaseProgressing)
			w.request(image(ro, "web:3"))
			w.settle()
			w.expectPods(map[int64]int32{1: 4, 3: 1})
			w.expectWeight(25)
			w.expectPhase(events.PhasePaused)
		}},
		{"an update while paused restarts the steps and drops the earlier canary", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(50), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPhase(events.PhasePaused)
			m, tm := w.mark(), len(w.sent)
			w.request(image(ro, "web:3"))
			w.expectEvents(m, "rollout.accepted", "rollout.step.started")
			if len(w.st.PauseConditions) != 0 {
				t.Fatalf("pause conditions kept: %v", w.st.PauseConditions)
			}
			if got := w.sentSince(tm); len(got) != 2 || got[0].Scale == nil || got[1].Route == nil || got[1].Route.CanaryHash != h3 || got[1].Route.CanaryWeight != 0 {
				t.Fatalf("tasks %v", kinds(got))
			}
			// The earlier canary keeps its pods until traffic has left it.
			w.expectPods(map[int64]int32{1: 4, 2: 2, 3: 2})
			w.settle()
			w.expectPods(map[int64]int32{1: 4, 3: 2})
			w.expectWeight(50)
			w.expectPhase(events.PhasePaused)
		}},
		{"setCanaryScale sizes the canary apart from its weight", func(t *testing.T, w *world) {
			ro := nginxCanary(4,
				spec.CanaryStep{SetCanaryScale: &spec.SetCanaryScale{Replicas: ptr(int32(1))}}, pauseIndefinitely(),
				setWeight(25), pauseIndefinitely(),
				spec.CanaryStep{SetCanaryScale: &spec.SetCanaryScale{Weight: ptr(int32(75))}}, pauseIndefinitely(),
				spec.CanaryStep{SetCanaryScale: &spec.SetCanaryScale{MatchTrafficWeight: true}}, pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			for i, want := range []struct{ canary, weight int32 }{{1, 0}, {1, 25}, {3, 25}, {1, 25}} {
				w.settle()
				w.expectStep(int32(2*i + 1))
				w.expectPods(map[int64]int32{1: 4, 2: want.canary})
				w.expectWeight(want.weight)
				w.command(CommandPromote)
			}
			w.settle()
			w.expectPhase(events.PhaseHealthy)
		}},
		{"dynamicStableScale: abort brings the stable back before traffic", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(75), pauseIndefinitely())
			ro.Spec.Strategy.Canary.DynamicStableScale = true
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectWeight(75)
			w.expectPods(map[int64]int32{1: 1, 2: 3})
			tm := len(w.sent)
			w.command(CommandAbort)
			if got := kinds(w.sentSince(tm)); !slices.Equal(got, []string{tasks.KindScale}) {
				t.Fatalf("abort sent %v; want the stable scaled up first", got)
			}
			w.expectPods(map[int64]int32{1: 4, 2: 3})
			w.settle()
			w.expectWeight(0)
			w.expectPods(map[int64]int32{1: 4, 2: 3})
			w.advance(30 * time.Second)
			w.expectPods(map[int64]int32{1: 4, 2: 0})
			// Promoted to the end, the former stable is scaled down at once.
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			w.expectPhase(events.PhaseHealthy)
			w.expectPods(map[int64]int32{2: 4})
		}},
		{"header and mirror routes accumulate and are removed at the end", func(t *testing.T, w *world) {
			header := spec.SetHeaderRoute{Name: "header", Match: []spec.HeaderRoutingMatch{{HeaderName: "X-Canary", HeaderValue: &spec.StringMatch{Exact: "yes"}}}}
			mirror := spec.SetMirrorRoute{Name: "mirror", Percentage: ptr(int32(50)), Match: []spec.RouteMatch{{Path: &spec.StringMatch{Prefix: "/"}}}}
			ro := istioCanary(2, setWeight(20),
				spec.CanaryStep{SetMirrorRoute: &mirror}, spec.CanaryStep{SetHeaderRoute: &header}, pauseIndefinitely(),
				spec.CanaryStep{SetHeaderRoute: &spec.SetHeaderRoute{Name: "header"}}, pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			rt := w.lastRoute()
			if rt.CanaryWeight != 20 || len(rt.HeaderRoutes) != 1 || len(rt.MirrorRoutes) != 1 || rt.HeaderRoutes[0].Name != "header" {
				t.Fatalf("route %+v", rt)
			}
			w.command(CommandPromote)
			w.settle()
			w.expectStep(5)
			if rt := w.lastRoute(); len(rt.HeaderRoutes) != 0 || len(rt.MirrorRoutes) != 1 {
				t.Fatalf("route after removing the header route %+v", rt)
			}
			w.command(CommandAbort)
			if rt := w.lastRoute(); rt.CanaryWeight != 0 || len(rt.HeaderRoutes)+len(rt.MirrorRoutes) != 0 {
				t.Fatalf("route after abort %+v", rt)
			}
			w.command(CommandRetry)
			w.settle()
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			w.expectPhase(events.PhaseHealthy)
			if rt := w.lastRoute(); rt.CanaryHash != h2 || rt.StableHash != h2 || len(rt.HeaderRoutes)+len(rt.MirrorRoutes) != 0 {
				t.Fatalf("final route %+v", rt)
			}
		}},
		{"background analysis runs from its starting step to the end of the steps", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseFor(10), setWeight(50), pauseFor(10))
			ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate"), StartingStep: ptr(int32(2))}
			start(w, ro)
			tm := len(w.sent)
			w.request(image(ro, "web:2"))
			w.settle()
			if len(w.running) != 0 {
				t.Fatalf("background analysis before its starting step")
			}
			w.advance(10 * time.Second)
			w.expectStep(3)
			run, ok := w.running["web-"+h2+"-2"]
			if !ok {
				t.Fatalf("no background run: %v", w.running)
			}
			if args := run.Analysis.Args; len(args) != 2 || args[0].Value != h2 || args[0].ValueFrom != nil || args[1].Value != "web" {
				t.Fatalf("args not resolved: %+v", args)
			}
			w.advance(10 * time.Second)
			w.expectPhase(events.PhaseHealthy)
			var terminated bool
			for _, tk := range w.sentSince(tm) {
				terminated = terminated || tk.Kind == tasks.KindAnalysisTerminate
			}
			if !terminated || len(w.running) != 0 {
				t.Fatalf("background run not terminated")
			}
		}},
		{"a failing background analysis aborts at any step", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely(), setWeight(50), pauseIndefinitely())
			ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate")}
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectStep(1)
			m := w.mark()
			w.finishRun(purposeBackground, string(phaseError))
			w.expectEvents(m, "analysis.completed", "rollout.aborted")
			if r := w.lastEvent("rollout.aborted").Data.Reason; r != "background analysis run web-"+h2+"-2 error: prometheus unreachable" {
				t.Fatalf("reason %q", r)
			}
			w.expectWeight(0)
		}},
		{"an inconclusive analysis pauses until promoted", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"), setWeight(50))
			start(w, ro)
			w.verdicts[purposeStep] = string(phaseInconclusive)
			w.request(image(ro, "web:2"))
			w.advance(time.Hour)
			w.expectStep(1)
			w.expectPhase(events.PhasePaused)
			if c := w.st.PauseConditions; len(c) != 1 || c[0].Reason != PauseInconclusive {
				t.Fatalf("pause conditions %v", c)
			}
			m := w.mark()
			w.command(CommandPromote)
			w.settle()
			w.expectContains(m, "rollout.resumed", "rollout.step.completed", "rollout.completed")
			w.expectPhase(events.PhaseHealthy)
		}},
		{"going back to the stable template is fast-tracked", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPods(map[int64]int32{1: 4, 2: 1})
			m, tm := w.mark(), len(w.sent)
			w.request(image(ro, "web:1"))
			w.expectEvents(m, "rollout.accepted")
			if r := w.lastEvent("rollout.accepted").Data.Reason; !strings.Contains(r, "steps skipped") {
				t.Fatalf("accepted reason %q", r)
			}
			if s := w.snap(); s.Revision != 3 || s.StableRevision != 3 || s.PodHash != h1 || *s.StepIndex != 2 {
				t.Fatalf("snapshot %+v", s)
			}
			if rt := w.sentSince(tm)[1].Route; rt == nil || rt.CanaryHash != h1 || rt.CanaryWeight != 0 {
				t.Fatalf("route %+v", rt)
			}
			w.settle()
			w.expectEvents(m, "rollout.accepted", "rollout.completed")
			w.expectPods(map[int64]int32{3: 4})
			w.expectPhase(events.PhaseHealthy)
			if n := len(w.st.History); n != 2 || w.st.History[1].Number != 3 || w.st.History[1].Hash != h1 {
				t.Fatalf("history %+v", w.st.History)
			}
		}},
		{"undo goes back one revision; to the stable one it is fast-tracked", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.advance(time.Minute)
			w.expectPods(map[int64]int32{2: 4})
			w.command(CommandUndo)
			w.settle()
			if s := w.snap(); s.Revision != 3 || s.PodHash != h1 || s.StableRevision != 2 || *s.StepIndex != 1 {
				t.Fatalf("undo: snapshot %+v", s)
			}
			m := w.mark()
			w.command(CommandUndo) // back to revision 2, the stable one
			w.settle()
			w.expectEvents(m, "rollout.accepted", "rollout.completed")
			if s := w.snap(); s.Revision != 4 || s.PodHash != h2 || s.StableRevision != 4 {
				t.Fatalf("second undo: snapshot %+v", s)
			}
			m = w.mark()
			w.apply(Observation{Command: &Command{Kind: CommandUndo, ToRevision: 9}})
			w.expectEvents(m, "rollout.command.refused")
			if c := w.lastEvent("rollout.command.refused").Data.Command; c == nil || c.Code != events.RefusedInvalid ||
				c.Reason != "cannot undo: revision 9 is not kept (revisions kept: 3 4)" {
				t.Fatalf("refused %+v", c)
			}
			w.apply(Observation{Command: &Command{Kind: CommandUndo, ToRevision: 3}})
			if s := w.snap(); s.Revision != 5 || s.PodHash != h1 {
				t.Fatalf("undo to 3: snapshot %+v", s)
			}
		}},
		{"changed steps restart the update", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			v2 := image(ro, "web:2")
			w.request(v2)
			w.settle()
			w.expectStep(1)
			v2.Spec.Strategy.Canary.Steps = []spec.CanaryStep{setWeight(50), pauseIndefinitely()}
			m := w.mark()
			w.request(v2)
			w.settle()
			w.expectEvents(m, "rollout.accepted", "rollout.step.started", "rollout.step.completed", "rollout.step.started", "rollout.paused")
			w.expectWeight(50)
			if w.st.Revision != 2 {
				t.Fatalf("revision %d", w.st.Revision)
			}
		}},
		{"a replica count change is not a new revision", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			ro.Spec.Replicas = ptr(int32(8))
			m := w.mark()
			w.request(ro)
			w.settle()
			w.expectEvents(m, "rollout.accepted")
			w.expectPods(map[int64]int32{1: 8})
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPods(map[int64]int32{1: 8, 2: 2})
			v2 := image(ro, "web:2")
			v2.Spec.Replicas = ptr(int32(12))
			w.request(v2)
			w.settle()
			w.expectPods(map[int64]int32{1: 12, 2: 3})
			if w.st.Revision != 2 || w.st.Step != 1 {
				t.Fatalf("revision %d step %d", w.st.Revision, w.st.Step)
			}
		}},
		{"a user pause holds the steps until resumed", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseFor(10), setWeight(50))
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.command(CommandPause)
			w.expectPhase(events.PhasePaused)
			w.advance(time.Minute)
			w.expectStep(0)
			w.expectWeight(25)
			w.command(CommandResume)
			w.settle()
			w.expectStep(1)
			// The pause step's time passes during a user pause; it ends on resume.
			w.command(CommandPause)
			w.advance(time.Minute)
			w.expectStep(1)
			m := w.mark()
			w.command(CommandResume)
			w.settle()
			w.expectContains(m, "rollout.resumed", "rollout.step.completed", "rollout.completed")
			w.expectPhase(events.PhaseHealthy)
		}},
		{"spec.paused pauses and lifting it resumes", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), setWeight(50))
			start(w, ro)
			v2 := image(ro, "web:2")
			v2.Spec.Paused = true
			m := w.mark()
			w.request(v2)
			w.settle()
			w.expectContains(m, "rollout.paused")
			w.expectPhase(events.PhasePaused)
			w.expectStep(0)
			v2.Spec.Paused = false
			w.request(v2)
			w.settle()
			w.expectPhase(events.PhaseHealthy)
		}},
		{"basic canary approximates weights with pods", func(t *testing.T, w *world) {
			ro := basicCanary(4, intstr.FromInt32(1), intstr.FromInt32(0), setWeight(25), pauseFor(30), setWeight(50), pauseIndefinitely(), setWeight(75), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPods(map[int64]int32{1: 3, 2: 1})
			w.expectWeight(25)
			w.advance(30 * time.Second)
			w.expectPods(map[int64]int32{1: 2, 2: 2})
			w.expectWeight(50)
			w.command(CommandPromote)
			w.settle()
			w.expectPods(map[int64]int32{1: 1, 2: 3})
			w.expectWeight(75)
			m := w.mark()
			w.command(CommandAbort)
			w.settle()
			w.expectEvents(m, "rollout.aborted")
			w.expectPods(map[int64]int32{1: 4, 2: 0})
			w.command(CommandRetry)
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			w.expectPods(map[int64]int32{2: 4})
			w.expectPhase(events.PhaseHealthy)
		}},
		{"basic canary without steps rolls within maxSurge", func(t *testing.T, w *world) {
			ro := basicCanary(3, intstr.FromInt32(1), intstr.FromInt32(0))
			start(w, ro)
			tm := len(w.sent)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPhase(events.PhaseHealthy)
			w.expectPods(map[int64]int32{2: 3})
			for _, tk := range w.sentSince(tm) {
				var total int32
				if tk.Scale == nil {
					continue
				}
				for _, r := range tk.Scale.Revisions {
					total += r.Replicas
				}
				if total > 4 {
					t.Fatalf("scale task %s runs %d pods, above replicas+maxSurge", tk.ID, total)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newWorld(t, Config{})) })
	}
}
