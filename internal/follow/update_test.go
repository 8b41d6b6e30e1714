package follow

import (
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
)

func status(t *testing.T, typ, id string, d events.StatusData) (events.Event, events.StatusData) {
	t.Helper()
	if d.Status.Namespace == "" {
		d.Status.Namespace, d.Status.Name = "shop", "web"
	}
	ev, err := events.New("/test", typ, d.Status.Namespace+"/"+d.Status.Name, d)
	if err != nil {
		t.Fatal(err)
	}
	if id != "" {
		ev.SetID(id)
	}
	return ev, d
}

func snap(phase string, rev, stable int64) events.StatusData {
	return events.StatusData{Status: events.Snapshot{Phase: phase, Revision: rev, StableRevision: stable}}
}

func TestUpdateObserve(t *testing.T) {
	type step struct {
		typ, id string
		d       events.StatusData
		want    Verdict
	}
	aborted := snap(events.PhaseDegraded, 2, 1)
	aborted.Reason = "analysis failed"
	rejected := snap(events.PhaseDegraded, 0, 0)
	rejected.Errors = []string{"spec.replicas: Invalid value: -1", "spec.selector: Required value"}
	other := snap(events.PhaseProgressing, 2, 1)
	other.Status.Namespace, other.Status.Name = "shop", "api"
	tests := []struct {
		name    string
		steps   []step
		failure string
	}{
		{"completes", []step{
			{events.TypeRolloutStepCompleted, "", snap(events.PhaseHealthy, 1, 1), Ignored}, // before the request was taken
			{events.TypeRolloutAccepted, "", snap(events.PhaseProgressing, 2, 1), Accepted},
			{events.TypeRolloutStepStarted, "", snap(events.PhaseProgressing, 2, 1), Progress},
			{events.TypeRolloutStepStarted, "", other, Ignored},
			{events.TypeRolloutCompleted, "", snap(events.PhaseHealthy, 2, 2), Completed},
			{events.TypeRolloutStepStarted, "", snap(events.PhaseProgressing, 3, 2), Ignored}, // after the outcome
		}, ""},
		{"nothing to roll out", []step{
			{events.TypeRolloutAccepted, "", snap(events.PhaseHealthy, 1, 1), Completed},
		}, ""},
		{"rejected", []step{
			{events.TypeRolloutRejected, "rejected/other", rejected, Ignored},
			{events.TypeRolloutRejected, "rejected/req", rejected, Failed},
		}, "rejected: spec.replicas: Invalid value: -1; spec.selector: Required value"},
		{"aborted", []step{
			{events.TypeRolloutAccepted, "", snap(events.PhaseProgressing, 2, 1), Accepted},
			{events.TypeRolloutAborted, "", aborted, Failed},
		}, "aborted: analysis failed"},
		{"degraded", []step{
			{events.TypeRolloutAccepted, "", snap(events.PhaseProgressing, 2, 1), Accepted},
			{events.TypeRolloutStepStarted, "", func() events.StatusData {
				d := snap(events.PhaseDegraded, 2, 1)
				d.Status.Message = "progress deadline exceeded"
				return d
			}(), Failed},
		}, "degraded: progress deadline exceeded"},
		{"superseded", []step{
			{events.TypeRolloutAccepted, "", snap(events.PhaseProgressing, 2, 1), Accepted},
			{events.TypeRolloutAccepted, "", snap(events.PhaseProgressing, 3, 1), Failed},
		}, "superseded by revision 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &Update{Ref: events.Ref{Namespace: "shop", Name: "web"}, RequestID: "req"}
			for i, s := range tt.steps {
				ev, d := status(t, s.typ, s.id, s.d)
				if got := u.Observe(ev, d); got != s.want {
					t.Fatalf("event %d (%s revision %d): %s, want %s", i, s.typ, d.Status.Revision, got, s.want)
				}
			}
			if !u.Done || u.Failure != tt.failure {
				t.Fatalf("done %v, failure %q; want done, failure %q", u.Done, u.Failure, tt.failure)
			}
		})
	}
}
