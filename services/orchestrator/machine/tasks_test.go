package machine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

func TestTaskProtocol(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w *world)
	}{
		{"no worker takes the first scale task: resent, then the rollout fails with a message", func(t *testing.T, w *world) {
			w.down[tasks.ServiceReplicas] = true
			w.request(nginxCanary(4, setWeight(25)))
			w.advance(59 * time.Second)
			var attempts []string
			for _, tk := range w.sent {
				if tk.Scale != nil {
					attempts = append(attempts, tk.EventID())
				}
			}
			if got := strings.Join(attempts, " "); got != "shop/web/r1/scale/1#1 shop/web/r1/scale/1#2" {
				t.Fatalf("scale attempts %s", got)
			}
			w.expectPhase(events.PhaseProgressing)
			m := w.mark()
			w.advance(31 * time.Second)
			w.expectEvents(m, "rollout.degraded")
			want := "no replicas worker took the task within 30s: is the replicas service running? If it is only busy, raise the orchestrator's --task-start-timeout (task shop/web/r1/scale/1, 3 attempts)"
			if r := w.lastEvent("rollout.degraded").Data.Reason; r != want {
				t.Fatalf("reason %q", r)
			}
			w.expectPhase(events.PhaseDegraded)
			if w.st.Message != want {
				t.Fatalf("message %q", w.st.Message)
			}
			if _, ok := w.st.NextWakeup(); ok {
				t.Fatalf("a wakeup is left after giving up")
			}
			w.up(tasks.ServiceReplicas)
			m = w.mark()
			w.command(CommandRetry)
			w.settle()
			w.expectEvents(m, "rollout.resumed", "rollout.completed")
			w.expectPhase(events.PhaseHealthy)
		}},
		{"no worker takes a scale task of an update: the update aborts", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.down[tasks.ServiceReplicas] = true
			w.request(image(ro, "web:2"))
			w.advance(90 * time.Second)
			ab := w.lastEvent("rollout.aborted")
			if !strings.HasPrefix(ab.Data.Reason, "no replicas worker took the task within 30s: is the replicas service running? If it is only busy, raise the orchestrator's --task-start-timeout (task shop/web/r2/scale/2,") {
				t.Fatalf("reason %q", ab.Data.Reason)
			}
			m := w.mark()
			w.advance(5 * time.Minute)
			w.expectEvents(m) // the abort's own tasks fail too, without another event
			w.expectPhase(events.PhaseDegraded)
			if w.lastRoute().CanaryWeight != 0 {
				t.Fatalf("traffic not back on the stable")
			}
		}},
		{"a failed route task is sent again", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely(), setWeight(50), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.settle()
			w.failNext[tasks.ServiceTraffic] = 2
			w.command(CommandPromote) // setWeight 50: one route task, failing twice
			w.settle()
			w.expectWeight(50)
			w.expectPhase(events.PhasePaused)
			if w.attempts["shop/web/r2/route/4"] != 3 || w.st.Aborted {
				t.Fatalf("attempts %v", w.attempts)
			}
		}},
		{"a route task failing every attempt aborts with the worker's message", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.request(image(ro, "web:2"))
			w.failNext[tasks.ServiceTraffic] = 4 // the first route task is superseded before it fails
			w.settle()
			want := "traffic worker: quota exceeded (traffic task shop/web/r2/route/3, 3 attempts)"
			if r := w.lastEvent("rollout.aborted").Data.Reason; r != want {
				t.Fatalf("reason %q", r)
			}
			w.expectWeight(0)
		}},
		{"a route task not finished in time is sent again, then fails", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.hang[tasks.ServiceTraffic] = true
			w.request(image(ro, "web:2"))
			w.advance(179 * time.Second)
			w.expectPhase(events.PhaseProgressing)
			m := w.mark()
			w.advance(time.Second)
			// Aborted, but the hung worker may still apply the step's route:
			// the aborted event waits for the abort's own route, which the
			// same worker does not finish either.
			w.expectPhase(events.PhaseDegraded)
			w.expectEvents(m)
			w.advance(180 * time.Second)
			if r := w.lastEvent("rollout.aborted").Data.Reason; r != "the traffic service did not finish within 1m0s (task shop/web/r2/route/3, 3 attempts); "+
				"routing traffic back to the stable revision failed: the traffic service did not finish within 1m0s (task shop/web/r2/route/4, 3 attempts)" {
				t.Fatalf("reason %q", r)
			}
		}},
		{"progress deadline without abort: Degraded until the update moves again", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			ro.Spec.ProgressDeadlineSeconds = ptr(int32(60))
			start(w, ro)
			w.broken[h2] = true
			m := w.mark()
			w.request(image(ro, "web:2"))
			w.advance(59 * time.Second)
			w.expectPhase(events.PhaseProgressing)
			w.advance(time.Second)
			w.expectPhase(events.PhaseDegraded)
			if w.st.Message != `ProgressDeadlineExceeded: ReplicaSet "web-`+h2+`" has timed out progressing.` {
				t.Fatalf("message %q", w.st.Message)
			}
			w.expectEvents(m, "rollout.accepted", "rollout.step.started", "rollout.degraded")
			if r := w.lastEvent("rollout.degraded").Data.Reason; r != w.st.Message {
				t.Fatalf("degraded reason %q, want the message %q", r, w.st.Message)
			}
			if w.st.Aborted {
				t.Fatalf("aborted without progressDeadlineAbort")
			}
			if _, ok := w.st.NextWakeup(); ok {
				t.Fatalf("a wakeup is left")
			}
			w.broken[h3] = false
			w.request(image(ro, "web:3"))
			w.settle()
			w.expectPhase(events.PhasePaused)
			w.expectPods(map[int64]int32{1: 4, 3: 1})
		}},
		{"progress deadline with progressDeadlineAbort aborts", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			ro.Spec.ProgressDeadlineSeconds = ptr(int32(60))
			ro.Spec.ProgressDeadlineAbort = true
			start(w, ro)
			w.broken[h2] = true
			w.request(image(ro, "web:2"))
			w.advance(time.Minute)
			ab := w.lastEvent("rollout.aborted")
			if !strings.HasPrefix(ab.Data.Reason, "ProgressDeadlineExceeded: ") || ab.Data.Status.Phase != events.PhaseDegraded {
				t.Fatalf("aborted %+v", ab.Data)
			}
			w.expectWeight(0)
		}},
		{"no analyzer takes an analysis run: the update aborts", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), analysisStep("smoke"))
			start(w, ro)
			w.down[tasks.ServiceAnalyzer] = true
			w.request(image(ro, "web:2"))
			w.advance(2 * time.Minute)
			want := "step analysis run web-" + h2 + "-2-1 error: no analyzer worker took the task within 30s: is the analyzer service running? If it is only busy, raise the orchestrator's --task-start-timeout (task shop/web/r2/analysis-step-1/1, 3 attempts)"
			if r := w.lastEvent("rollout.aborted").Data.Reason; r != want {
				t.Fatalf("reason %q\nwant   %q", r, want)
			}
		}},
		{"a late report of an earlier attempt completes the task", func(t *testing.T, w *world) {
			// A worker behind a backlog longer than the start timeout
			// answers attempt 1 after attempt 2 went out: the task is done.
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.down[tasks.ServiceReplicas] = true
			w.request(image(ro, "web:2"))
			w.advance(30 * time.Second)
			first := w.backlog[tasks.ServiceReplicas]
			if len(first) != 2 || first[0].Attempt != 1 || first[1].Attempt != 2 || first[0].ID != first[1].ID {
				t.Fatalf("setup: replicas backlog %v", first)
			}
			w.down[tasks.ServiceReplicas] = false
			delete(w.backlog, tasks.ServiceReplicas)
			w.answer(first[0])
			w.settle()
			w.expectPhase(events.PhasePaused)
			w.expectPods(map[int64]int32{1: 4, 2: 1})
			m := len(w.sent)
			w.advance(10 * time.Minute)
			for _, tk := range w.sentSince(m) {
				t.Errorf("task %s sent after the task was done", tk.EventID())
			}
			w.expectPhase(events.PhasePaused)
		}},
		{"a late failure of an earlier attempt leaves the attempt in flight", func(t *testing.T, w *world) {
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.down[tasks.ServiceReplicas] = true
			w.request(image(ro, "web:2"))
			w.advance(30 * time.Second)
			backlog := w.backlog[tasks.ServiceReplicas]
			delete(w.backlog, tasks.ServiceReplicas)
			w.down[tasks.ServiceReplicas] = false
			w.failNext[tasks.ServiceReplicas] = 1
			w.answer(backlog[0]) // attempt 1 fails: ignored
			if w.st.Aborted || w.st.Scale.Attempt != 2 {
				t.Fatalf("after attempt 1 failed: aborted %v, attempt %d", w.st.Aborted, w.st.Scale.Attempt)
			}
			w.answer(backlog[1]) // attempt 2 succeeds
			w.settle()
			w.expectPhase(events.PhasePaused)
			w.expectPods(map[int64]int32{1: 4, 2: 1})
		}},
		{"a deadline is judged when the message decided was stored, not when it is decided", func(t *testing.T, w *world) {
			// An orchestrator behind its own backlog decides at T+40s a
			// message stored at T+10s; the task's report, stored before
			// T+30s, waits behind it. The task is not given up on.
			w.m.Config = Config{TaskMaxAttempts: 1}
			ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
			start(w, ro)
			w.down[tasks.ServiceReplicas] = true
			sent := w.now
			w.request(image(ro, "web:2"))
			w.settle()
			w.now = sent.Add(40 * time.Second)
			w.apply(Observation{Tick: true, Stored: sent.Add(10 * time.Second)})
			w.expectPhase(events.PhaseProgressing)
			if wake, ok := w.st.NextWakeup(); !ok || !wake.Equal(sent.Add(30*time.Second)) {
				t.Fatalf("next wakeup %s %v, want the start deadline %s still reported", wake, ok, sent.Add(30*time.Second))
			}
			w.up(tasks.ServiceReplicas)
			w.settle()
			w.expectPhase(events.PhasePaused)
			// Stored at or after the deadline, a message fires it.
			w2 := newWorld(t, Config{TaskMaxAttempts: 1})
			start(w2, ro)
			w2.down[tasks.ServiceReplicas] = true
			w2.request(image(ro, "web:2"))
			w2.settle()
			w2.now = sent.Add(40 * time.Second)
			w2.apply(Observation{Tick: true, Stored: sent.Add(30 * time.Second)})
			w2.expectPhase(events.PhaseDegraded)
		}},
		{"the timeouts come from Config", func(t *testing.T, w *world) {
			w.m.Config = Config{TaskStartTimeout: 5 * time.Second, TaskMaxAttempts: 2}
			w.down[tasks.ServiceReplicas] = true
			w.request(nginxCanary(4))
			w.advance(9 * time.Second)
			w.expectPhase(events.PhaseProgressing)
			w.advance(time.Second)
			w.expectPhase(events.PhaseDegraded)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newWorld(t, Config{})) })
	}
}

