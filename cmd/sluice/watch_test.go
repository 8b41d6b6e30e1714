package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/replicas/local"
)

// pausedView is a canary at step 2 of 3 (pause 30s), 10 s into the pause,
// with traffic still at 20% of the 40% asked.
func pausedView(now time.Time) view {
	step := int32(1)
	return view{
		snapshot: events.Snapshot{Namespace: "default", Name: "web", Strategy: "canary", Phase: events.PhasePaused,
			Revision: 2, StableRevision: 1, PodHash: "bbb", StablePodHash: "aaa", StepIndex: &step, StepCount: 3,
			CanaryWeight: 20, StableWeight: 80,
			PauseConditions: []events.PauseCondition{{Reason: "CanaryPauseStep", StartTime: now.Add(-10 * time.Second)}}},
		steps:  map[int32]string{0: "setWeight 40", 1: "pause 30s"},
		listen: "127.0.0.1:8080",
		processes: []local.Process{
			{Revision: 2, PodHash: "bbb", Slot: 0, PID: 4242, Port: 41001, Ready: true, Restarts: 2, StartedAt: now.Add(-time.Minute), Command: []string{"bin/demoapp"}, Image: "demoapp:2"},
			{Revision: 1, PodHash: "aaa", Slot: 0, PID: 4141, Port: 41000, Ready: false, StartedAt: now.Add(-time.Hour), Command: []string{"bin/demoapp"}},
		},
	}
}

func TestGetShowsCountdownWeightsProxyAndProcesses(t *testing.T) {
	now := time.Now()
	var b strings.Builder
	renderSnapshot(&b, frame{view: pausedView(now), now: now})
	out := squeeze(b.String())
	for _, want := range []string{
		"॥ Paused (CanaryPauseStep): resumes in 20s",
		"Step: 2/3 (pause 30s)",
		"canary 20%, stable 80% (set 40%, traffic not there yet)",
		"Proxy: http://127.0.0.1:8080",
		"├─ revision 2 (hash bbb, canary)",
		"bbb-0 pid 4242 port 41001 ready restarts 2 up 1m0s demoapp:2 bin/demoapp",
		"└─ revision 1 (hash aaa, stable)",
		"aaa-0 pid 4141 port 41000 not ready restarts 0",
	} {
		if !strings.Contains(out, squeeze(want)) {
			t.Errorf("get lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "\x1b[") {
		t.Errorf("uncoloured output has escape sequences:\n%q", b.String())
	}
}

// An experiment template's processes are shown apart from the revision
// whose pod hash they share, under the experiment's and template's names.
func TestGetShowsExperimentProcessesApartFromTheirRevision(t *testing.T) {
	now := time.Now()
	v := pausedView(now)
	v.processes = append(v.processes, local.Process{Revision: 1, PodHash: "aaa", Experiment: &tasks.ExperimentPods{Name: "web-bbb-2-1", Template: "baseline"},
		PID: 4343, Port: 41002, Ready: true, StartedAt: now.Add(-time.Minute), Command: []string{"bin/demoapp"}})
	var b strings.Builder
	renderSnapshot(&b, frame{view: v, now: now})
	out := squeeze(b.String())
	for _, want := range []string{
		"├─ revision 1 (hash aaa, stable) │ └─ aaa-0 pid 4141",
		"└─ experiment web-bbb-2-1 template baseline (hash aaa) └─ web-bbb-2-1-baseline-0 pid 4343 port 41002 ready",
	} {
		if !strings.Contains(out, squeeze(want)) {
			t.Errorf("get lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWatchRedrawsInPlaceWithColourOnATerminal(t *testing.T) {
	var b systemtest.Logs
	d := display{out: &b, redraw: true, paint: true, stateDir: t.TempDir(), ref: events.Ref{Namespace: "default", Name: "web"}}
	v := pausedView(time.Now())
	for range 2 {
		if err := d.show(v, "ignored on a terminal"); err != nil {
			t.Fatal(err)
		}
	}
	frames := strings.Split(b.String(), ansiHome)
	if len(frames) != 3 || frames[0] != "" || strings.Contains(b.String(), "ignored on a terminal") {
		t.Errorf("want two frames, each drawn from the top left:\n%q", b.String())
	}
	for _, f := range frames[1:] {
		if !strings.HasSuffix(f, ansiClearBelow) || !strings.Contains(f, "Name:") || strings.Contains(strings.ReplaceAll(f, ansiClearLine+"\n", ""), "\n") {
			t.Errorf("a frame does not overwrite the previous one line by line:\n%q", f)
		}
	}
	if !strings.Contains(frames[1], ansiYellow+"॥ Paused"+ansiReset) {
		t.Errorf("the phase is not in its colour:\n%q", frames[1])
	}
}

func TestGetWatchOnAPipeAppendsFramesOrJSONLines(t *testing.T) {
	url := startSystem(t)
	c := eventstest.Connect(t, url)
	r := events.Ref{Namespace: "default", Name: "web"}
	snap := events.Snapshot{Namespace: "default", Name: "web", Phase: events.PhaseProgressing, Revision: 1}
	publishStatus(t, c, r, events.TypeRolloutAccepted, events.StatusData{Status: snap}, nil)

	text := following(t, url, "get", "web", "--watch")
	js := following(t, url, "get", "web", "--watch", "-o", "json")
	poll.Until(t, "both watchers showing the rollout", func() error {
		if !strings.Contains(text.String(), "◌ Progressing") || !strings.Contains(js.String(), `"phase":"Progressing"`) {
			return fmt.Errorf("text:\n%s\njson:\n%s", text, js)
		}
		return nil
	})
	snap.Phase = events.PhaseHealthy
	publishStatus(t, c, r, events.TypeRolloutCompleted, events.StatusData{Status: snap}, map[string]string{events.ExtActor: "user:bob"})
	poll.Until(t, "both watchers showing the completion", func() error {
		if !strings.Contains(text.String(), "completed by user:bob") || strings.Count(js.String(), "\n") < 2 {
			return fmt.Errorf("text:\n%s\njson:\n%s", text, js)
		}
		return nil
	})
	if strings.Contains(text.String(), "\x1b") {
		t.Errorf("output that is not a terminal has escape sequences:\n%q", text)
	}
	lines := jsonLines[getJSON](t, js.String())
	if last := lines[len(lines)-1]; last.Status.Phase != events.PhaseHealthy || last.LastEvent.Actor != "user:bob" {
		t.Errorf("last JSON line: %+v", last)
	}
}
