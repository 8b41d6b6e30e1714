package follow

import (
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
)

func TestExperimentObserve(t *testing.T) {
	type step struct {
		typ   string
		cause string // causationid
		d     events.StatusData
		want  Verdict
	}
	exp := func(phase, message string) events.StatusData {
		return events.StatusData{Status: events.Snapshot{Kind: events.KindExperiment, Namespace: "shop", Name: "exp", Phase: phase, Message: message}}
	}
	rejected := exp("", "")
	rejected.Errors = []string{"spec.templates: Required value", "spec.duration: Invalid value: \"soon\""}
	other := exp(events.ExperimentPhaseSuccessful, "")
	other.Status.Name = "other"
	terminated := exp(events.ExperimentPhaseTerminated, "terminated by user:alice")
	deleted := exp(events.ExperimentPhaseTerminated, "")
	deleted.Reason = "delete command"
	tests := []struct {
		name    string
		steps   []step
		failure string
	}{
		{"successful", []step{
			{events.TypeExperimentCompleted, "", exp(events.ExperimentPhaseFailed, ""), Ignored}, // an earlier experiment's
			{events.TypeExperimentAccepted, "someone-else", exp(events.ExperimentPhasePending, ""), Ignored},
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhasePending, ""), Accepted},
			{events.TypeExperimentRunning, "", exp(events.ExperimentPhaseRunning, ""), Progress},
			{events.TypeAnalysisCompleted, "", exp(events.ExperimentPhaseRunning, ""), Progress},
			{events.TypeExperimentCompleted, "", other, Ignored},
			{events.TypeExperimentCompleted, "", exp(events.ExperimentPhaseSuccessful, ""), Completed},
			{events.TypeExperimentDeleted, "", exp(events.ExperimentPhaseSuccessful, ""), Ignored}, // after the outcome
		}, ""},
		{"failed", []step{
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhasePending, ""), Accepted},
			{events.TypeExperimentCompleted, "", exp(events.ExperimentPhaseFailed, "analysis smoke Failed"), Failed},
		}, "Failed: analysis smoke Failed"},
		{"error", []step{
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhasePending, ""), Accepted},
			{events.TypeExperimentCompleted, "", exp(events.ExperimentPhaseError, ""), Failed},
		}, "Error"},
		{"inconclusive", []step{
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhaseRunning, ""), Accepted},
			{events.TypeExperimentCompleted, "", exp(events.ExperimentPhaseInconclusive, "no data"), Failed},
		}, "Inconclusive: no data"},
		{"terminated", []step{
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhaseRunning, ""), Accepted},
			{events.TypeExperimentTerminated, "cmd", terminated, Failed},
		}, "Terminated: terminated by user:alice"},
		{"deleted", []step{
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhaseRunning, ""), Accepted},
			{events.TypeExperimentDeleted, "cmd", deleted, Failed},
		}, "deleted before its verdict: delete command"},
		{"rejected", []step{
			{events.TypeExperimentRejected, "other", rejected, Ignored},
			{events.TypeExperimentRejected, "req", rejected, Failed},
		}, `rejected: spec.templates: Required value; spec.duration: Invalid value: "soon"`},
		{"repeated request of an ended experiment", []step{
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhaseSuccessful, ""), Completed},
		}, ""},
		{"repeated request of a failed experiment", []step{
			{events.TypeExperimentAccepted, "req", exp(events.ExperimentPhaseFailed, "pods not available within 600s"), Failed},
		}, "Failed: pods not available within 600s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := &Experiment{Ref: events.Ref{Namespace: "shop", Name: "exp"}, RequestID: "req"}
			for i, s := range tt.steps {
				ev, d := status(t, s.typ, "", s.d)
				if s.cause != "" {
					ev.SetExtension(events.ExtCausationID, s.cause)
				}
				if got := x.Observe(ev, d); got != s.want {
					t.Fatalf("event %d (%s, phase %s): %s, want %s", i, s.typ, d.Status.Phase, got, s.want)
				}
			}
			if !x.Done || x.Failure != tt.failure {
				t.Fatalf("done %v, failure %q; want done, failure %q", x.Done, x.Failure, tt.failure)
			}
			if x.Last == nil || x.Last.Kind != events.KindExperiment {
				if tt.name != "rejected" {
					t.Errorf("last status %+v, want the experiment's", x.Last)
				}
			}
		})
	}
}
