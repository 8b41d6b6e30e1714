package machine

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// standaloneExperiment is an Experiment "exp" running a baseline (two
// pods of web:1) and a canary (one pod of web:2, with a service) for
// duration, with analyses. Their arguments that take a valueFrom are left
// out: an Experiment has no rollout to take one from, and validation
// refuses them (Argo drops them).
func standaloneExperiment(duration string, analyses ...spec.RolloutExperimentStepAnalysisTemplateRef) *spec.Experiment {
	for i := range analyses {
		analyses[i].Args = slices.DeleteFunc(slices.Clone(analyses[i].Args), func(a spec.AnalysisRunArgument) bool { return a.ValueFrom != nil })
	}
	tpl := func(name string, image string, replicas int32) spec.TemplateSpec {
		pt := podTemplate(image)
		pt.Labels["variant"] = name
		return spec.TemplateSpec{
			Name: name, Replicas: &replicas, Template: pt,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "variant": name}},
		}
	}
	canary := tpl("canary", "web:2", 1)
	canary.Service = &spec.TemplateService{}
	return &spec.Experiment{
		TypeMeta:   metav1.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindExperiment},
		ObjectMeta: metav1.ObjectMeta{Name: "exp", Namespace: "default", Labels: map[string]string{"team": "shop"}},
		Spec: spec.ExperimentSpec{
			Templates: []spec.TemplateSpec{tpl("baseline", "web:1", 2), canary},
			Duration:  spec.DurationString(duration),
			Analyses:  analyses,
		},
	}
}

func (w *world) requestExperiment(e *spec.Experiment) {
	w.t.Helper()
	w.apply(Observation{Experiment: e, Cause: Cause{ID: "req-" + e.Name, Type: events.TypeExperimentRequested}})
}

func (w *world) experimentCommand(kind, id string) {
	w.t.Helper()
	typ := events.TypeExperimentTerminate
	if kind == CommandDelete {
		typ = events.TypeExperimentDelete
	}
	w.apply(Observation{Command: &Command{Kind: kind, Experiment: true}, Cause: Cause{ID: id, Type: typ, Actor: "user:alice"}})
}

func TestStandaloneExperimentRunsForItsDuration(t *testing.T) {
	w := newWorld(t, Config{})
	mark := w.mark()
	w.requestExperiment(standaloneExperiment("10m", judge("judge", false)))
	w.settle()
	w.expectEvents(mark, "experiment.accepted", "experiment.running")
	w.expectPhase(events.ExperimentPhaseRunning)
	// The running event lists the runs it started.
	if runs := w.lastEvent("experiment.running").Data.Status.Runs; len(runs) != 1 || runs[0].Name != "exp-judge" {
		t.Errorf("the running event lists runs %+v, want exp-judge", runs)
	}

	// The scale task runs each template from its own pod template, as an
	// experiment's pods owned by the Experiment.
	sc := w.lastScale()
	scaleTask := w.sent[0]
	if scaleTask.OwnerKind != spec.KindExperiment || scaleTask.Revision != 1 || scaleTask.Ref.Name != "exp" {
		t.Fatalf("scale task %s: owner %q revision %d", scaleTask.ID, scaleTask.OwnerKind, scaleTask.Revision)
	}
	if sc.Workload.Labels["team"] != "shop" {
		t.Errorf("workload labels %v, want the Experiment's", sc.Workload.Labels)
	}
	pods := w.experimentPods()
	base, canary := pods["baseline"], pods["canary"]
	if base.Replicas != 2 || canary.Replicas != 1 || base.Role != spec.RoleExperiment {
		t.Fatalf("experiment pods %+v", pods)
	}
	if base.Template.Spec.Containers[0].Image != "web:1" || canary.Template.Spec.Containers[0].Image != "web:2" {
		t.Errorf("templates run %s and %s", base.Template.Spec.Containers[0].Image, canary.Template.Spec.Containers[0].Image)
	}
	if canary.PodHash != PodTemplateHash(canary.Template) || base.Experiment.Selector.MatchLabels["variant"] != "baseline" {
		t.Errorf("canary hash %s, baseline selector %v", canary.PodHash, base.Experiment.Selector)
	}
	if base.Experiment.Service != "" || canary.Experiment.Service != "exp-canary" {
		t.Errorf("services %q and %q, want none and exp-canary", base.Experiment.Service, canary.Experiment.Service)
	}

	// Its analysis runs once the pods are available, with the variables.
	run := w.runTask("exp-judge")
	if run.OwnerKind != spec.KindExperiment || run.Analysis.Purpose != purposeExperiment {
		t.Fatalf("run task owner %q purpose %q", run.OwnerKind, run.Analysis.Purpose)
	}
	args := map[string]string{}
	for _, a := range run.Analysis.Args {
		args[a.Name] = a.Value
	}
	if args["baseline-hash"] != base.PodHash || args["canary-rs"] != "exp-canary" || args["since"] != t0.Format(time.RFC3339) {
		t.Errorf("run args %v", args)
	}

	snap := w.snap()
	if snap.Kind != events.KindExperiment || snap.Experiment == nil || snap.Experiment.Name != "exp" || len(snap.Experiment.Templates) != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
	if snap.Replicas.Available != 3 || len(snap.Runs) != 1 || snap.Runs[0].Step != nil {
		t.Errorf("snapshot replicas %+v, runs %+v", snap.Replicas, snap.Runs)
	}

	mark = w.mark()
	w.advance(10 * time.Minute)
	w.expectContains(mark, "experiment.completed", "analysis.completed")
	w.expectPhase(events.ExperimentPhaseSuccessful)
	if !w.terminated("exp-judge") {
		t.Errorf("the run was not terminated when the experiment ended")
	}
	if sum := w.lastEvent("analysis.completed").Data.Analysis; sum.Phase != events.AnalysisTerminated {
		t.Errorf("the run ended %s, want %s", sum.Phase, events.AnalysisTerminated)
	}

	// Its pods go after Argo's default scaleDownDelaySeconds, 30.
	w.advance(29 * time.Second)
	if n := w.experimentPods()["baseline"].Replicas; n != 2 {
		t.Fatalf("baseline at %d pods before the scale-down delay passed", n)
	}
	w.advance(time.Second)
	for name, rv := range w.experimentPods() {
		if rv.Replicas != 0 {
			t.Fatalf("template %s still at %d pods", name, rv.Replicas)
		}
	}
	w.expectPhase(events.ExperimentPhaseSuccessful)
	if _, ok := w.st.NextWakeup(); ok {
		t.Errorf("an ended experiment with no pods still has a wakeup")
	}
}