// midUpdate returns a world paused in an update of a routed canary with a
// background analysis running, a scale task in flight and one of its
// earlier attempts outstanding.
func midUpdate(t testing.TB) (*world, tasks.Task) {
	w := newWorld(t, Config{})
	ro := nginxCanary(4, setWeight(25), pauseIndefinitely(), setWeight(50))
	ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate")}
	start(w, ro)
	w.request(image(ro, "web:2"))
	w.settle()
	w.down[tasks.ServiceReplicas] = true
	w.command(CommandPromote)
	w.advance(30 * time.Second) // the scale task of step 2 is sent again
	var first tasks.Task
	for _, tk := range w.sent {
		if tk.Scale != nil && tk.Attempt == 1 {
			first = tk
		}
	}
	return w, first
}

func TestIgnoredObservations(t *testing.T) {
	w, old := midUpdate(t)
	scale := w.st.Scale
	if scale.Attempt != 2 || old.ID != scale.ID {
		t.Fatalf("setup: scale task %s attempt %d, old %s", scale.ID, scale.Attempt, old.ID)
	}
	var run RunRecord
	for _, r := range w.st.Runs {
		run = r
	}
	sum := summary(run.Name, string(phaseRunning))
	other := nginxCanary(4)
	other.Name = "api"
	healthy := newWorld(t, Config{})
	start(healthy, nginxCanary(4))

	tests := []struct {
		name string
		w    *world
		obs  Observation
	}{
		{"finished for an unknown task", w, Observation{Finished: &tasks.Finished{TaskID: "shop/web/r2/scale/99", Attempt: 1, Outcome: tasks.OutcomeSucceeded}}},
		{"failed for an older attempt", w, Observation{Finished: &tasks.Finished{TaskID: scale.ID, Attempt: 1, Outcome: tasks.OutcomeFailed, Message: "quota exceeded"}}},
		{"finished for an attempt never sent", w, Observation{Finished: &tasks.Finished{TaskID: scale.ID, Attempt: 3, Outcome: tasks.OutcomeSucceeded}}},
		{"started for an attempt never sent", w, Observation{Started: &tasks.Started{TaskID: scale.ID, Attempt: 3}}},
		{"finished for attempt 0", w, Observation{Finished: &tasks.Finished{TaskID: scale.ID, Attempt: 0, Outcome: tasks.OutcomeSucceeded}}},
		{"stale outcome", w, Observation{Finished: &tasks.Finished{TaskID: scale.ID, Attempt: 2, Outcome: tasks.OutcomeStale}}},
		{"unknown outcome", w, Observation{Finished: &tasks.Finished{TaskID: scale.ID, Attempt: 2, Outcome: "Maybe"}}},
		{"finished for a task already done", w, Observation{Finished: &tasks.Finished{TaskID: w.st.Route.ID, Attempt: w.st.Route.Attempt, Outcome: tasks.OutcomeSucceeded}}},
		{"started for a task already started", w, Observation{Started: &tasks.Started{TaskID: run.Task.ID, Attempt: 1}}},
		{"finished for a scale task from the traffic service", w, Observation{From: tasks.ServiceTraffic, Finished: &tasks.Finished{TaskID: scale.ID, Attempt: 2, Outcome: tasks.OutcomeFailed}}},
		{"started for a scale task from the analyzer", w, Observation{From: tasks.ServiceAnalyzer, Started: &tasks.Started{TaskID: scale.ID, Attempt: 2}}},
		{"measured for an analysis run from the replicas service", w, Observation{From: tasks.ServiceReplicas, Measured: &tasks.Measured{TaskID: run.Task.ID, Index: 1, Analysis: sum}}},
		{"measured for an unknown task", w, Observation{Measured: &tasks.Measured{TaskID: "nope", Analysis: sum}}},
		{"measured without a new measurement", w, Observation{Measured: &tasks.Measured{TaskID: run.Task.ID, Analysis: events.AnalysisSummary{}}}},
		{"request for another rollout", w, Observation{Request: other}},
		{"request with nothing in it", w, Observation{Request: &spec.Rollout{}}},
		{"tick before any deadline", w, Observation{Tick: true}},
		{"empty observation", w, Observation{}},
		{"tick on a rollout nobody requested", newWorld(t, Config{}), Observation{Tick: true}},
		{"command on a rollout nobody requested", newWorld(t, Config{}), Observation{Command: &Command{Kind: CommandAbort}}},
		{"report on a rollout nobody requested", newWorld(t, Config{}), Observation{Finished: &tasks.Finished{TaskID: "x", Attempt: 1, Outcome: tasks.OutcomeSucceeded}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.w.t = t
			tt.w.ignored(tt.obs)
		})
	}
}

