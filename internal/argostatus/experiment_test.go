package argostatus_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/pkg/events"
)

// experimentWriter writes an Experiment's status as the CRD writer does:
// each status over the one before.
type experimentWriter struct {
	t      *testing.T
	status map[string]any
	rsets  map[string]argostatus.ReplicaSet
}

func (w *experimentWriter) write(data events.StatusData, at time.Time) v1alpha1.ExperimentStatus {
	w.t.Helper()
	w.status = argostatus.ExperimentStatus(data, argostatus.Experiment{Name: "exp", Status: w.status, ReplicaSets: w.rsets}, at)
	b, err := json.Marshal(w.status)
	if err != nil {
		w.t.Fatal(err)
	}
	var st v1alpha1.ExperimentStatus
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		w.t.Fatalf("the status does not decode as Argo's ExperimentStatus: %v\n%s", err, b)
	}
	return st
}

func experimentSnap(phase string, available int32, runs ...events.RunSummary) events.StatusData {
	sum := &events.ExperimentSummary{Name: "exp", Phase: phase, Templates: []events.ExperimentTemplateSummary{
		{Name: "baseline", PodHash: "6d4f8", ReplicaSet: "exp-baseline", Replicas: 2, Available: available},
		{Name: "canary", PodHash: "77f9c", ReplicaSet: "exp-canary", Replicas: 2, Available: available, Service: "exp-canary"},
	}, Runs: []string{"exp-errors"}}
	return events.StatusData{Status: events.Snapshot{Kind: events.KindExperiment, Namespace: "shop", Name: "exp", Phase: phase, Experiment: sum, Runs: runs}}
}

// experimentCondition is Argo's conditions.GetExperimentCondition (whose
// package cannot be imported here).
func experimentCondition(st v1alpha1.ExperimentStatus, typ v1alpha1.ExperimentConditionType) *v1alpha1.ExperimentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

func templateOf(t *testing.T, st v1alpha1.ExperimentStatus, name string) v1alpha1.TemplateStatus {
	t.Helper()
	for _, ts := range st.TemplateStatuses {
		if ts.Name == name {
			return ts
		}
	}
	t.Fatalf("no template status %q in %+v", name, st.TemplateStatuses)
	return v1alpha1.TemplateStatus{}
}

// An experiment's stages, as Argo's types read them.
func TestExperimentStages(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	w := &experimentWriter{t: t, rsets: map[string]argostatus.ReplicaSet{}}

	st := w.write(experimentSnap(events.ExperimentPhasePending, 0), t0)
	if st.Phase != v1alpha1.AnalysisPhasePending || len(st.TemplateStatuses) != 2 || st.AvailableAt != nil {
		t.Fatalf("pending: %+v", st)
	}
	if ts := templateOf(t, st, "canary"); ts.Status != v1alpha1.TemplateStatusProgressing || ts.ServiceName != "exp-canary" || ts.PodTemplateHash != "77f9c" {
		t.Errorf("pending canary template: %+v", ts)
	}
	if len(st.AnalysisRuns) != 1 || st.AnalysisRuns[0].Name != "errors" || st.AnalysisRuns[0].AnalysisRun != "exp-errors" || st.AnalysisRuns[0].Phase != v1alpha1.AnalysisPhasePending {
		t.Errorf("analysis runs: %+v", st.AnalysisRuns)
	}
	if c := experimentCondition(st, v1alpha1.ExperimentProgressing); c == nil || c.Reason != "ReplicaSetUpdated" || c.Status != "True" {
		t.Errorf("Progressing while pods come: %+v", c)
	}

	t1 := t0.Add(time.Minute)
	w.rsets = map[string]argostatus.ReplicaSet{"baseline": {Replicas: 2, Ready: 2, Available: 2}, "canary": {Replicas: 2, Ready: 2, Available: 2}}
	running := experimentSnap(events.ExperimentPhaseRunning, 2, events.RunSummary{Name: "exp-errors", Purpose: "experiment", Phase: "Running"})
	running.Status.Experiment.AvailableAt = t1
	st = w.write(running, t1)
	if st.Phase != v1alpha1.AnalysisPhaseRunning || st.AvailableAt == nil || !st.AvailableAt.Time.Equal(t1) {
		t.Fatalf("running: %+v", st)
	}
	if ts := templateOf(t, st, "baseline"); ts.Status != v1alpha1.TemplateStatusRunning || ts.AvailableReplicas != 2 || ts.ReadyReplicas != 2 || ts.UpdatedReplicas != 2 || !ts.LastTransitionTime.Time.Equal(t1) {
		t.Errorf("running baseline template: %+v", ts)
	}
	if st.AnalysisRuns[0].Phase != v1alpha1.AnalysisPhaseRunning {
		t.Errorf("run: %+v", st.AnalysisRuns[0])
	}
	// Running and the counts unchanged since: Argo's running condition.
	st = w.write(running, t1.Add(time.Second))
	if c := experimentCondition(st, v1alpha1.ExperimentProgressing); c == nil || c.Reason != "NewReplicaSetAvailable" {
		t.Errorf("Progressing while running: %+v", c)
	}
	if ts := templateOf(t, st, "baseline"); !ts.LastTransitionTime.Time.Equal(t1) {
		t.Errorf("an unchanged template's lastTransitionTime moved: %v", ts.LastTransitionTime)
	}

	t2 := t1.Add(time.Minute)
	done := experimentSnap(events.ExperimentPhaseSuccessful, 2, events.RunSummary{Name: "exp-errors", Purpose: "experiment", Phase: "Successful"})
	done.Status.Experiment.AvailableAt = t1
	st = w.write(done, t2)
	if st.Phase != v1alpha1.AnalysisPhaseSuccessful || templateOf(t, st, "canary").Status != v1alpha1.TemplateStatusSuccessful || st.AnalysisRuns[0].Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Fatalf("successful: %+v", st)
	}
	if c := experimentCondition(st, v1alpha1.ExperimentProgressing); c == nil || c.Status != "False" || c.Reason != "ExperimentCompleted" {
		t.Errorf("Progressing once completed: %+v", c)
	}
	// Scaled down, and the run dropped from the snapshot: the counts go
	// to 0, the verdicts stay.
	w.rsets = map[string]argostatus.ReplicaSet{}
	gone := experimentSnap(events.ExperimentPhaseSuccessful, 0)
	gone.Status.Experiment.AvailableAt = t1
	st = w.write(gone, t2.Add(time.Minute))
	if ts := templateOf(t, st, "canary"); ts.Status != v1alpha1.TemplateStatusSuccessful || ts.Replicas != 0 || ts.AvailableReplicas != 0 {
		t.Errorf("scaled down: %+v", ts)
	}
	if st.AnalysisRuns[0].Phase != v1alpha1.AnalysisPhaseSuccessful {
		t.Errorf("the run's verdict after it left the snapshot: %+v", st.AnalysisRuns[0])
	}
}

