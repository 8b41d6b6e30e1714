package orchestrator

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// Observations of one rollout that arrived together are decided in one
// decision: one compare-and-swap write of the rollout's entry, and every
// command answered as if each had been decided after the other.
func TestObservationsThatArriveTogetherAreDecidedInOneWrite(t *testing.T) {
	srv := startServer(t)
	svc := startOrchestrator(t, srv.ClientURL(), machine.Config{}).svc
	ctx := t.Context()
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	request(t, c, r, "web:1", canaryWithPause)
	status.waitFor(t, r, events.TypeRolloutCompleted)
	request(t, c, r, "web:2", canaryWithPause)
	status.waitFor(t, r, events.TypeRolloutPaused)

	entry := func() uint64 {
		t.Helper()
		_, rev, err := svc.st.load(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	// The pause is announced once its route is in effect; the step's
	// scale task may still report after it, in a write of its own. The
	// batch is measured once no task of the rollout is out.
	poll.Until(t, "no task of the rollout out", func() error {
		rec, _, err := svc.st.load(ctx, r)
		if err != nil {
			return err
		}
		for _, tr := range []*machine.TaskRecord{rec.State.Scale, rec.State.Route} {
			if tr != nil && !tr.Done {
				return fmt.Errorf("%s task %s not done", tr.Kind, tr.ID)
			}
		}
		return nil
	})
	before := entry()
	cmd := func(kind, id string) update {
		return update{ref: r, commandID: id, mustExist: true, attempt: 1,
			obs: machine.Observation{Command: &machine.Command{Kind: kind}, Cause: machine.Cause{ID: id, Type: "test." + kind}}}
	}
	kv, err := c.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	writes, err := kv.Watch(ctx, records.KeyOf(r), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = writes.Stop() }()
	// A pause, a resume, the pause again (refused: a copy), a promote.
	us := []update{cmd(machine.CommandPause, "b-1"), cmd(machine.CommandResume, "b-2"), cmd(machine.CommandPause, "b-1"), cmd(machine.CommandPromote, "b-3")}
	for i, err := range svc.applyAll(ctx, r, us) {
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	// The first write after the batch began holds every command of the
	// batch: one write. (The route task the batch sent may be reported and
	// decided right after, in a write of its own.)
	var written record
	select {
	case e := <-writes.Updates():
		if e == nil {
			t.Fatal("the watch of the entry ended")
		}
		if err := json.Unmarshal(e.Value(), &written); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	for _, id := range []string{"b-1", "b-2", "b-3"} {
		if !written.applied(id) {
			t.Errorf("the first write after the batch began (after revision %d) lacks command %s: the batch took more than one write", before, id)
		}
	}
	want := map[string]string{"b-1": events.TypeRolloutPaused, "b-2": events.TypeRolloutResumed, "b-3": events.TypeRolloutResumed}
	poll.Until(t, "every command of the batch answered", func() error {
		for id, typ := range want {
			got := answers(status, r, id)
			if len(got) == 0 {
				return fmt.Errorf("no answer to %s yet; saw %v", id, typesOf(status.of(r)))
			}
			if got[0].Type != typ {
				t.Fatalf("%s answered with %s (%s), want %s", id, got[0].Type, got[0].Data.Reason, typ)
			}
		}
		return nil
	})
	if got := answers(status, r, "b-1"); len(got) != 1 {
		t.Errorf("the pause answered %d times (%v): its copy in the batch acted", len(got), typesOf(got))
	}
	// The promote, decided after the resume, took the rollout on to its
	// next pause, as it would have one message after the other.
	if s := waitForN(t, status, r, events.TypeRolloutPaused, 3).Data.Status; s.CanaryWeight != 60 {
		t.Errorf("after the batch, paused at weight %d; want 60", s.CanaryWeight)
	}
}
