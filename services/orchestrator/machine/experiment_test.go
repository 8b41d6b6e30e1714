package machine

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// experimentStep runs a baseline (two pods of the stable's template,
// given baselineWeight of the traffic when set) and a canary (one pod of
// the update's template, with a label of its own) for duration.
func experimentStep(duration string, baselineWeight *int32, analyses ...spec.RolloutExperimentStepAnalysisTemplateRef) spec.CanaryStep {
	return spec.CanaryStep{Experiment: &spec.RolloutExperimentStep{
		Templates: []spec.RolloutExperimentTemplate{
			{Name: "baseline", SpecRef: spec.SpecRefStable, Replicas: ptr(int32(2)), Weight: baselineWeight},
			{Name: "canary", SpecRef: spec.SpecRefCanary, Metadata: spec.PodTemplateMetadata{Labels: map[string]string{"variant": "canary"}}},
		},
		Duration: spec.DurationString(duration),
		Analyses: analyses,
		DryRun:   []spec.DryRun{{MetricName: "latency"}},
	}}
}

// judge is an experiment analysis whose args use every experiment
// variable.
func judge(name string, required bool) spec.RolloutExperimentStepAnalysisTemplateRef {
	return spec.RolloutExperimentStepAnalysisTemplateRef{
		Name: name, TemplateName: "judge", RequiredForCompletion: required,
		Args: []spec.AnalysisRunArgument{
			{Name: "baseline-hash", Value: "{{templates.baseline.podTemplateHash}}"},
			{Name: "canary-rs", Value: "{{ templates.canary.replicaset.name }}"},
			{Name: "since", Value: "{{experiment.availableAt}}"},
			{Name: "stable-hash", ValueFrom: &spec.ArgumentValueFrom{PodTemplateHashValue: ptr(spec.Stable)}},
		},
	}
}

// experimentName is the experiment of step 1 of revision 2 (web:2).
var experimentName = fmt.Sprintf("web-%s-2-1", h2)

// canaryTemplateHash is the hash of the canary template's pods: web:2's
// template with the template's label.
var canaryTemplateHash = func() string {
	tpl := podTemplate("web:2")
	tpl.Labels["variant"] = "canary"
	return PodTemplateHash(tpl)
}()

// lastScale is the last scale task sent.
func (w *world) lastScale() tasks.Scale {
	w.t.Helper()
	for i := len(w.sent) - 1; i >= 0; i-- {
		if w.sent[i].Scale != nil {
			return *w.sent[i].Scale
		}
	}
	w.t.Fatalf("no scale task sent")
	return tasks.Scale{}
}

// experimentPods returns the experiment entries of the last scale task,
// by template name.
func (w *world) experimentPods() map[string]tasks.RevisionScale {
	out := map[string]tasks.RevisionScale{}
	for _, rv := range w.lastScale().Revisions {
		if rv.Experiment != nil {
			out[rv.Experiment.Template] = rv
		}
	}
	return out
}

// runTask returns the analysis.run task sent for the run named name.
func (w *world) runTask(name string) tasks.Task {
	w.t.Helper()
	for _, tk := range w.sent {
		if tk.Kind == tasks.KindAnalysisRun && tk.Analysis.RunName == name {
			return tk
		}
	}
	w.t.Fatalf("no run %s started", name)
	return tasks.Task{}
}

// terminated reports whether an analysis.terminate task was sent for the
// run named name.
func (w *world) terminated(name string) bool {
	return slices.ContainsFunc(w.sent, func(tk tasks.Task) bool {
		return tk.Kind == tasks.KindAnalysisTerminate && tk.Analysis.RunName == name
	})
}

// startExperiment rolls web:2 out up to its running experiment.
func startExperiment(w *world, ro *spec.Rollout) {
	w.t.Helper()
	start(w, ro)
	w.request(image(ro, "web:2"))
	w.settle()
	w.expectStep(1)
}

// expectExperimentGone checks that the experiment's pods were scaled to
// 0 and then forgotten.
func expectExperimentGone(w *world) {
	w.t.Helper()
	for name, rv := range w.experimentPods() {
		if rv.Replicas != 0 {
			w.t.Fatalf("experiment template %s still asked for %d pods", name, rv.Replicas)
		}
	}
	if len(w.st.Experiments) != 0 || w.snap().Experiment != nil {
		w.t.Fatalf("experiment still recorded: %+v", w.st.Experiments)
	}
}

