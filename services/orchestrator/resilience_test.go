package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

// Two replicas share the work on many rollouts at once; compare-and-swap
// keeps every rollout's decisions in one line: each step starts once, each
// rollout completes once.
func TestTwoReplicasShareRolloutsWithoutInterleaving(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	refs := createAndUpdate(t, c, status, 20)
	for _, r := range refs {
		var started []int32
		completed := 0
		for _, e := range status.of(r) {
			switch e.Type {
			case events.TypeRolloutStepStarted:
				started = append(started, e.Data.Step.Index)
			case events.TypeRolloutCompleted:
				completed++
			}
		}
		if completed != 2 {
			t.Errorf("%s completed %d times, want 2", r, completed)
		}
		for i := 1; i < len(started); i++ {
			if started[i] <= started[i-1] {
				t.Errorf("%s: step starts out of line: %v", r, started)
				break
			}
		}
	}
}

// A replica killed during a timed pause loses neither the rollout nor the
// pause: another replica finishes it, and not before the pause is over.
func TestKilledOrchestratorIsReplacedAndPauseKept(t *testing.T) {
	srv := startServer(t)
	first := startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	steps := `    canary:
      steps: [{setWeight: 25}, {pause: {duration: 2s}}, {setWeight: 75}]`
	request(t, c, r, "web:1", steps)
	status.waitFor(t, r, events.TypeRolloutCompleted)
	request(t, c, r, "web:2", steps)

	var pauseStart time.Time
	poll.Until(t, "the pause step started", func() error {
		for _, e := range status.of(r) {
			if e.Type == events.TypeRolloutStepStarted && e.Data.Step != nil && e.Data.Step.Action == "pause" {
				pauseStart = e.At
				return nil
			}
		}
		return fmt.Errorf("saw %v", typesOf(status.of(r)))
	})
	first.kill()
	startOrchestrator(t, srv.ClientURL(), machine.Config{})

	done := waitForN(t, status, r, events.TypeRolloutCompleted, 2)
	if done.At.Sub(pauseStart) < 2*time.Second {
		t.Errorf("rollout completed %s after the 2s pause started: the restart shortened the pause", done.At.Sub(pauseStart))
	}
	if s := done.Data.Status; s.Revision != 2 || s.StableRevision != 2 {
		t.Errorf("after restart: %+v", s)
	}
}

func TestTaskNoWorkerTakesFailsTheRollout(t *testing.T) {
	srv := startServer(t)
	// The start timeout is far above a started report's round trip on a
	// loaded machine, so only the missing traffic service can run it out.
	startOrchestrator(t, srv.ClientURL(), machine.Config{TaskStartTimeout: 2 * time.Second, TaskMaxAttempts: 2})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c, tasks.ServiceTraffic)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	request(t, c, r, "web:1", canaryWithPause)

	var degraded statusEntry
	poll.Until(t, "the rollout degraded", func() error {
		for _, e := range status.of(r) {
			if e.Data.Status.Phase == events.PhaseDegraded {
				degraded = e
				return nil
			}
		}
		return fmt.Errorf("saw %v", typesOf(status.of(r)))
	})
	if msg := degraded.Data.Status.Message + " " + degraded.Data.Reason; !strings.Contains(msg, "traffic") {
		t.Errorf("degraded without naming the traffic service: %q", msg)
	}
}

// A replicas service behind a backlog longer than the start timeout
// answers each attempt of a scale task only after the next attempt went
// out (issue 20: under load, 12 of 10,000 rollouts aborted with "no
// replicas worker took the task" although every attempt had been carried
// out). The late answer is the task done: the rollout completes. The
// worker here answers attempt n only once it has received attempt n+1,
// and never answers the last one, so the ordering is fixed whatever the
// machine's load.
func TestALateReportOfAnEarlierAttemptCompletesTheTask(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{TaskStartTimeout: 2 * time.Second, TaskMaxAttempts: 2})
	c := connect(t, srv.ClientURL())
	workers := startFakeWorkers(t, c, tasks.ServiceReplicas)
	late, err := c.Consume(context.Background(), events.ConsumerConfig{
		Stream: events.StreamTasks, Durable: "late-replicas",
		FilterSubjects: []string{events.TaskRoot + "." + tasks.ServiceReplicas + ".>"},
	}, func(ctx context.Context, _ events.Delivery, ev events.Event) error {
		var task tasks.Task
		if err := events.DecodeData(ev, &task); err != nil {
			return err
		}
		if task.Attempt < 2 {
			return nil // answered when the next attempt comes
		}
		fin := tasks.Finished{TaskID: task.ID, Attempt: task.Attempt - 1, Kind: task.Kind, Outcome: tasks.OutcomeSucceeded, Worker: "late", At: time.Now()}
		for _, r := range task.Scale.Revisions {
			fin.Replicas = append(fin.Replicas, tasks.RevisionStatus{Revision: r.Revision, PodHash: r.PodHash, Replicas: r.Replicas, Ready: r.Replicas, Available: r.Replicas})
		}
		return workers.publish(ctx, task.Ref, tasks.TypeFinished, fmt.Sprintf("finished/%s#%d", task.ID, fin.Attempt), fin)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = late.Stop(context.Background()) })
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	request(t, c, r, "web:1", canaryWithPause)

	awaitCompleted(t, status, r, "the rollout completed on the late report of attempt 1")
}