func TestStandaloneExperimentVerdicts(t *testing.T) {
	for _, c := range []struct {
		name, verdict, phase string
		reason               string
	}{
		{"required analysis succeeds", "Successful", events.ExperimentPhaseSuccessful, "every analysis required for completion succeeded"},
		{"analysis fails", "Failed", events.ExperimentPhaseFailed, "analysis judge (run exp-judge) failed"},
		{"analysis errors", "Error", events.ExperimentPhaseError, "analysis judge (run exp-judge) error: prometheus unreachable"},
		{"analysis inconclusive", "Inconclusive", events.ExperimentPhaseInconclusive, "analysis judge (run exp-judge) inconclusive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, Config{})
			w.verdicts["exp-judge"] = c.verdict
			w.requestExperiment(standaloneExperiment("", judge("judge", true)))
			w.settle()
			w.expectPhase(c.phase)
			ev := w.lastEvent("experiment.completed")
			if !strings.Contains(ev.Data.Reason, c.reason) || ev.Data.Status.Phase != c.phase {
				t.Fatalf("completed: phase %s reason %q, want %s and %q", ev.Data.Status.Phase, ev.Data.Reason, c.phase, c.reason)
			}
			// The ended experiment still lists its run and verdict.
			w.advance(time.Hour)
			if runs := w.snap().Runs; len(runs) != 1 || runs[0].Name != "exp-judge" || runs[0].Phase != c.verdict {
				t.Errorf("runs after the end: %+v", runs)
			}
			if ex := w.snap().Experiment; ex == nil || len(ex.Runs) != 1 {
				t.Errorf("experiment summary after the end: %+v", ex)
			}
		})
	}
}

func TestStandaloneExperimentWithoutDurationRunsUntilTerminated(t *testing.T) {
	w := newWorld(t, Config{})
	w.requestExperiment(standaloneExperiment("", judge("judge", false)))
	w.settle()
	w.advance(24 * time.Hour)
	w.expectPhase(events.ExperimentPhaseRunning)

	mark := w.mark()
	w.experimentCommand(CommandTerminate, "stop-1")
	w.settle()
	w.expectContains(mark, "experiment.terminated")
	ev := w.lastEvent("experiment.terminated")
	if ev.Cause.ID != "stop-1" || ev.Cause.Actor != "user:alice" || !strings.Contains(ev.Data.Reason, "user:alice") {
		t.Errorf("terminated event cause %+v reason %q", ev.Cause, ev.Data.Reason)
	}
	w.expectPhase(events.ExperimentPhaseTerminated)

	mark = w.mark()
	w.experimentCommand(CommandTerminate, "stop-2")
	w.expectEvents(mark, "experiment.command.refused")
	if cmd := w.lastEvent("experiment.command.refused").Data.Command; cmd.Code != events.RefusedNotApplicable || cmd.ID != "stop-2" {
		t.Errorf("second terminate answered %+v", cmd)
	}
}

