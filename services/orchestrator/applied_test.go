package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

func TestAppliedSetKeepsEveryIDForRetentionWithinItsBound(t *testing.T) {
	const retention = 7 * 24 * time.Hour
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var set appliedSet
	for i := range maxApplied {
		var forgotten int
		set, forgotten = set.add(fmt.Sprintf("cmd-%d", i), start.Add(time.Duration(i)*time.Minute), retention)
		if forgotten != 0 {
			t.Fatalf("forgot %d ids at %d, under the bound of %d", forgotten, i, maxApplied)
		}
	}
	for _, id := range []string{"cmd-0", "cmd-500", fmt.Sprintf("cmd-%d", maxApplied-1)} {
		if !set.has(id) {
			t.Errorf("%s not recognised", id)
		}
	}
	if set.has("cmd-new") {
		t.Error("an id never added is recognised")
	}
	if n := len(set); n > appliedGroups+1 {
		t.Errorf("%d groups for ids within one retention; want at most %d", n, appliedGroups+1)
	}

	// Past the bound the oldest go, and the caller is told.
	before := set
	over, forgotten := set.add("cmd-over", start.Add(maxApplied*time.Minute), retention)
	if forgotten != 1 || over.has("cmd-0") || !over.has("cmd-1") || !over.has("cmd-over") {
		t.Errorf("past the bound: forgotten %d, has cmd-0 %v, cmd-1 %v, cmd-over %v; want 1, false, true, true",
			forgotten, over.has("cmd-0"), over.has("cmd-1"), over.has("cmd-over"))
	}
	if !before.has("cmd-0") || before.has("cmd-over") {
		t.Error("add changed the set it was called on (records are shared with the store's cache)")
	}

	// An id is kept for at least retention after it was applied, and
	// dropped when its group has expired.
	var one appliedSet
	one, _ = one.add("old", start, retention)
	kept, _ := one.add("probe", start.Add(retention), retention)
	if !kept.has("old") {
		t.Error("an id was dropped exactly retention after it was applied")
	}
	gone, _ := one.add("probe", start.Add(retention+retention/appliedGroups+time.Second), retention)
	if gone.has("old") || gone.len() != 1 {
		t.Errorf("an id was kept past retention and its group (%d ids left)", gone.len())
	}
}

// Records written before the applied set kept their last 64 command ids;
// they are still recognised, and folded into the set by the next command.
func TestLegacyCommandIDsAreRecognisedAndFolded(t *testing.T) {
	rec := record{Commands: []string{"a", "b"}}
	if !rec.applied("a") || rec.applied("c") {
		t.Fatal("legacy ids not read")
	}
	set, _ := rec.withApplied("c", time.Now(), time.Hour)
	for _, id := range []string{"a", "b", "c"} {
		if !set.has(id) {
			t.Errorf("%s missing after folding", id)
		}
	}
}