// loadSteps is the four-step canary of createAndUpdate's rollouts.
const loadSteps = `    canary:
      steps: [{setWeight: 10}, {setWeight: 30}, {setWeight: 50}, {setWeight: 80}]`

// createAndUpdate creates n rollouts of loadSteps in namespace load,
// updates each once it completed, and waits for every update to complete;
// it returns the rollouts.
func createAndUpdate(t *testing.T, c *events.Client, status *statusLog, n int) []events.Ref {
	t.Helper()
	var refs []events.Ref
	for i := range n {
		r := events.Ref{Namespace: "load", Name: fmt.Sprintf("app-%d", i)}
		refs = append(refs, r)
		request(t, c, r, "app:1", loadSteps)
	}
	for _, r := range refs {
		status.waitFor(t, r, events.TypeRolloutCompleted)
		request(t, c, r, "app:2", loadSteps)
	}
	for _, r := range refs {
		waitForN(t, status, r, events.TypeRolloutCompleted, 2)
	}
	return refs
}

// awaitCompleted waits for r's rollout.completed, failing at once on a
// rollout.degraded or rollout.aborted.
func awaitCompleted(t *testing.T, status *statusLog, r events.Ref, what string) {
	t.Helper()
	poll.Until(t, what, func() error {
		es := status.of(r)
		for _, e := range es {
			switch e.Type {
			case events.TypeRolloutCompleted:
				return nil
			case events.TypeRolloutDegraded, events.TypeRolloutAborted:
				t.Fatalf("%s instead of completed: %s %s", e.Type, e.Data.Status.Message, e.Data.Reason)
			}
		}
		return fmt.Errorf("saw %v", typesOf(es))
	})
}