// TestRefusedCommands: a command that changes nothing is answered with one
// command.refused event naming it, its code and why, and changes nothing
// else.
func TestRefusedCommands(t *testing.T) {
	paused, _ := midUpdate(t)
	healthy := newWorld(t, Config{})
	start(healthy, nginxCanary(4))
	userPaused := newWorld(t, Config{})
	start(userPaused, nginxCanary(4, setWeight(25), pauseIndefinitely()))
	userPaused.request(image(nginxCanary(4, setWeight(25), pauseIndefinitely()), "web:2"))
	userPaused.settle()
	stepPaused := newWorld(t, Config{})
	start(stepPaused, nginxCanary(4, setWeight(25), pauseIndefinitely()))
	stepPaused.request(image(nginxCanary(4, setWeight(25), pauseIndefinitely()), "web:2"))
	stepPaused.settle()
	userPaused.command(CommandPause)
	userPaused.settle()

	tests := []struct {
		name       string
		w          *world
		cmd        Command
		code, text string
	}{
		{"retry when not aborted", paused, Command{Kind: CommandRetry}, events.RefusedNotApplicable, "nothing to retry: the update was not aborted and no task failed"},
		{"resume when paused by a step", stepPaused, Command{Kind: CommandResume}, events.RefusedNotApplicable, "not paused by an operator but by CanaryPauseStep: promote to go on, or abort"},
		{"unknown command", paused, Command{Kind: "explode"}, events.RefusedInvalid, `unknown command "explode"`},
		{"undo to the current revision", paused, Command{Kind: CommandUndo, ToRevision: 2}, events.RefusedNotApplicable, "revision 2 is already the current revision"},
		{"undo to a revision not kept", paused, Command{Kind: CommandUndo, ToRevision: 7}, events.RefusedInvalid, "cannot undo: revision 7 is not kept (revisions kept: 1 2)"},
		{"restart while the update is paused", userPaused, Command{Kind: CommandRestart}, events.RefusedNotApplicable, "the update is paused, and so is scaling: promote or resume it first"},
		{"pause when paused", userPaused, Command{Kind: CommandPause}, events.RefusedNotApplicable, "already paused"},
		{"abort with nothing to abort", healthy, Command{Kind: CommandAbort}, events.RefusedNotApplicable, "no update to abort: revision 1 is stable"},
		{"promote with nothing to promote", healthy, Command{Kind: CommandPromote}, events.RefusedNotApplicable, "nothing to promote: revision 1 is stable and no update is in progress"},
		{"promote full with nothing to promote", healthy, Command{Kind: CommandPromote, Full: true}, events.RefusedNotApplicable, "nothing to promote: revision 1 is stable and no update is in progress"},
		{"resume when not paused", healthy, Command{Kind: CommandResume}, events.RefusedNotApplicable, "not paused"},
		{"undo with no earlier revision", healthy, Command{Kind: CommandUndo}, events.RefusedInvalid, "cannot undo: there is no revision before the current one (revisions kept: 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w
			w.t = t
			before := w.st
			cause := Cause{ID: "cmd-" + tt.cmd.Kind, Type: "io.sluice.rollout." + tt.cmd.Kind + ".v1", Actor: "user:alice"}
			next, effects := w.m.Next(before, Observation{Command: &tt.cmd, Cause: cause}, w.now)
			if len(effects) != 1 || effects[0].Status == nil || effects[0].Status.Type != events.TypeRolloutRefused {
				t.Fatalf("effects %+v, want one command.refused", effects)
			}
			ev := effects[0].Status
			want := events.CommandAnswer{Type: cause.Type, ID: cause.ID, Code: tt.code, Reason: tt.text}
			if ev.Data.Command == nil || *ev.Data.Command != want {
				t.Fatalf("answer %+v, want %+v", ev.Data.Command, want)
			}
			if ev.Cause != cause {
				t.Fatalf("cause %+v, want %+v", ev.Cause, cause)
			}
			if ev.Data.Status.Name != before.Ref.Name || ev.Data.Status.Revision != before.Revision {
				t.Fatalf("snapshot %+v is not the rollout's", ev.Data.Status)
			}
			next.Version, next.EvaluatedAt = before.Version, before.EvaluatedAt
			if !next.sameJSON(&before) {
				t.Fatalf("a refused command changed the state")
			}
		})
	}
}
