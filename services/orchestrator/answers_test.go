package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// wire publishes a command as a client of another language would, in
// CloudEvents' structured or binary NATS mode, with an actor.
type wire struct {
	t     *testing.T
	c     *events.Client
	n     int
	actor string
}

func (w *wire) send(r events.Ref, typ string, data string) string {
	w.t.Helper()
	w.n++
	id := fmt.Sprintf("wire-%d", w.n)
	msg := nats.NewMsg(events.CommandSubject(r))
	msg.Header.Set("Nats-Msg-Id", id)
	if w.n%2 == 0 {
		ev := map[string]any{"specversion": "1.0", "id": id, "type": typ, "source": "/bots/chat", "subject": r.String(), "actor": w.actor}
		if data != "" {
			ev["datacontenttype"] = "application/json"
			ev["data"] = json.RawMessage(data)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			w.t.Fatal(err)
		}
		msg.Header.Set("Content-Type", "application/cloudevents+json")
		msg.Data = b
	} else {
		for k, v := range map[string]string{"specversion": "1.0", "id": id, "type": typ, "source": "/bots/chat", "subject": r.String(), "actor": w.actor} {
			msg.Header.Set("ce-"+k, v)
		}
		if data != "" {
			msg.Header.Set("Content-Type", "application/json")
			msg.Data = []byte(data)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.c.JetStream().PublishMsg(ctx, msg); err != nil {
		w.t.Fatal(err)
	}
	return id
}

// asker sends commands on the wire and checks their answers.
type asker struct {
	t      *testing.T
	status *statusLog
	w      *wire
}

// expect sends a command and waits for its answer: the first event that
// carries its id must be of type want, with the command's actor; a
// refusal must name the command and have code; an experiment's answer
// must have an experiment's snapshot.
func (a *asker) expect(r events.Ref, typ, data, want, code string) statusEntry {
	t := a.t
	t.Helper()
	id := a.w.send(r, typ, data)
	var got []statusEntry
	poll.Until(t, fmt.Sprintf("an answer to %s %s", typ, data), func() error {
		if got = answers(a.status, r, id); len(got) == 0 {
			return fmt.Errorf("no event carries causationid %s; saw %v", id, typesOf(a.status.of(r)))
		}
		return nil
	})
	first := got[0]
	if first.Type != want {
		t.Fatalf("%s %s answered with %s (%s %v), want %s", typ, data, first.Type, first.Data.Reason, first.Data.Errors, want)
	}
	if first.Actor != a.w.actor {
		t.Fatalf("answer to %s has actor %q, want %q", typ, first.Actor, a.w.actor)
	}
	if want == events.TypeRolloutRefused || want == events.TypeExperimentRefused {
		cmd := first.Data.Command
		if cmd == nil || cmd.ID != id || cmd.Type != typ || cmd.Code != code || cmd.Reason == "" {
			t.Fatalf("refusal of %s: %+v, want code %s", typ, cmd, code)
		}
	}
	if strings.HasPrefix(want, "io.sluice.experiment.") && first.Data.Status.Kind != events.KindExperiment {
		t.Fatalf("%s answered with a snapshot of kind %q", typ, first.Data.Status.Kind)
	}
	return first
}

// answers returns the status events of r that carry causation id.
func answers(l *statusLog, r events.Ref, id string) []statusEntry {
	var out []statusEntry
	for _, e := range l.of(r) {
		if e.Causation == id {
			out = append(out, e)
		}
	}
	return out
}

// TestEveryCommandIsAnswered publishes every command on the wire, in both
// CloudEvents modes, and finds each answered by the events it caused or by
// exactly one command.refused, with its causationid and actor.
func TestEveryCommandIsAnswered(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	w := &wire{t: t, c: c, actor: "slack:U024BE7LH"}
	web := events.Ref{Namespace: "shop", Name: "web"}

	expect := (&asker{t: t, status: status, w: w}).expect

	expect(web, events.TypeRolloutPromote, "", events.TypeRolloutRefused, events.RefusedNotFound)
	send(t, c, web, events.TypeRolloutRequested, json.RawMessage(manifest(web, "web:1", canaryWithPause)))
	status.waitFor(t, web, events.TypeRolloutCompleted)
	update := send(t, c, web, events.TypeRolloutRequested, json.RawMessage(manifest(web, "web:2", canaryWithPause)))
	status.waitFor(t, web, events.TypeRolloutPaused)

	paused := expect(web, events.TypeRolloutPause, "", events.TypeRolloutPaused, "")
	if paused.Correlation != update.ID() {
		t.Fatalf("paused event's correlationid %q, want the update's request %q", paused.Correlation, update.ID())
	}
	expect(web, events.TypeRolloutPause, "", events.TypeRolloutRefused, events.RefusedNotApplicable)
	expect(web, events.TypeRolloutResume, "", events.TypeRolloutResumed, "")
	expect(web, events.TypeRolloutResume, "{}", events.TypeRolloutRefused, events.RefusedNotApplicable)
	expect(web, events.TypeRolloutUndo, `{"toRevision": 99}`, events.TypeRolloutRefused, events.RefusedInvalid)
	expect(web, events.TypeRolloutUndo, `{"toRevision": -1}`, events.TypeRolloutRefused, events.RefusedInvalid)
	expect(web, events.TypeRolloutPromote, `{"full": "yes"}`, events.TypeRolloutRefused, events.RefusedInvalid)
	expect(web, events.TypeRolloutRestart, "", events.TypeRolloutRestarted, "")
	expect(web, events.TypeRolloutAbort, "", events.TypeRolloutAborted, "")
	expect(web, events.TypeRolloutAbort, "", events.TypeRolloutRefused, events.RefusedNotApplicable)
	if s := expect(web, events.TypeRolloutRetry, "", events.TypeRolloutResumed, "").Data.Status; s.Aborted {
		t.Fatalf("resumed after retry still shows the abort: %+v", s)
	}
	expect(web, events.TypeRolloutPromote, `{"full": true}`, events.TypeRolloutResumed, "")
	poll.Until(t, "revision 2 completed", func() error {
		for _, e := range status.of(web) {
			if e.Type == events.TypeRolloutCompleted && e.Data.Status.Revision == 2 {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	expect(web, events.TypeRolloutPromote, "", events.TypeRolloutRefused, events.RefusedNotApplicable)
	expect(web, events.TypeRolloutDelete, "", events.TypeRolloutDeleted, "")
	expect(web, events.TypeRolloutAbort, "", events.TypeRolloutRefused, events.RefusedNotFound)

	// Every refusal is one event: its id derives from the command's.
	for _, e := range status.of(web) {
		if e.Type == events.TypeRolloutRefused {
			if n := len(answers(status, web, e.Causation)); n != 1 {
				t.Fatalf("command %s has %d answers, want one refusal", e.Causation, n)
			}
		}
	}

	// A new request after the deletion starts at revision 1.
	send(t, c, web, events.TypeRolloutRequested, json.RawMessage(manifest(web, "web:3", canaryWithPause)))
	poll.Until(t, "a new revision 1 after delete", func() error {
		es := status.of(web)
		last := es[len(es)-1]
		if last.Type == events.TypeRolloutCompleted && last.Data.Status.Revision == 1 {
			return nil
		}
		return fmt.Errorf("last %s revision %d", last.Type, last.Data.Status.Revision)
	})
	if !slices.ContainsFunc(status.of(web), func(e statusEntry) bool { return e.Type == events.TypeRolloutDeleted }) {
		t.Fatal("no deleted event")
	}
}

// TestReaderShowsCountsReportedWithoutAnEvent: a scale-down publishes no
// status event once the pods are gone, but the status read from the
// orchestrator shows the counts it reported; a deleted rollout is gone.
func TestReaderShowsCountsReportedWithoutAnEvent(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	web := events.Ref{Namespace: "shop", Name: "web"}
	send(t, c, web, events.TypeRolloutRequested, json.RawMessage(manifest(web, "web:1", canaryWithPause)))
	status.waitFor(t, web, events.TypeRolloutCompleted)

	rd, err := NewReader(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	two := strings.Replace(string(manifest(web, "web:1", canaryWithPause)), `"replicas":4`, `"replicas":2`, 1)
	if !strings.Contains(two, `"replicas":2`) {
		t.Fatalf("setup: manifest %s", two)
	}
	send(t, c, web, events.TypeRolloutRequested, json.RawMessage(two))
	poll.Until(t, "the reader showing 2 of 2 replicas", func() error {
		s, err := rd.Get(context.Background(), web)
		if err != nil {
			return err
		}
		if r := s.Replicas; r.Desired != 2 || r.Current != 2 || r.Available != 2 {
			return fmt.Errorf("replicas %+v", r)
		}
		return nil
	})
	if l, err := rd.List(context.Background(), "shop"); err != nil || len(l) != 1 || l[0].Name != "web" {
		t.Fatalf("list: %v %+v", err, l)
	}
	send(t, c, web, events.TypeRolloutDelete, nil)
	status.waitFor(t, web, events.TypeRolloutDeleted)
	if _, err := rd.Get(context.Background(), web); !errors.Is(err, ErrNoRollout) {
		t.Fatalf("get after delete: %v, want ErrNoRollout", err)
	}
	if l, err := rd.List(context.Background(), ""); err != nil || len(l) != 0 {
		t.Fatalf("list after delete: %v %+v", err, l)
	}
}

// TestReaderManifestHasTheEventsRevision: notifications render a rollout
// as Argo's object from Manifest: its annotations as applied, and the pod
// template of the revision an event was about, not only the newest.
func TestReaderManifestHasTheEventsRevision(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	web := events.Ref{Namespace: "shop", Name: "web"}
	request(t, c, web, "web:1", canaryWithPause)
	status.waitFor(t, web, events.TypeRolloutCompleted)
	rd, err := NewReader(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	first, err := rd.Manifest(context.Background(), web, "")
	if err != nil {
		t.Fatal(err)
	}
	oldHash := first.Spec.Template.Labels["rollouts-pod-template-hash"]
	if first.Spec.Template.Spec.Containers[0].Image != "web:1" {
		t.Fatalf("first manifest's image = %q, want web:1", first.Spec.Template.Spec.Containers[0].Image)
	}
	var obj map[string]any
	if err := json.Unmarshal(manifest(web, "web:2", canaryWithPause), &obj); err != nil {
		t.Fatal(err)
	}
	obj["metadata"].(map[string]any)["annotations"] = map[string]any{"notifications.argoproj.io/subscribe.on-rollout-completed.slack": "deploys"}
	send(t, c, web, events.TypeRolloutRequested, obj)
	status.waitFor(t, web, events.TypeRolloutPaused)

	cur, err := rd.Manifest(context.Background(), web, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := cur.Spec.Template.Spec.Containers[0].Image; got != "web:2" {
		t.Errorf("current manifest's image = %q, want web:2", got)
	}
	if got := cur.Annotations["notifications.argoproj.io/subscribe.on-rollout-completed.slack"]; got != "deploys" {
		t.Errorf("annotation = %q, want deploys (annotations %v)", got, cur.Annotations)
	}
	snap, err := rd.Get(context.Background(), web)
	if err != nil {
		t.Fatal(err)
	}
	old, err := rd.Manifest(context.Background(), web, snap.StablePodHash)
	if err != nil {
		t.Fatal(err)
	}
	if got := old.Spec.Template.Spec.Containers[0].Image; got != "web:1" {
		t.Errorf("stable revision's image = %q, want web:1 (hash %s, first %s)", got, snap.StablePodHash, oldHash)
	}
	if _, err := rd.Manifest(context.Background(), events.Ref{Namespace: "shop", Name: "nope"}, ""); !errors.Is(err, ErrNoRollout) {
		t.Errorf("manifest of a missing rollout: %v, want ErrNoRollout", err)
	}
}

// TestExperimentCommandsAreAnswered: a standalone experiment's request
// and commands, over the wire, are answered with its own event types,
// and a rollout's command at its name is refused.
func TestExperimentCommandsAreAnswered(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	w := &wire{t: t, c: c, actor: "user:alice"}
	exp := events.Ref{Namespace: "shop", Name: "exp"}

	answer := (&asker{t: t, status: status, w: w}).expect
	manifest := func(duration string) string {
		return fmt.Sprintf(`{"apiVersion":"argoproj.io/v1alpha1","kind":"Experiment","metadata":{"name":"exp","namespace":"shop"},
"spec":{"duration":%q,"templates":[{"name":"baseline","selector":{"matchLabels":{"app":"web"}},
"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:1"}]}}}]}}`, duration)
	}

	answer(exp, events.TypeExperimentTerminate, "", events.TypeExperimentRefused, events.RefusedNotFound)
	bad := answer(exp, events.TypeExperimentRequested, `{"apiVersion":"argoproj.io/v1alpha1","kind":"Experiment","metadata":{"name":"exp"},"spec":{}}`,
		events.TypeExperimentRejected, "")
	if len(bad.Data.Errors) == 0 || !strings.HasPrefix(bad.Data.Errors[0], "spec.templates") || bad.Data.Status.Phase != events.ExperimentPhaseError {
		t.Fatalf("invalid experiment rejected with %v, phase %s", bad.Data.Errors, bad.Data.Status.Phase)
	}
	answer(exp, events.TypeExperimentRequested, manifest(""), events.TypeExperimentAccepted, "")
	status.waitFor(t, exp, events.TypeExperimentRunning)
	answer(exp, events.TypeRolloutPromote, "", events.TypeRolloutRefused, events.RefusedNotFound)
	answer(exp, events.TypeExperimentRequested, manifest("1h"), events.TypeExperimentRejected, "")
	answer(exp, events.TypeExperimentTerminate, "", events.TypeExperimentTerminated, "")
	answer(exp, events.TypeExperimentTerminate, "{}", events.TypeExperimentRefused, events.RefusedNotApplicable)
	answer(exp, events.TypeExperimentDelete, "", events.TypeExperimentDeleted, "")
	answer(exp, events.TypeExperimentDelete, "", events.TypeExperimentRefused, events.RefusedNotFound)
}
