package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// A replica decides on the record it knows without reading the bucket
// first; a report that changes nothing there is checked against the
// bucket, where another replica may have sent the task it reports on.
func TestAReplicaWithAnOlderRecordDoesNotDropAReport(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	a, b := storeReplica(t, srv.ClientURL(), nil), storeReplica(t, srv.ClientURL(), nil)
	r := events.Ref{Namespace: "prod", Name: "web"}
	request := func(svc *Service, image string) {
		t.Helper()
		ro, _, problems := parseRollout(r, manifest(r, image, canaryWithPause))
		if len(problems) > 0 {
			t.Fatal(problems)
		}
		if err := svc.apply(ctx, update{ref: r, obs: machine.Observation{Request: ro}, commandID: image}); err != nil {
			t.Fatal(err)
		}
	}
	finishScale := func(svc *Service) {
		t.Helper()
		rec, _, err := b.st.load(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		task := rec.State.Scale
		var report []tasks.RevisionStatus
		for _, rv := range task.Scale.Revisions {
			report = append(report, tasks.RevisionStatus{Revision: rv.Revision, PodHash: rv.PodHash, Replicas: rv.Replicas, Ready: rv.Replicas, Available: rv.Replicas})
		}
		fin := &tasks.Finished{TaskID: task.ID, Attempt: task.Attempt, Kind: task.Kind, Outcome: tasks.OutcomeSucceeded, Replicas: report, At: time.Now()}
		if err := svc.apply(ctx, update{ref: r, obs: machine.Observation{Finished: fin}}); err != nil {
			t.Fatal(err)
		}
	}

	request(a, "web:1") // a knows the rollout from here on
	finishScale(b)      // b moves it on: live
	request(b, "web:2") // and sends the canary's scale task
	before, _, err := b.st.load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	finishScale(a) // a's record has never heard of that task
	after, _, err := b.st.load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Version == before.State.Version || !after.State.Scale.Done && after.State.Scale.ID == before.State.Scale.ID {
		t.Fatalf("the canary's scale report was dropped: version %d -> %d, scale task %s done %v",
			before.State.Version, after.State.Version, after.State.Scale.ID, after.State.Scale.Done)
	}
}