func TestStandaloneExperimentRequests(t *testing.T) {
	w := newWorld(t, Config{})
	w.requestExperiment(standaloneExperiment("1h"))
	w.settle()
	sent := len(w.sent)

	// The same spec again is accepted and changes nothing.
	mark := w.mark()
	w.requestExperiment(standaloneExperiment("1h"))
	w.settle()
	w.expectEvents(mark, "experiment.accepted")
	if len(w.sent) != sent {
		t.Errorf("a repeated request sent %d tasks", len(w.sent)-sent)
	}

	// Another spec is rejected: the experiment carries on.
	mark = w.mark()
	w.requestExperiment(standaloneExperiment("2h"))
	w.expectEvents(mark, "experiment.rejected")
	if errs := w.lastEvent("experiment.rejected").Data.Errors; len(errs) != 1 || !strings.Contains(errs[0], "delete it") {
		t.Errorf("rejection errors %v", errs)
	}
	w.expectPhase(events.ExperimentPhaseRunning)

	// spec.terminate set ends it.
	terminate := standaloneExperiment("1h")
	terminate.Spec.Terminate = true
	mark = w.mark()
	w.requestExperiment(terminate)
	w.settle()
	w.expectEvents(mark, "experiment.accepted", "experiment.terminated")
	w.expectPhase(events.ExperimentPhaseTerminated)

	// An invalid one is rejected with field paths.
	v := newWorld(t, Config{})
	bad := standaloneExperiment("soon")
	v.requestExperiment(bad)
	if errs := v.lastEvent("experiment.rejected").Data.Errors; len(errs) == 0 || !strings.HasPrefix(errs[0], "spec.duration") {
		t.Errorf("invalid experiment rejected with %v", errs)
	}
}

func TestStandaloneExperimentAndRolloutShareNoName(t *testing.T) {
	// An Experiment at a rollout's name is rejected, and an experiment's
	// command there refused.
	w := newWorld(t, Config{})
	ro := basicCanary(2, intStr(1), intStr(0), setWeight(50))
	ro.Name, ro.Namespace = "exp", "default"
	w.request(ro)
	w.settle()
	mark := w.mark()
	w.requestExperiment(standaloneExperiment("1h"))
	w.experimentCommand(CommandTerminate, "t-1")
	w.expectEvents(mark, "experiment.rejected", "experiment.command.refused")
	if errs := w.lastEvent("experiment.rejected").Data.Errors; len(errs) != 1 || !strings.Contains(errs[0], "is a Rollout") {
		t.Errorf("rejection %v", errs)
	}
	if cmd := w.lastEvent("experiment.command.refused").Data.Command; cmd.Code != events.RefusedNotFound {
		t.Errorf("terminate at a rollout answered %+v", cmd)
	}
	w.expectPhase(events.PhaseHealthy)

	// A Rollout at an experiment's name is rejected, and a rollout's
	// command there refused.
	x := newWorld(t, Config{})
	x.requestExperiment(standaloneExperiment("1h"))
	x.settle()
	mark = x.mark()
	x.request(ro)
	x.apply(Observation{Command: &Command{Kind: CommandPromote}, Cause: Cause{ID: "p-1", Type: events.TypeRolloutPromote}})
	x.expectEvents(mark, "rollout.rejected", "rollout.command.refused")
	if cmd := x.lastEvent("rollout.command.refused").Data.Command; cmd.Code != events.RefusedNotFound || !strings.Contains(cmd.Reason, "is an Experiment") {
		t.Errorf("promote at an experiment answered %+v", cmd)
	}
	x.expectPhase(events.ExperimentPhaseRunning)
}

func TestStandaloneExperimentDeleted(t *testing.T) {
	w := newWorld(t, Config{})
	w.requestExperiment(standaloneExperiment("1h", judge("judge", false)))
	w.settle()
	mark := w.mark()
	w.experimentCommand(CommandDelete, "del-1")
	w.settle()
	w.expectContains(mark, "experiment.deleted")
	ev := w.lastEvent("experiment.deleted")
	if ev.Cause.ID != "del-1" || ev.Data.Status.Kind != events.KindExperiment {
		t.Errorf("deleted event cause %+v snapshot kind %q", ev.Cause, ev.Data.Status.Kind)
	}
	sc := w.lastScale()
	if !sc.Remove {
		t.Fatalf("the last scale task does not remove the experiment's pods: %+v", sc)
	}
	if !w.terminated("exp-judge") {
		t.Errorf("the run was not terminated")
	}
	if w.st.isExperiment() || w.st.Revision != 0 {
		t.Fatalf("state not forgotten: %+v", w.st)
	}

	// It is gone: its commands are refused, and it can be requested anew.
	mark = w.mark()
	w.experimentCommand(CommandTerminate, "t-1")
	w.expectEvents(mark, "experiment.command.refused")
	w.requestExperiment(standaloneExperiment("2h"))
	w.settle()
	w.expectPhase(events.ExperimentPhaseRunning)
}

func TestStandaloneExperimentPastItsProgressDeadline(t *testing.T) {
	w := newWorld(t, Config{})
	e := standaloneExperiment("1h")
	w.broken[PodTemplateHash(e.Spec.Templates[1].Template)] = true
	w.requestExperiment(e)
	w.settle()
	w.expectPhase(events.ExperimentPhasePending)
	w.advance(time.Duration(spec.DefaultExperimentProgressDeadlineSeconds) * time.Second)
	w.expectPhase(events.ExperimentPhaseFailed)
	if msg := w.st.Message; !strings.Contains(msg, "ProgressDeadlineExceeded") || !strings.Contains(msg, "exp-canary") {
		t.Errorf("message %q", msg)
	}
}