// A copy of an old command (a client's retry long after, a re-published
// event: a new message with the same id) changes nothing however many
// newer commands were applied in between: the orchestrator once
// remembered only the last 64.
func TestACopyOfACommandAfterManyNewerChangesNothing(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	req := func(image string) events.Event {
		return send(t, c, r, events.TypeRolloutRequested, json.RawMessage(manifest(r, image, canaryWithPause)))
	}
	req("web:1")
	status.waitFor(t, r, events.TypeRolloutCompleted)
	v2 := req("web:2")
	status.waitFor(t, r, events.TypeRolloutPaused)
	req("web:3")
	waitForN(t, status, r, events.TypeRolloutPaused, 2)

	// 150 newer commands, each applied (refused: nothing to retry).
	const newer = 150
	var last events.Event
	for range newer {
		last = send(t, c, r, events.TypeRolloutRetry, nil)
	}
	poll.Until(t, "the last of the newer commands answered", func() error {
		if len(answers(status, r, last.ID())) == 0 {
			return fmt.Errorf("no answer to %s yet", last.ID())
		}
		return nil
	})

	copyOf := func(ev events.Event) {
		t.Helper()
		msg, err := events.Encode(events.CommandSubject(r), ev)
		if err != nil {
			t.Fatal(err)
		}
		msg.Header.Del(jetstream.MsgIDHeader)
		if _, err := c.JetStream().PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	before := len(answers(status, r, v2.ID()))
	copyOf(v2)
	// A fresh command behind the copy on the same subject is handled
	// after it, and acts: its answer says which revision it made.
	v4 := req("web:4")
	var accepted statusEntry
	poll.Until(t, "web:4's request answered", func() error {
		for _, e := range answers(status, r, v4.ID()) {
			if e.Type == events.TypeRolloutAccepted {
				accepted = e
				return nil
			}
		}
		return fmt.Errorf("saw %v", typesOf(status.of(r)))
	})
	if rev := accepted.Data.Status.Revision; rev != 4 {
		t.Errorf("web:4 accepted as revision %d; want 4 (the copy of web:2's request, %d commands old, made a revision)", rev, newer+2)
	}
	if got := answers(status, r, v2.ID()); len(got) != before {
		t.Errorf("the copy of web:2's request was answered: %v", typesOf(got[before:]))
	}
}

// A command whose delivery is held by a replica that took it and hangs
// (cut off, paused) is decided before a newer command of the same rollout
// that a live replica takes meanwhile, not after it (order.go): a promote
// sent before an abort resumes the rollout and the abort then aborts it,
// where the abort decided first left the promote to be refused. Handed
// back later, the held promote changes nothing.
func TestACommandHeldElsewhereIsDecidedBeforeANewerOne(t *testing.T) {
	srv := startServer(t)
	first := startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	request(t, c, r, "web:1", canaryWithPause)
	status.waitFor(t, r, events.TypeRolloutCompleted)
	request(t, c, r, "web:2", canaryWithPause)
	status.waitFor(t, r, events.TypeRolloutPaused)
	first.stop()

	// The older command, the promote, is taken by a replica that then
	// hangs on it: it holds it and hands it back later.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	promote := send(t, c, r, events.TypeRolloutPromote, events.PromoteData{})
	cons, err := c.JetStream().Consumer(ctx, events.StreamCommands, DurableCommands)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var held jetstream.Msg
	for m := range batch.Messages() {
		held = m
	}
	if held == nil {
		t.Fatalf("the promote was not delivered: %v", batch.Error())
	}
	if id := held.Headers().Get("ce-id"); id != promote.ID() {
		t.Fatalf("held %s, want the promote %s", id, promote.ID())
	}

	// The newer command reaches a live replica meanwhile.
	abort := send(t, c, r, events.TypeRolloutAbort, nil)
	reg := prometheus.NewRegistry()
	m, err := telemetry.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	startOrchestratorWith(t, srv.ClientURL(), Config{Metrics: m})
	poll.Until(t, "the newer command (abort) answered", func() error {
		_ = held.InProgress() // the held promote is not redelivered meanwhile
		if got := answers(status, r, abort.ID()); len(got) == 0 {
			return fmt.Errorf("no answer to the abort; saw %v", typesOf(status.of(r)))
		}
		return nil
	})
	got := answers(status, r, promote.ID())
	if len(got) == 0 || got[0].Type != events.TypeRolloutResumed {
		t.Fatalf("the held promote was answered with %v before the abort's answer; want %s first (the abort was decided before the promote sent ahead of it)", typesOf(got), events.TypeRolloutResumed)
	}
	if a := answers(status, r, abort.ID()); a[0].Type != events.TypeRolloutAborted {
		t.Fatalf("the abort was answered with %s (%s); want %s", a[0].Type, a[0].Data.Reason, events.TypeRolloutAborted)
	}
	if n := counterValue(t, reg, "sluice_orchestrator_commands_reordered_total", ""); n != 1 {
		t.Errorf("sluice_orchestrator_commands_reordered_total = %v, want 1", n)
	}

	// Handed back, the promote is delivered again and changes nothing.
	before := len(answers(status, r, promote.ID()))
	if err := held.Nak(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the handed-back promote settled", func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending+int(info.NumPending) > 0 {
			return fmt.Errorf("%d commands pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	if got := answers(status, r, promote.ID()); len(got) != before {
		t.Errorf("the promote's redelivery was answered again: %v", typesOf(got[before:]))
	}
	for _, e := range status.of(r) {
		if e.Type == events.TypeRolloutCompleted && e.Data.Status.Revision == 2 {
			t.Errorf("revision 2 completed after its abort")
		}
	}
}
