package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// storeReplica is an orchestrator replica on the server at url with its
// store open and nothing consuming: the test hands it observations
// itself, as its consumers would. Its metrics go to reg when set.
func storeReplica(t *testing.T, url string, reg prometheus.Registerer) *Service {
	t.Helper()
	ctx := context.Background()
	cfg := Config{Logger: quiet()}
	if reg != nil {
		m, err := telemetry.New(reg)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Metrics = m
	}
	svc, err := New(connect(t, url), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.client.Provision(ctx, svc.cfg.Bus, svc.cfg.Bus.Bucket(BucketRollouts, "", 1)); err != nil {
		t.Fatal(err)
	}
	kv, err := svc.client.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	svc.st = newStore(kv, 16, svc.client.Conn())
	return svc
}

// scaleFinished is the succeeded report of rec's scale task, every
// revision available.
func scaleFinished(rec record) *tasks.Finished {
	task := rec.State.Scale
	var report []tasks.RevisionStatus
	for _, rv := range task.Scale.Revisions {
		report = append(report, tasks.RevisionStatus{Revision: rv.Revision, PodHash: rv.PodHash, Replicas: rv.Replicas, Ready: rv.Replicas, Available: rv.Replicas})
	}
	return &tasks.Finished{TaskID: task.ID, Attempt: task.Attempt, Kind: task.Kind, Outcome: tasks.OutcomeSucceeded, Replicas: report, At: time.Now()}
}

// Two replicas that both believe they own a rollout (each holds its
// record as the latest) decide on it: the compare-and-swap on the entry's
// revision is the fence. The one whose record is out of date loses its
// write, decides again on the bucket's record, and nothing it decided on
// the old record reaches a status event or a task.
//
// With --partitions each believes it owns the rollout's partition (its
// pin expired while it decided, and the other was pinned meanwhile): both
// decide on the record they hold as the truth, and the fence must hold
// all the same.
func TestTwoReplicasThatBothBelieveTheyOwnARolloutAreFenced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		owned bool
	}{{"shared consumers", false}, {"both pinned", true}} {
		t.Run(tc.name, func(t *testing.T) { twoBelieveTheyOwn(t, tc.owned) })
	}
}

func twoBelieveTheyOwn(t *testing.T, owner bool) {
	srv := startServer(t)
	ctx := context.Background()
	if owner {
		ctx = context.WithValue(ctx, owned{}, true)
	}
	regB := prometheus.NewRegistry()
	a, b := storeReplica(t, srv.ClientURL(), nil), storeReplica(t, srv.ClientURL(), regB)
	r := events.Ref{Namespace: "prod", Name: "web"}
	apply := func(svc *Service, u update) {
		t.Helper()
		u.ref = r
		if err := svc.apply(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	load := func(svc *Service) record {
		t.Helper()
		rec, _, err := svc.st.load(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	command := func(kind, id string) update {
		return update{commandID: id, mustExist: true,
			obs: machine.Observation{Command: &machine.Command{Kind: kind}, Cause: machine.Cause{ID: id, Type: "test." + kind}}}
	}
	request := func(image string) update {
		ro, _, problems := parseRollout(r, manifest(r, image, twoSteps))
		if len(problems) > 0 {
			t.Fatal(problems)
		}
		return update{obs: machine.Observation{Request: ro}, commandID: image}
	}

	apply(a, request("web:1"))
	apply(a, update{obs: machine.Observation{Finished: scaleFinished(load(a))}})
	apply(a, request("web:2")) // the canary's scale task is out
	// b reads the rollout now: from here on both hold the same record as
	// the latest, and either would decide on it without reading the bucket.
	canary := load(b)
	if _, _, ok := b.st.Recent("prod.web"); !ok {
		t.Fatal("b does not hold the rollout's record")
	}
	apply(a, command(machine.CommandAbort, "abort-1"))

	// On b's record the canary's scale report completes step 0 and sends
	// the scale task of step 1 (and its status events); on the bucket's,
	// the rollout is aborted and the report is for a task it no longer
	// waits for. apply returns once what it publishes is stored, and
	// nothing else publishes here: what the streams gain is b's.
	tasksBefore, statusBefore := lastSeq(t, b, events.StreamTasks), lastSeq(t, b, events.StreamStatus)
	apply(b, update{obs: machine.Observation{Finished: scaleFinished(canary)}})
	if n := lastSeq(t, b, events.StreamTasks) - tasksBefore; n != 0 {
		t.Errorf("%d tasks published by the decision on b's out-of-date record: a stale owner reached the data plane", n)
	}
	if n := lastSeq(t, b, events.StreamStatus) - statusBefore; n != 0 {
		t.Errorf("%d status events published by the decision on b's out-of-date record", n)
	}
	if got := load(a).State; !got.Aborted {
		t.Errorf("the bucket's record lost the abort: phase %s, step %d", got.Phase, got.Step)
	}
	if n := counterValue(t, regB, "sluice_orchestrator_state_reads_total", readStale); n != 1 {
		t.Errorf("b decided %v times on the bucket's record after finding its own stale, want 1", n)
	}
	// On the bucket's record the report changes nothing: dropping it is
	// decided on the leader's record, not on what a replica answered.
	if n := counterValue(t, regB, "sluice_orchestrator_state_reads_total", readLeader); n != 1 {
		t.Errorf("b checked the leader's record %v times before dropping the report, want 1", n)
	}
}

// twoSteps is a canary whose first step is followed by another scale.
const twoSteps = `    canary:
      steps: [{setWeight: 20}, {setWeight: 60}, {pause: {}}]`

// lastSeq is the last sequence stored in stream.
func lastSeq(t *testing.T, svc *Service, stream string) uint64 {
	t.Helper()
	s, err := svc.client.JetStream().Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// counterValue is the value of counter name with label reason (any
// series when reason is empty), 0 when it has no such series.
func counterValue(t *testing.T, reg prometheus.Gatherer, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
