package orchestrator

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// Observations of one rollout that arrived together are decided in one
// decision: one compare-and-swap write of the rollout's entry, and every
// command answered as if each had been decided after the other.
func TestObservationsThatArriveTogetherAreDecidedInOneWrite(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv.ClientURL())
	svc, err := New(c, Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	poll.True(t, "the orchestrator ready", svc.Ready)
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
	before := entry()
	cmd := func(kind, id string) update {
		return update{ref: r, commandID: id, mustExist: true, attempt: 1,
			obs: machine.Observation{Command: &machine.Command{Kind: kind}, Cause: machine.Cause{ID: id, Type: "test." + kind}}}
	}
	// A pause, a resume, the pause again (refused: a copy), a promote.
	us := []update{cmd(machine.CommandPause, "b-1"), cmd(machine.CommandResume, "b-2"), cmd(machine.CommandPause, "b-1"), cmd(machine.CommandPromote, "b-3")}
	for i, err := range svc.applyAll(ctx, r, us) {
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	if after := entry(); after != before+1 {
		t.Errorf("the entry went from revision %d to %d: %d writes for one batch, want 1", before, after, after-before)
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