// An orchestrator behind its own backlog decides, after a task's start
// deadline, a message stored before it; the task's report, stored before
// the deadline too, waits behind it. The deadline is judged at the time
// the message was stored, so the report is decided before the task is
// given up on (issue 20: under load the orchestrator's results backlog
// counted against the workers' start timeout). The backlog is made by
// stopping the only replica while the messages are stored and starting
// another once the deadline has passed.
func TestADeadlineIsJudgedWhenTheMessageDecidedWasStored(t *testing.T) {
	srv := startServer(t)
	const timeout = 10 * time.Second // only the stored messages must fit in it
	first := startOrchestrator(t, srv.ClientURL(), machine.Config{TaskStartTimeout: timeout, TaskMaxAttempts: 1})
	c := connect(t, srv.ClientURL())
	workers := startFakeWorkers(t, c, tasks.ServiceReplicas)
	scales := make(chan tasks.Task, 8)
	sub, err := c.Consume(context.Background(), events.ConsumerConfig{
		Stream: events.StreamTasks, Durable: "held-replicas",
		FilterSubjects: []string{events.TaskRoot + "." + tasks.ServiceReplicas + ".>"},
	}, func(_ context.Context, _ events.Delivery, ev events.Event) error {
		var task tasks.Task
		if err := events.DecodeData(ev, &task); err != nil {
			return err
		}
		scales <- task
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Stop(context.Background()) })
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	request(t, c, r, "web:1", canaryWithPause)
	var task tasks.Task
	select {
	case task = <-scales:
	case <-time.After(poll.Default):
		t.Fatal("no scale task")
	}
	startBy := time.Now().Add(timeout) // the orchestrator sent it before now
	first.stop()

	// Stored before the deadline: an earlier timer event of the rollout,
	// then the scale task's report.
	ev, err := events.New(Source, TypeTimerFired, r.String(), timerData{Due: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ev.SetID(fmt.Sprintf("timer/%s/%s/%d", r.Namespace, r.Name, time.Now().UnixNano()))
	if _, err := c.Publish(context.Background(), events.ResultSubject(TimerService, r), ev); err != nil {
		t.Fatal(err)
	}
	fin := tasks.Finished{TaskID: task.ID, Attempt: task.Attempt, Kind: task.Kind, Outcome: tasks.OutcomeSucceeded, Worker: "held", At: time.Now()}
	for _, rv := range task.Scale.Revisions {
		fin.Replicas = append(fin.Replicas, tasks.RevisionStatus{Revision: rv.Revision, PodHash: rv.PodHash, Replicas: rv.Replicas, Ready: rv.Replicas, Available: rv.Replicas})
	}
	if err := workers.publish(context.Background(), r, tasks.TypeFinished, "finished/"+task.EventID(), fin); err != nil {
		t.Fatal(err)
	}
	if time.Now().After(startBy.Add(-time.Second)) {
		t.Fatalf("the messages were stored too close to the start deadline for the test to mean anything (machine overloaded?)")
	}
	poll.True(t, "the start deadline to pass", func() bool { return time.Now().After(startBy.Add(time.Second)) }, poll.Timeout(2*timeout))
	startOrchestrator(t, srv.ClientURL(), machine.Config{TaskStartTimeout: timeout, TaskMaxAttempts: 1})

	awaitCompleted(t, status, r, "the rollout completed on the report stored before the deadline")
}

// A command delivered a second time after newer ones (a publisher's retry
// outside the duplicate window, a replayed stream) is recognised by its
// event id and changes nothing: an old request does not bring its template
// back, an old promote does not lift a later pause.
func TestLateCopiesOfCommandsChangeNothing(t *testing.T) {
	srv := startServer(t)
	startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	twoPauses := `    canary:
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 60
      - pause: {}`
	req := func(image string) events.Event {
		return send(t, c, r, events.TypeRolloutRequested, json.RawMessage(manifest(r, image, twoPauses)))
	}

	req("web:1")
	status.waitFor(t, r, events.TypeRolloutCompleted)
	v2 := req("web:2")
	status.waitFor(t, r, events.TypeRolloutPaused)
	req("web:3") // replaces web:2 before it went anywhere
	waitForN(t, status, r, events.TypeRolloutPaused, 2)
	promote := send(t, c, r, events.TypeRolloutPromote, events.PromoteData{})
	if s := waitForN(t, status, r, events.TypeRolloutPaused, 3).Data.Status; s.Revision != 3 || s.CanaryWeight != 60 {
		t.Fatalf("second pause of web:3 at revision %d, weight %d; want 3, 60", s.Revision, s.CanaryWeight)
	}

	// The copies: the same CloudEvents, stored as new messages.
	for _, ev := range []events.Event{promote, v2} {
		msg, err := events.Encode(events.CommandSubject(r), ev)
		if err != nil {
			t.Fatal(err)
		}
		msg.Header.Del(jetstream.MsgIDHeader)
		if _, err := c.JetStream().PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	// A new request behind them on the same subject is handled after them.
	req("web:4")
	if s := waitForN(t, status, r, events.TypeRolloutPaused, 4).Data.Status; s.Revision != 4 || s.CanaryWeight != 20 {
		t.Errorf("web:4 paused at revision %d, weight %d; want 4, 20 (the copy of web:2's request made a revision)", s.Revision, s.CanaryWeight)
	}
	for _, e := range status.of(r) {
		if e.Type == events.TypeRolloutCompleted && e.Data.Status.Revision == 3 {
			t.Errorf("revision 3 completed: the promote's copy lifted its second pause")
		}
	}
}

// A decision is stored with its effects (the outbox) before they are
// published. When the process dies between the two, the message that led
// to the decision is delivered again, and the effects go out then.
func TestRedeliveryPublishesWhatACrashLeftInTheOutbox(t *testing.T) {
	srv := startServer(t)
	svc := startOrchestrator(t, srv.ClientURL(), machine.Config{}).svc
	ctx := t.Context()
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	request(t, c, r, "web:1", canaryWithPause)
	status.waitFor(t, r, events.TypeRolloutCompleted)

	// The process stored a decision and died before publishing its event.
	rec, rev, err := svc.st.load(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	lost := machine.Effect{Status: &machine.StatusEvent{Type: events.TypeRolloutPaused, ID: "prod/web/v999/0",
		Data: events.StatusData{Status: rec.State.Snapshot(time.Now()), Reason: "left in the outbox"}}}
	rec.Outbox = []machine.Effect{lost}
	if err := svc.st.save(ctx, r, rec, rev); err != nil {
		t.Fatal(err)
	}
	// The message comes again (a timer event: it changes nothing itself).
	if err := svc.apply(ctx, update{ref: r, obs: machine.Observation{Tick: true}, attempt: 2}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the outbox's event published on redelivery", func() error {
		for _, e := range status.of(r) {
			if e.ID == lost.Status.ID && e.Data.Reason == "left in the outbox" {
				return nil
			}
		}
		return fmt.Errorf("saw %v", typesOf(status.of(r)))
	})
}

// A replica killed while a standalone experiment runs loses neither the
// experiment nor its clock: another replica completes it, not before its
// duration has passed since it started running.
func TestKilledOrchestratorKeepsAStandaloneExperiment(t *testing.T) {
	srv := startServer(t)
	first := startOrchestrator(t, srv.ClientURL(), machine.Config{})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "exp"}
	send(t, c, r, events.TypeExperimentRequested, json.RawMessage(`{"apiVersion":"argoproj.io/v1alpha1","kind":"Experiment",
"metadata":{"name":"exp","namespace":"prod"},"spec":{"duration":"2s","scaleDownDelaySeconds":0,"templates":[{"name":"canary",
"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:2"}]}}}]}}`))
	running := status.waitFor(t, r, events.TypeExperimentRunning)
	first.kill()
	startOrchestrator(t, srv.ClientURL(), machine.Config{})

	done := status.waitFor(t, r, events.TypeExperimentCompleted)
	// Measured by the orchestrators' clock, as the events say it: when
	// the test received them depends on how fast each was published.
	started := running.Data.Status.Experiment.AvailableAt
	if e := done.Data.Status.Experiment; e == nil || e.AvailableAt.IsZero() || !e.AvailableAt.Equal(started) {
		t.Errorf("completed experiment %+v, want it available since %s as when it started running", e, started)
	}
	if ran := done.Data.Status.UpdatedAt.Sub(started); started.IsZero() || ran < 2*time.Second {
		t.Errorf("experiment completed %s after it started running (available at %s): the restart shortened its 2s", ran, started)
	}
	if s := done.Data.Status; s.Phase != events.ExperimentPhaseSuccessful || s.Kind != events.KindExperiment {
		t.Errorf("after restart: %+v", s)
	}
	rd, err := NewReader(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the experiment's pods scaled away", func() error {
		s, err := rd.Get(context.Background(), r)
		if err != nil {
			return err
		}
		if s.Replicas.Current != 0 || s.Kind != events.KindExperiment {
			return fmt.Errorf("kind %q, %d pods", s.Kind, s.Replicas.Current)
		}
		return nil
	})
}

// A deadline is fired by whichever replica's clock reaches it first and
// decided by whichever replica takes the timer event, whose clock may be
// a little behind (each knows the bus's time within its uncertainty).
// The event is the word that the deadline came: the pause ends. Decided
// by the behind replica's own clock, the event would change nothing, and
// that replica's own firing, under the same event id, would be dropped by
// the stream as a duplicate: the pause would never end.
func TestATimerFiredAheadEndsThePauseOnAReplicaBehind(t *testing.T) {
	srv := startServer(t)
	behind := func() time.Time { return time.Now().Add(-time.Minute) }
	startOrchestratorWith(t, srv.ClientURL(), Config{Now: behind})
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	status := watchStatus(t, c)
	r := events.Ref{Namespace: "prod", Name: "web"}
	steps := `    canary:
      steps: [{setWeight: 25}, {pause: {duration: 2s}}, {setWeight: 75}]`
	request(t, c, r, "web:1", steps)
	status.waitFor(t, r, events.TypeRolloutCompleted)
	request(t, c, r, "web:2", steps)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := c.JetStream().KeyValue(ctx, BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	var due time.Time
	poll.Until(t, "the pause's deadline in the record", func() error {
		e, err := kv.Get(ctx, records.KeyOf(r))
		if err != nil {
			return err
		}
		var rec record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return err
		}
		if rec.State.Revision != 2 || rec.State.Step != 1 || rec.Wakeup == nil {
			return fmt.Errorf("revision %d step %d wakeup %v", rec.State.Revision, rec.State.Step, rec.Wakeup)
		}
		due = *rec.Wakeup
		return nil
	})
	// Another replica, a minute ahead of this one, fires the deadline
	// when its clock reaches it: now, by this test's clock.
	ev, err := events.New(Source, TypeTimerFired, r.String(), timerData{Due: due})
	if err != nil {
		t.Fatal(err)
	}
	ev.SetID(fmt.Sprintf("timer/%s/%s/%d", r.Namespace, r.Name, due.UnixNano()))
	if _, err := c.Publish(ctx, events.ResultSubject(TimerService, r), ev); err != nil {
		t.Fatal(err)
	}
	done := waitForN(t, status, r, events.TypeRolloutCompleted, 2)
	if s := done.Data.Status; s.Revision != 2 || s.StableRevision != 2 {
		t.Errorf("after the pause: %+v", s)
	}
}
