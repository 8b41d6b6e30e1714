package machine

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// cmd applies a command sent by alice with id and returns its cause.
func (w *world) cmd(c Command, id string) Cause {
	w.t.Helper()
	cause := Cause{ID: id, Type: "io.sluice.rollout." + c.Kind + ".v1", Actor: "user:alice"}
	w.apply(Observation{Command: &c, Cause: cause})
	return cause
}

// requestAs applies a request with the event id id.
func (w *world) requestAs(ro *spec.Rollout, id string) {
	w.t.Helper()
	w.apply(Observation{Request: ro, Cause: Cause{ID: id, Type: events.TypeRolloutRequested, Actor: "ci:github/acme/shop"}})
}

// caused returns the types of the events since mark that carry cause.
func (w *world) caused(mark int, cause Cause) []string {
	var out []string
	for _, e := range w.events[mark:] {
		if e.Cause == cause {
			out = append(out, shortType(e.Type))
		}
	}
	return out
}

func TestAnswersCarryTheirCause(t *testing.T) {
	w := newWorld(t, Config{})
	ro := nginxCanary(4, setWeight(25), pauseIndefinitely(), setWeight(50), pauseIndefinitely())
	w.requestAs(ro, "req-1")
	w.settle()
	m := w.mark()
	w.requestAs(image(ro, "web:2"), "req-2")
	w.settle()
	w.expectPhase(events.PhasePaused)
	for _, e := range w.events[m:] {
		if e.Correlation != "req-2" {
			t.Fatalf("%s has correlation %q, want the request's id req-2", e.Type, e.Correlation)
		}
	}
	if got := w.caused(m, Cause{ID: "req-2", Type: events.TypeRolloutRequested, Actor: "ci:github/acme/shop"}); len(got) == 0 || got[0] != "rollout.accepted" {
		t.Fatalf("events caused by the request: %v", got)
	}

	m = w.mark()
	promote := w.cmd(Command{Kind: CommandPromote}, "cmd-1")
	if got := w.caused(m, promote); len(got) == 0 || got[0] != "rollout.resumed" {
		t.Fatalf("promote's answer: %v (all: %v)", got, w.since(m))
	}
	w.settle()

	// The abort is answered once traffic is back on stable, which takes a
	// route task: the aborted event that comes then carries the command.
	m = w.mark()
	abort := w.cmd(Command{Kind: CommandAbort}, "cmd-2")
	if got := w.caused(m, abort); len(got) != 0 {
		t.Fatalf("aborted before traffic moved back: %v", got)
	}
	w.settle()
	if got := w.caused(m, abort); len(got) != 1 || got[0] != "rollout.aborted" {
		t.Fatalf("abort's answer: %v (all: %v)", got, w.since(m))
	}
	if ev := w.lastEvent("rollout.aborted"); ev.Correlation != "req-2" || ev.Data.Status.CanaryWeight != 0 {
		t.Fatalf("aborted event: correlation %q, canary weight %d", ev.Correlation, ev.Data.Status.CanaryWeight)
	}

	// retry's resumed event shows the update going again, not aborted.
	m = w.mark()
	retry := w.cmd(Command{Kind: CommandRetry}, "cmd-3")
	if got := w.caused(m, retry); len(got) < 1 || got[0] != "rollout.resumed" {
		t.Fatalf("retry's answer: %v", got)
	}
	if s := w.lastEvent("rollout.resumed").Data.Status; s.Aborted || s.Phase == events.PhaseDegraded {
		t.Fatalf("resumed after retry shows %s, aborted %v", s.Phase, s.Aborted)
	}
}

func TestRestart(t *testing.T) {
	t.Run("command: the stable pods are replaced within maxUnavailable, then restarted answers", func(t *testing.T) {
		w := newWorld(t, Config{})
		start(w, nginxCanary(8, setWeight(25)))
		sent := len(w.sent)
		m := w.mark()
		restart := w.cmd(Command{Kind: CommandRestart}, "r-1")
		var scale *tasks.Task
		for _, tk := range w.sent[sent:] {
			if tk.Scale != nil {
				scale = &tk
			}
		}
		if scale == nil || len(scale.Scale.Revisions) != 1 {
			t.Fatalf("no scale task for the restart: %+v", w.sent[sent:])
		}
		rv := scale.Scale.Revisions[0]
		if !rv.RestartAt.Equal(w.now) || rv.MaxUnavailable != 2 || rv.Replicas != 8 {
			t.Fatalf("restart task: restartAt %s (now %s), maxUnavailable %d (25%% of 8), replicas %d", rv.RestartAt, w.now, rv.MaxUnavailable, rv.Replicas)
		}
		w.cmd(Command{Kind: CommandRestart}, "r-2")
		if c := w.lastEvent("rollout.command.refused").Data.Command; c == nil || c.ID != "r-2" || c.Code != events.RefusedNotApplicable {
			t.Fatalf("a second restart while one runs: %+v", c)
		}
		w.settle()
		if got := w.caused(m, restart); len(got) != 1 || got[0] != "rollout.restarted" {
			t.Fatalf("restart's answer: %v (all %v)", got, w.since(m))
		}
		w.expectPhase(events.PhaseHealthy)
	})

	t.Run("spec.restartAt: past at once, future when it comes, the same time never again", func(t *testing.T) {
		w := newWorld(t, Config{})
		ro := nginxCanary(4, setWeight(25))
		start(w, ro)
		past := image(ro, ro.Spec.Template.Spec.Containers[0].Image)
		past.Spec.RestartAt = &metav1.Time{Time: w.now.Add(-time.Minute)}
		m := w.mark()
		w.requestAs(past, "req-past")
		w.settle()
		w.expectEvents(m, "rollout.accepted", "rollout.restarted")

		future := image(ro, ro.Spec.Template.Spec.Containers[0].Image)
		future.Spec.RestartAt = &metav1.Time{Time: w.now.Add(time.Hour)}
		m = w.mark()
		w.requestAs(future, "req-future")
		w.settle()
		w.expectEvents(m, "rollout.accepted")
		w.advance(time.Hour)
		w.settle()
		w.expectEvents(m, "rollout.accepted", "rollout.restarted")
		if ev := w.lastEvent("rollout.restarted"); ev.Cause.ID != "req-future" {
			t.Fatalf("restarted answers %q, want the request that set restartAt", ev.Cause.ID)
		}
		m = w.mark()
		w.requestAs(future, "req-again")
		w.settle()
		w.expectEvents(m, "rollout.accepted")
	})
}