func TestExperimentStep(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"succeeds once its duration has passed, then its pods go after the delay", func(t *testing.T, w *world) {
			ro := istioCanary(4, setWeight(20), experimentStep("5m", ptr(int32(10)), judge("judge", false)), setWeight(40), pauseIndefinitely())
			startExperiment(w, ro)

			// The baseline runs the stable's template, so it has the
			// stable's hash: it is listed apart from the stable's own pods.
			pods := w.experimentPods()
			base, canary := pods["baseline"], pods["canary"]
			if base.PodHash != h1 || base.Role != spec.RoleExperiment || base.Replicas != 2 || base.Revision != 1 ||
				base.Experiment.Name != experimentName || base.Experiment.Service != experimentName+"-baseline" || !reflect.DeepEqual(base.Template, podTemplate("web:1")) {
				t.Fatalf("baseline entry %+v", base)
			}
			if canary.PodHash != canaryTemplateHash || canary.Replicas != 1 || canary.Revision != 2 || canary.Template.Labels["variant"] != "canary" ||
				canary.Experiment.ReplicaSetName() != experimentName+"-canary" || canary.Experiment.Service != "" {
				t.Fatalf("canary entry %+v", canary)
			}
			// As Argo builds it: the rollout's selector, selecting the
			// template's labels too, so its ReplicaSet selects its pods.
			if sel := canary.Experiment.Selector; sel == nil || sel.MatchLabels["variant"] != "canary" || sel.MatchLabels["app"] != "web" {
				t.Fatalf("canary selector %v, want the rollout's with variant=canary", sel)
			}
			if base.Experiment.Selector != nil {
				t.Fatalf("baseline selector %v, want none (the workload's)", base.Experiment.Selector)
			}
			var stable int32
			for _, rv := range w.lastScale().Revisions {
				if rv.PodHash == h1 && rv.Experiment == nil {
					stable = rv.Replicas
				}
			}
			if stable != 4 {
				t.Fatalf("stable revision asked for %d pods, want 4 beside the baseline's", stable)
			}
			if p := w.st.pod(h1); p == nil || p.Available != 4 {
				t.Fatalf("stable pods %+v: the baseline's report was taken for the stable's", p)
			}
			if s := w.snap(); s.Replicas.Current != 5 {
				t.Fatalf("rollout replicas %+v: experiment pods counted with the revisions'", s.Replicas)
			}

			// Runs start once the pods are available, with the variables
			// resolved.
			run := w.runTask(experimentName + "-judge")
			args := map[string]string{}
			for _, a := range run.Analysis.Args {
				args[a.Name] = a.Value
			}
			want := map[string]string{"baseline-hash": h1, "canary-rs": experimentName + "-canary", "since": t0.Format(time.RFC3339), "stable-hash": h1}
			if !reflect.DeepEqual(args, want) {
				t.Fatalf("args %v, want %v", args, want)
			}
			if run.Analysis.Purpose != purposeExperiment || run.Analysis.Spec.Templates[0].TemplateName != "judge" || len(run.Analysis.Spec.DryRun) != 1 {
				t.Fatalf("run %+v", run.Analysis)
			}
			rt := w.lastRoute()
			if len(rt.Experiments) != 1 || rt.Experiments[0].Pods.Template != "baseline" || rt.Experiments[0].PodHash != h1 || rt.Experiments[0].Weight != 10 ||
				rt.Experiments[0].Pods.Service != experimentName+"-baseline" || rt.CanaryWeight != 20 {
				t.Fatalf("route %+v", rt)
			}
			if s := w.snap(); s.CanaryWeight != 20 || s.StableWeight != 70 {
				t.Fatalf("snapshot weights canary %d stable %d, want 20 and 70", s.CanaryWeight, s.StableWeight)
			}
			if runs := w.snap().Runs; len(runs) != 1 || runs[0].Purpose != purposeExperiment || runs[0].Step == nil || *runs[0].Step != 1 {
				t.Fatalf("snapshot runs %+v", runs)
			}
			ex := w.snap().Experiment
			if ex == nil || ex.Name != experimentName || ex.Phase != experimentRunning || !ex.AvailableAt.Equal(t0) ||
				len(ex.Templates) != 2 || ex.Templates[0].Available != 2 || ex.Templates[1].PodHash != canaryTemplateHash ||
				!slices.Equal(ex.Runs, []string{experimentName + "-judge"}) {
				t.Fatalf("snapshot experiment %+v", ex)
			}

			m := w.mark()
			w.advance(4 * time.Minute)
			w.expectStep(1)
			w.advance(time.Minute)
			w.expectStep(3)
			w.expectContains(m, "rollout.step.completed", "analysis.completed")
			if !w.terminated(experimentName + "-judge") {
				t.Fatalf("the experiment's run was not terminated")
			}
			if rt := w.lastRoute(); len(rt.Experiments) != 0 || rt.CanaryWeight != 40 {
				t.Fatalf("route after the experiment %+v", rt)
			}
			if ex := w.snap().Experiment; ex == nil || ex.Phase != string(phaseSuccessful) || !ex.ScaleDownAt.Equal(t0.Add(5*time.Minute+30*time.Second)) {
				t.Fatalf("snapshot experiment %+v", ex)
			}
			if n := w.experimentPods()["baseline"].Replicas; n != 2 {
				t.Fatalf("baseline scaled to %d before scaleDownDelaySeconds", n)
			}
			w.advance(30 * time.Second)
			expectExperimentGone(w)
			w.expectWeight(40)
		}},
		{"a failed analysis aborts the update and names the experiment and the analysis", func(t *testing.T, w *world) {
			w.verdicts[purposeExperiment] = string(phaseFailed)
			ro := istioCanary(4, setWeight(20), experimentStep("5m", ptr(int32(10)), judge("judge", false)), setWeight(40))
			m := w.mark()
			startExperiment(w, ro)
			w.expectContains(m, "rollout.aborted")
			if !w.st.Aborted || !strings.Contains(w.st.AbortReason, "experiment "+experimentName+" failed") || !strings.Contains(w.st.AbortReason, "analysis judge") {
				t.Fatalf("abort reason %q", w.st.AbortReason)
			}
			if rt := w.lastRoute(); len(rt.Experiments) != 0 || rt.CanaryWeight != 0 {
				t.Fatalf("route after the abort %+v", rt)
			}
			if ex := w.snap().Experiment; ex == nil || ex.Phase != string(phaseFailed) {
				t.Fatalf("snapshot experiment %+v", ex)
			}
			w.advance(30 * time.Second)
			expectExperimentGone(w)
		}},
		{"a retry runs the experiment again under a name of its own", func(t *testing.T, w *world) {
			w.verdicts[purposeExperiment] = string(phaseFailed)
			ro := istioCanary(4, setWeight(20), experimentStep("5m", nil, judge("judge", false)), setWeight(40))
			startExperiment(w, ro)
			if !w.st.Aborted {
				t.Fatalf("not aborted: %s", w.st.Message)
			}
			delete(w.verdicts, purposeExperiment)
			w.command(CommandRetry)
			w.settle()
			w.expectStep(1)
			retried := experimentName + "-1"
			w.runTask(retried + "-judge")
			pods := w.experimentPods()
			for _, rv := range w.lastScale().Revisions {
				if rv.Experiment != nil && rv.Experiment.Name == retried && rv.Replicas != pods[rv.Experiment.Template].Replicas {
					t.Fatalf("entry %+v", rv)
				}
			}
			if ex := w.snap().Experiment; ex == nil || ex.Name != retried || ex.Phase != experimentRunning {
				t.Fatalf("snapshot experiment %+v", ex)
			}
			// The failed one's pods go after its delay; the new one's stay.
			w.advance(30 * time.Second)
			for _, rv := range w.lastScale().Revisions {
				if rv.Experiment == nil {
					continue
				}
				if want := map[bool]int32{true: 0, false: map[string]int32{"baseline": 2, "canary": 1}[rv.Experiment.Template]}[rv.Experiment.Name == experimentName]; rv.Replicas != want {
					t.Fatalf("entry %s/%s asked for %d, want %d", rv.Experiment.Name, rv.Experiment.Template, rv.Replicas, want)
				}
			}
			if len(w.st.Experiments) != 1 || w.st.Experiments[0].Name != retried {
				t.Fatalf("experiments %+v", w.st.Experiments)
			}
		}},
		{"an inconclusive analysis pauses the update until promoted", func(t *testing.T, w *world) {
			w.verdicts[purposeExperiment] = string(phaseInconclusive)
			ro := istioCanary(4, setWeight(20), experimentStep("5m", nil, judge("judge", false)), setWeight(40), pauseIndefinitely())
			startExperiment(w, ro)
			w.expectPhase(events.PhasePaused)
			if !w.st.hasCondition(PauseInconclusiveExperiment) || w.st.Aborted {
				t.Fatalf("pause conditions %+v", w.st.PauseConditions)
			}
			w.advance(10 * time.Minute)
			w.expectStep(1)
			// The ended experiment's pods go while the update is paused.
			for name, rv := range w.experimentPods() {
				if rv.Replicas != 0 {
					t.Fatalf("experiment template %s still asked for %d pods while paused", name, rv.Replicas)
				}
			}
			if ex := w.snap().Experiment; ex == nil || ex.Phase != string(phaseInconclusive) {
				t.Fatalf("snapshot experiment %+v", ex)
			}
			w.command(CommandPromote)
			w.settle()
			w.expectStep(3)
			w.expectWeight(40)
			if len(w.st.Experiments) != 0 {
				t.Fatalf("experiment kept after its step: %+v", w.st.Experiments)
			}
		}},
		{"without a duration it ends when the required analyses succeed", func(t *testing.T, w *world) {
			w.verdicts[experimentName+"-judge"] = string(phaseSuccessful)
			ro := istioCanary(4, setWeight(20), experimentStep("", nil, judge("judge", true), judge("smoke", false)), setWeight(40), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			// The required run reported Successful at once; the other run
			// is stopped with the experiment.
			w.expectStep(3)
			if !w.terminated(experimentName+"-smoke") || w.terminated(experimentName+"-judge") {
				t.Fatalf("terminate tasks %v", kinds(w.sent))
			}
			if ex := w.snap().Experiment; ex == nil || ex.Phase != string(phaseSuccessful) {
				t.Fatalf("snapshot experiment %+v", ex)
			}
		}},
		{"abort during the experiment stops its runs, weights and pods", func(t *testing.T, w *world) {
			ro := istioCanary(4, setWeight(20), experimentStep("5m", ptr(int32(10)), judge("judge", false)), setWeight(40))
			startExperiment(w, ro)
			w.command(CommandAbort)
			w.settle()
			if !w.terminated(experimentName + "-judge") {
				t.Fatalf("the experiment's run was not terminated")
			}
			if rt := w.lastRoute(); len(rt.Experiments) != 0 {
				t.Fatalf("route after the abort %+v", rt)
			}
			if ex := w.snap().Experiment; ex == nil || ex.Phase != experimentTerminated || !strings.Contains(ex.Message, "aborted") {
				t.Fatalf("snapshot experiment %+v", ex)
			}
			w.advance(30 * time.Second)
			expectExperimentGone(w)
		}},
		{"promote --full during the experiment removes it, at once with scaleDownDelaySeconds 0", func(t *testing.T, w *world) {
			step := experimentStep("5m", ptr(int32(10)), judge("judge", false))
			step.Experiment.ScaleDownDelaySeconds = ptr(int32(0))
			ro := istioCanary(4, setWeight(20), step, setWeight(40))
			startExperiment(w, ro)
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			if !w.terminated(experimentName + "-judge") {
				t.Fatalf("the experiment's run was not terminated")
			}
			if rt := w.lastRoute(); len(rt.Experiments) != 0 {
				t.Fatalf("route after the full promotion %+v", rt)
			}
			expectExperimentGone(w)
			w.expectPhase(events.PhaseHealthy)
		}},
		{"promote during the experiment skips the step and ends it", func(t *testing.T, w *world) {
			ro := istioCanary(4, setWeight(20), experimentStep("5m", ptr(int32(10)), judge("judge", false)), setWeight(40), pauseIndefinitely())
			startExperiment(w, ro)
			w.command(CommandPromote)
			w.settle()
			w.expectStep(3)
			if !w.terminated(experimentName + "-judge") {
				t.Fatalf("the experiment's run was not terminated")
			}
			if rt := w.lastRoute(); len(rt.Experiments) != 0 || rt.CanaryWeight != 40 {
				t.Fatalf("route %+v", rt)
			}
			if ex := w.st.Experiments[0]; ex.Phase != experimentTerminated || ex.Message != "terminated: promoted past" {
				t.Fatalf("experiment %+v", ex)
			}
			w.advance(30 * time.Second)
			expectExperimentGone(w)
		}},
		{"deleting the rollout removes the experiment's pods with its revisions", func(t *testing.T, w *world) {
			ro := istioCanary(4, setWeight(20), experimentStep("5m", nil, judge("judge", false)), setWeight(40))
			startExperiment(w, ro)
			m := len(w.sent)
			w.command(CommandDelete)
			var removal *tasks.Scale
			for _, tk := range w.sentSince(m) {
				if tk.Scale != nil && tk.Scale.Remove {
					removal = tk.Scale
				}
			}
			if removal == nil {
				t.Fatalf("no removal sent")
			}
			listed := 0
			for _, rv := range removal.Revisions {
				if rv.Replicas != 0 {
					t.Fatalf("removal asks %s for %d pods", rv.PodHash, rv.Replicas)
				}
				if rv.Experiment != nil {
					listed++
				}
			}
			if listed != 2 {
				t.Fatalf("removal lists %d experiment templates, want 2", listed)
			}
			mark := w.mark()
			w.settle()
			w.expectContains(mark, "rollout.deleted")
		}},
		{"a new revision ends the experiment", func(t *testing.T, w *world) {
			ro := istioCanary(4, setWeight(20), experimentStep("5m", nil, judge("judge", false)), setWeight(40))
			startExperiment(w, ro)
			w.request(image(ro, "web:3"))
			w.settle()
			if !w.terminated(experimentName + "-judge") {
				t.Fatalf("the experiment's run was not terminated")
			}
			if ex := w.st.Experiments[0]; ex.Phase != experimentTerminated || !strings.Contains(ex.Message, "revision 3 replaced revision 2") {
				t.Fatalf("experiment %+v", ex)
			}
			w.advance(30 * time.Second)
			for name, rv := range w.experimentPods() {
				if rv.Experiment.Name == experimentName && rv.Replicas != 0 {
					t.Fatalf("template %s of the replaced revision still asked for %d pods", name, rv.Replicas)
				}
			}
		}},
		{"a state decoded from JSON mid-experiment carries on", func(t *testing.T, w *world) {
			ro := istioCanary(4, setWeight(20), experimentStep("5m", ptr(int32(10)), judge("judge", false)), setWeight(40), pauseIndefinitely())
			startExperiment(w, ro)
			w.advance(2 * time.Minute)
			b, err := json.Marshal(w.st)
			if err != nil {
				t.Fatal(err)
			}
			var st State
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			w.st = st
			if wake, ok := st.NextWakeup(); !ok || !wake.Equal(t0.Add(5*time.Minute)) {
				t.Fatalf("next wakeup %s %v, want the experiment's end", wake, ok)
			}
			w.advance(3 * time.Minute)
			w.expectStep(3)
			w.advance(30 * time.Second)
			expectExperimentGone(w)
		}},
		{"weights reach the route only with trafficRouting", func(t *testing.T, w *world) {
			ro := basicCanary(4, intStr(1), intStr(0), setWeight(25), experimentStep("1m", nil, judge("judge", false)), setWeight(50), pauseIndefinitely())
			tm := len(w.sent)
			startExperiment(w, ro)
			if pods := w.experimentPods(); pods["baseline"].Replicas != 2 || pods["canary"].Replicas != 1 {
				t.Fatalf("experiment pods %+v", pods)
			}
			w.advance(time.Minute)
			w.expectStep(3)
			for _, tk := range w.sentSince(tm) {
				if tk.Route != nil && len(tk.Route.Experiments) > 0 {
					t.Fatalf("route task %s of a canary without trafficRouting has experiment weights", tk.ID)
				}
			}
			// The machine does not give a weight without trafficRouting
			// even if the spec had one (validation refuses it).
			st := w.st.clone()
			ro2 := *st.Spec
			c := *ro2.Spec.Strategy.Canary
			ro2.Spec.Strategy.Canary = &c
			st.Spec = &ro2
			st.Step = 1
			st.Experiments = nil
			d := &decision{s: &st, now: w.now}
			d.startExperiment(experimentStep("1m", ptr(int32(10))).Experiment)
			if wgt := st.Experiments[0].Templates[0].Weight; wgt != 0 {
				t.Fatalf("weight %d without trafficRouting", wgt)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newWorld(t, Config{}))
		})
	}
}
