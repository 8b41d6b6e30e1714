package machine

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

func TestFieldValue(t *testing.T) {
	ro := nginxCanary(4, setWeight(25))
	ro.Labels = map[string]string{"app.kubernetes.io/name": "web"}
	var doc any
	b, _ := json.Marshal(ro)
	_ = json.Unmarshal(b, &doc)
	tests := []struct {
		path   string
		want   string
		wantOK bool
	}{
		{"metadata.name", "web", true},
		{"metadata.namespace", "shop", true},
		{"metadata.labels['app.kubernetes.io/name']", "web", true},
		{`metadata.labels["app.kubernetes.io/name"]`, "web", true},
		{"spec.replicas", "4", true},
		{"spec.strategy.canary.steps[0].setWeight", "25", true},
		{"spec.template.spec.containers[0].image", "web:1", true},
		{"spec.selector.matchLabels", `{"app":"web"}`, true},
		{"metadata.labels['missing']", "", false},
		{"spec.strategy.canary.steps[7]", "", false},
		{"metadata.labels['unterminated", "", false},
		{"metadata.name.deeper", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := fieldValue(doc, tt.path)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("got %q %v, want %q %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAnalysis(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"arguments are resolved from the rollout", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"))
			a := ro.Spec.Strategy.Canary.Steps[1].Analysis
			a.Args = append(a.Args,
				spec.AnalysisRunArgument{Name: "stable-hash", ValueFrom: &spec.ArgumentValueFrom{PodTemplateHashValue: ptr(spec.Stable)}},
				spec.AnalysisRunArgument{Name: "image", ValueFrom: &spec.ArgumentValueFrom{FieldRef: &spec.FieldRef{FieldPath: "spec.template.spec.containers[0].image"}}},
				spec.AnalysisRunArgument{Name: "nothing", ValueFrom: &spec.ArgumentValueFrom{FieldRef: &spec.FieldRef{FieldPath: "metadata.labels['none']"}}})
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			run := w.running["web-"+h2+"-2-1"]
			got := map[string]string{}
			for _, arg := range run.Analysis.Args {
				got[arg.Name] = arg.Value
				if arg.Name == "nothing" && arg.ValueFrom == nil {
					t.Fatalf("an unresolved argument lost its valueFrom")
				}
			}
			if got["canary-hash"] != h2 || got["stable-hash"] != h1 || got["image"] != "web:2" || got["service"] != "web" {
				t.Fatalf("args %v", got)
			}
			if run.Analysis.Purpose != purposeStep || run.Analysis.Spec.Templates[0].TemplateName != "smoke" {
				t.Fatalf("analysis %+v", run.Analysis)
			}
		}},
		{"an analysis task names its templates; the analyzer looks them up", func(t *testing.T, w *world) {
			// Templates reach the analyzer as applied events, never
			// through the orchestrator: the task carries their names.
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"))
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			run := w.running["web-"+h2+"-2-1"]
			if refs := run.Analysis.Spec.Templates; len(refs) != 1 || refs[0].TemplateName != "smoke" {
				t.Fatalf("templates %v", refs)
			}
		}},
		{"every measurement is published with the summary so far", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"))
			start(w, ro)
			w.verdicts[purposeStep] = string(phaseSuccessful)
			w.request(image(ro, "web:2"))
			w.settle()
			ev := w.lastEvent("analysis.measured")
			if m := ev.Data.Measurement; m == nil || m.Metric != "error-rate" || m.Value != "0.01" {
				t.Fatalf("measurement %+v", ev.Data.Measurement)
			}
			if a := ev.Data.Analysis; a == nil || a.Phase != "Running" || a.Successful != 1 || ev.Data.Status.Analysis.Name != a.Name {
				t.Fatalf("summary %+v", ev.Data.Analysis)
			}
			done := w.lastEvent("analysis.completed")
			if a := done.Data.Analysis; a.Phase != "Successful" || done.Data.Status.Analysis.Phase != "Successful" {
				t.Fatalf("completed %+v", a)
			}
		}},
		{"an analyzer that fails to run the analysis is retried, then aborts", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"))
			start(w, ro)
			w.failNext[tasks.ServiceAnalyzer] = 3
			w.request(image(ro, "web:2"))
			w.settle()
			want := "step analysis run web-" + h2 + "-2-1 error: analyzer worker: quota exceeded (analyzer task shop/web/r2/analysis-step-1/1, 3 attempts)"
			if r := w.lastEvent("rollout.aborted").Data.Reason; r != want {
				t.Fatalf("reason %q\nwant   %q", r, want)
			}
		}},
		{"a run the analyzer could not start once still runs", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"))
			start(w, ro)
			w.failNext[tasks.ServiceAnalyzer] = 1
			w.verdicts[purposeStep] = string(phaseSuccessful)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPhase(events.PhaseHealthy)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newWorld(t, Config{})) })
	}
}

func TestScaleDown(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"scaleDownDelayRevisionLimit scales down the oldest waiting revisions at once", func(t *testing.T, w *world) {
			ro := blueGreen(2, spec.BlueGreenStrategy{ScaleDownDelaySeconds: ptr(int32(60)), ScaleDownDelayRevisionLimit: ptr(int32(1))})
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPods(map[int64]int32{1: 2, 2: 2})
			w.request(image(ro, "web:3"))
			w.settle()
			w.expectPods(map[int64]int32{2: 2, 3: 2})
			w.advance(time.Minute)
			w.expectPods(map[int64]int32{3: 2})
		}},
		{"basic canary scales the former stable down with the update, not later", func(t *testing.T, w *world) {
			ro := basicCanary(2, intStr(1), intStr(0), setWeight(50))
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.expectPhase(events.PhaseHealthy)
			w.expectPods(map[int64]int32{2: 2})
			if _, ok := w.st.NextWakeup(); ok {
				t.Fatalf("a delayed scale-down is left")
			}
		}},
		{"rollback within the rollback window skips the steps", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			ro.Spec.RollbackWindow = &spec.RollbackWindowSpec{Revisions: 1}
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			m := w.mark()
			w.request(image(ro, "web:1"))
			w.settle()
			w.expectEvents(m, "rollout.accepted", "rollout.completed")
			if r := w.lastEvent("rollout.accepted").Data.Reason; !strings.Contains(r, "rollback window") {
				t.Fatalf("reason %q", r)
			}
			if s := w.snap(); s.Revision != 3 || s.StableRevision != 3 || s.PodHash != h1 {
				t.Fatalf("snapshot %+v", s)
			}
			// Outside the window, the steps run.
			w.request(image(ro, "web:3"))
			w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
			w.settle()
			m = w.mark()
			w.request(image(ro, "web:2"))
			w.expectEvents(m, "rollout.accepted", "rollout.step.started")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newWorld(t, Config{})) })
	}
}