// Pods not available within the deadline fail their template, and that
// stays; a terminated experiment's templates end Successful, as Argo
// ends them; a rejected spec shows as InvalidSpec until the errors go.
func TestExperimentOutcomes(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	w := &experimentWriter{t: t}
	w.write(experimentSnap(events.ExperimentPhasePending, 1), t0)
	failed := experimentSnap(events.ExperimentPhaseFailed, 1)
	failed.Status.Message = "pods not available within progressDeadlineSeconds (600)"
	st := w.write(failed, t0.Add(time.Minute))
	if ts := templateOf(t, st, "baseline"); ts.Status != v1alpha1.TemplateStatusFailed || ts.Message != failed.Status.Message {
		t.Errorf("a template past its deadline: %+v", ts)
	}
	st = w.write(experimentSnap(events.ExperimentPhaseFailed, 0), t0.Add(2*time.Minute))
	if ts := templateOf(t, st, "baseline"); ts.Status != v1alpha1.TemplateStatusFailed {
		t.Errorf("a failed template changed: %+v", ts)
	}

	w = &experimentWriter{t: t}
	st = w.write(experimentSnap(events.ExperimentPhaseTerminated, 2), t0)
	if st.Phase != v1alpha1.AnalysisPhaseSuccessful || !strings.HasPrefix(st.Message, "Experiment terminated: ") || templateOf(t, st, "baseline").Status != v1alpha1.TemplateStatusSuccessful {
		t.Errorf("terminated: phase %s message %q, want Successful as Argo ends a terminated experiment, with the reason", st.Phase, st.Message)
	}

	rejected := experimentSnap(events.ExperimentPhaseRunning, 2)
	rejected.Errors = []string{"spec: an experiment's spec cannot change; delete it and request it again"}
	st = w.write(rejected, t0)
	c := experimentCondition(st, v1alpha1.InvalidExperimentSpec)
	if c == nil || c.Status != "True" || c.Reason != "InvalidSpec" || c.Message != `The Experiment "exp" is invalid: `+rejected.Errors[0] {
		t.Errorf("InvalidSpec: %+v", c)
	}
	st = w.write(experimentSnap(events.ExperimentPhaseRunning, 2), t0)
	if c := experimentCondition(st, v1alpha1.InvalidExperimentSpec); c != nil {
		t.Errorf("InvalidSpec after the errors went: %+v", c)
	}
}