func TestDelete(t *testing.T) {
	w := newWorld(t, Config{})
	ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
	ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate")}
	start(w, ro)
	w.request(image(ro, "web:2"))
	w.settle()
	w.expectPhase(events.PhasePaused)
	seq := w.st.Seq
	sent := len(w.sent)
	m := w.mark()
	del := w.cmd(Command{Kind: CommandDelete}, "d-1")
	w.cmd(Command{Kind: CommandPromote}, "p-1")
	if c := w.lastEvent("rollout.command.refused").Data.Command; c == nil || c.ID != "p-1" || c.Reason != "the rollout is being deleted" {
		t.Fatalf("promote while deleting: %+v", c)
	}
	var scale, route *tasks.Task
	for _, tk := range w.sent[sent:] {
		switch {
		case tk.Scale != nil:
			scale = &tk
		case tk.Route != nil:
			route = &tk
		}
	}
	if scale == nil || !scale.Scale.Remove || len(scale.Scale.Revisions) != 2 {
		t.Fatalf("delete's scale task: %+v", scale)
	}
	for _, rv := range scale.Scale.Revisions {
		if rv.Replicas != 0 {
			t.Fatalf("revision %d kept %d replicas", rv.Revision, rv.Replicas)
		}
	}
	if route == nil || !route.Route.Remove {
		t.Fatalf("delete's route task: %+v", route)
	}
	w.settle()
	if got := w.caused(m, del); len(got) != 1 || got[0] != "rollout.deleted" {
		t.Fatalf("delete's answer: %v (all %v)", got, w.since(m))
	}
	if ev := w.lastEvent("analysis.completed"); ev.Data.Analysis.Phase != events.AnalysisTerminated {
		t.Fatalf("the background run stopped by the deletion reads %s", ev.Data.Analysis.Phase)
	}
	if w.st.Revision != 0 || w.st.Ref.Name != "web" || w.st.Seq.Replicas <= seq.Replicas {
		t.Fatalf("after delete: revision %d, ref %v, seq %+v (was %+v)", w.st.Revision, w.st.Ref, w.st.Seq, seq)
	}
	if _, ok := w.st.NextWakeup(); ok {
		t.Fatalf("a deleted rollout still has a deadline")
	}

	w.cmd(Command{Kind: CommandAbort}, "a-1")
	if c := w.lastEvent("rollout.command.refused").Data.Command; c == nil || c.ID != "a-1" || c.Code != events.RefusedNotFound {
		t.Fatalf("abort after delete: %+v", c)
	}
	m = w.mark()
	w.request(ro)
	w.settle()
	w.expectPhase(events.PhaseHealthy)
	if s := w.snap(); s.Revision != 1 {
		t.Fatalf("a new request after delete starts at revision %d, want 1", s.Revision)
	}
}

func TestStatusTellsTheTruth(t *testing.T) {
	t.Run("an analysis stopped by abort reads Terminated, not Successful", func(t *testing.T) {
		w := newWorld(t, Config{})
		ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
		ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate")}
		start(w, ro)
		w.request(image(ro, "web:2"))
		w.settle()
		w.command(CommandAbort)
		w.settle()
		ev := w.lastEvent("analysis.completed")
		if a := ev.Data.Analysis; a.Phase != events.AnalysisTerminated || a.Message != "terminated before a verdict: the update was aborted" {
			t.Fatalf("analysis %+v", a)
		}
		if a := w.snap().Analysis; a == nil || a.Phase != events.AnalysisTerminated {
			t.Fatalf("snapshot analysis %+v", a)
		}
	})
	t.Run("undo clears the previous revision's analysis", func(t *testing.T) {
		w := newWorld(t, Config{})
		ro := nginxCanary(4, setWeight(25), pauseIndefinitely())
		ro.Spec.Strategy.Canary.Analysis = &spec.RolloutAnalysisBackground{RolloutAnalysis: *analysisRef("error-rate")}
		start(w, ro)
		w.request(image(ro, "web:2"))
		w.settle()
		w.apply(Observation{Command: &Command{Kind: CommandPromote, Full: true}})
		w.settle()
		if w.snap().Analysis == nil {
			t.Fatalf("setup: no analysis shown")
		}
		w.command(CommandUndo)
		if a := w.lastEvent("rollout.accepted").Data.Status.Analysis; a != nil {
			t.Fatalf("undo's accepted event shows the old analysis %+v", a)
		}
	})
}
