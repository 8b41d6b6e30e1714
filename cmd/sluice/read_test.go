package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// following runs a following command (events, get --watch) until the test
// ends and returns its output so far on each call.
func following(t *testing.T, url string, args ...string) *systemtest.Logs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &systemtest.Logs{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, append(args, "--nats-url", url), out, out)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

// jsonLines decodes every line of out into a fresh T.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var vs []T
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("not one JSON object per line: %v\n%s", err, out)
		}
		vs = append(vs, v)
	}
	return vs
}

// publishStatus publishes a status event for r as the orchestrator would,
// with the given extensions.
func publishStatus(t *testing.T, c *events.Client, r events.Ref, typ string, d events.StatusData, ext map[string]string) events.Event {
	t.Helper()
	ev, err := events.New("/sluice/orchestrator", typ, r.String(), d)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range ext {
		if err := ev.Context.SetExtension(k, v); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	if _, err := c.Publish(ctx, events.StatusSubject(r), ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestReadCommandsTakeOutputJSONAndNamespaces(t *testing.T) {
	url := startSystem(t)
	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:1"), "--wait", "--timeout", "20s"); code != exitOK {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}

	code, out := sluice(t, url, "get", "web", "-o", "json")
	got := jsonLines[getJSON](t, out)
	if code != exitOK || len(got) != 1 || got[0].Status.Name != "web" || got[0].Status.Phase != events.PhaseHealthy || got[0].LastEvent == nil {
		t.Errorf("get -o json: exit %d\n%s", code, out)
	}

	code, out = sluice(t, url, "list", "-o", "json")
	if l := jsonLines[getJSON](t, out); code != exitOK || len(l) != 1 || l[0].Status.Name != "web" {
		t.Errorf("list -o json: exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "list", "-n", "prod"); code != exitOK || strings.Contains(out, "web") {
		t.Errorf("list -n prod shows default's rollout: exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "list", "-A"); code != exitOK || !strings.Contains(squeeze(out), "default web") {
		t.Errorf("list -A: exit %d\n%s", code, out)
	}

	code, out = sluice(t, url, "history", "web", "-o", "json")
	var types []string
	for _, e := range jsonLines[map[string]any](t, out) {
		types = append(types, fmt.Sprint(e["type"]))
	}
	if code != exitOK || len(types) == 0 || types[0] != events.TypeRolloutRequested || types[len(types)-1] != events.TypeRolloutCompleted {
		t.Errorf("history web -o json: exit %d, types %v", code, types)
	}
	if code, out := sluice(t, url, "history", "other", "-n", "prod"); code != exitFail || !strings.Contains(out, "no events for rollout prod/other") {
		t.Errorf("history -n prod: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"get", "web", "-o", "yaml"}, {"list", "-o", "wide"}} {
		if code, out := sluice(t, url, args...); code != exitUsage || !strings.Contains(out, "want text or json") {
			t.Errorf("sluice %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
}

func TestEventsFollowsARolloutANamespaceOrAll(t *testing.T) {
	url := startSystem(t)
	c := eventstest.Connect(t, url)
	ns := following(t, url, "events", "-n", "prod", "-o", "json")
	all := following(t, url, "events", "-A")
	one := following(t, url, "events", "web", "-n", "prod")
	// The followers start at the stream's end: wait until each is
	// subscribed, by an event all of them see.
	web := events.Ref{Namespace: "prod", Name: "web"}
	poll.Until(t, "every follower following", func() error {
		publishStatus(t, c, web, events.TypeRolloutResumed, events.StatusData{Status: events.Snapshot{Namespace: "prod", Name: "web", Phase: events.PhaseProgressing}}, nil)
		for _, o := range []*systemtest.Logs{ns, all, one} {
			if !strings.Contains(o.String(), "resumed") {
				return fmt.Errorf("not yet: %q", o.String())
			}
		}
		return nil
	}, poll.Every(200*time.Millisecond))

	publishStatus(t, c, events.Ref{Namespace: "default", Name: "web"}, events.TypeRolloutPaused, events.StatusData{Status: events.Snapshot{Namespace: "default", Name: "web", Phase: events.PhasePaused}}, nil)
	publishStatus(t, c, events.Ref{Namespace: "prod", Name: "api"}, events.TypeRolloutCompleted, events.StatusData{Status: events.Snapshot{Namespace: "prod", Name: "api", Phase: events.PhaseHealthy}}, nil)
	publishStatus(t, c, web, events.TypeRolloutCompleted, events.StatusData{Status: events.Snapshot{Namespace: "prod", Name: "web", Phase: events.PhaseHealthy}}, nil)

	poll.Until(t, "prod/web's completion everywhere", func() error {
		if !strings.Contains(all.String(), "prod/web") || strings.Count(all.String(), "rollout.completed.v1") < 2 ||
			!strings.Contains(one.String(), "rollout.completed.v1") || strings.Count(ns.String(), events.TypeRolloutCompleted) < 2 {
			return fmt.Errorf("-A:\n%s\n-n prod:\n%s\nweb -n prod:\n%s", all, ns, one)
		}
		return nil
	})
	// default/web's event came before the completions each follower has.
	if !strings.Contains(all.String(), "default/web") {
		t.Errorf("-A lacks default/web:\n%s", all)
	}
	if strings.Contains(ns.String(), "default/web") {
		t.Errorf("-n prod shows default/web:\n%s", ns)
	}
	if strings.Contains(one.String(), "prod/api") || strings.Contains(one.String(), "default/web") {
		t.Errorf("events web -n prod shows other rollouts:\n%s", one)
	}
	for _, e := range jsonLines[map[string]any](t, ns.String()) {
		if e["specversion"] != "1.0" || !strings.HasPrefix(fmt.Sprint(e["subject"]), "prod/") {
			t.Errorf("-o json line is not a structured CloudEvent of prod: %v", e)
		}
	}
}

func TestHistoryAndGetSayWhoDidWhat(t *testing.T) {
	url := startSystem(t)
	c := eventstest.Connect(t, url)
	r := events.Ref{Namespace: "default", Name: "shop"}
	step := int32(1)
	snap := events.Snapshot{Namespace: "default", Name: "shop", Phase: events.PhaseHealthy, Revision: 2, StableRevision: 2, StepIndex: &step, StepCount: 2}
	publishStatus(t, c, r, events.TypeRolloutCompleted, events.StatusData{Status: snap}, nil)
	publishStatus(t, c, r, events.TypeRolloutRestarted, events.StatusData{Status: snap, Reason: "restart requested"},
		map[string]string{events.ExtActor: "user:alice", events.ExtCausationID: "cmd-restart-1"})
	publishStatus(t, c, r, events.TypeRolloutRefused, events.StatusData{Status: snap, Command: &events.CommandAnswer{
		Type: events.TypeRolloutPromote, ID: "cmd-promote-2", Code: events.RefusedNotApplicable, Reason: "nothing to promote: the rollout is Healthy"}},
		map[string]string{events.ExtActor: "ci:github/acme/shop", events.ExtCausationID: "cmd-promote-2"})

	code, out := sluice(t, url, "history", "shop")
	for _, want := range []string{
		"rollout.restarted.v1", "restart requested  by user:alice (command cmd-restart-1)",
		"rollout.command.refused.v1", "promote refused (NotApplicable): nothing to promote: the rollout is Healthy  by ci:github/acme/shop (command cmd-promote-2)",
	} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("history lacks %q: exit %d\n%s", want, code, out)
		}
	}
	code, out = sluice(t, url, "get", "shop")
	for _, want := range []string{"Last event:", "command refused by ci:github/acme/shop (command cmd-promote-2)",
		"Refused: promote refused (NotApplicable): nothing to promote: the rollout is Healthy", "✔ Healthy"} {
		if code != exitOK || !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("get lacks %q: exit %d\n%s", want, code, out)
		}
	}

	// A command for a rollout that never existed is refused with no
	// snapshot: get says so, and list leaves it out.
	nosuch := events.Ref{Namespace: "default", Name: "nosuch"}
	publishStatus(t, c, nosuch, events.TypeRolloutRefused, events.StatusData{Status: events.Snapshot{Namespace: "default", Name: "nosuch"},
		Command: &events.CommandAnswer{Type: events.TypeRolloutAbort, ID: "x", Code: events.RefusedNotFound, Reason: "no rollout default/nosuch"}}, nil)
	if code, out := sluice(t, url, "get", "nosuch"); code != exitFail || !strings.Contains(out, "rollout default/nosuch not found; the latest command for it: abort refused (NotFound)") {
		t.Errorf("get of a refused unknown rollout: exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "list"); code != exitOK || strings.Contains(out, "nosuch") || !strings.Contains(out, "shop") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
}

func TestListPutsTheReasonFirst(t *testing.T) {
	tests := []struct{ message, want string }{
		{
			"RolloutAborted: Rollout aborted update to revision 3: replicas task default/web/r3/scale/7 failed (3 attempts): revision 3 (hash 5d8f): 0 of 2 processes ready",
			"revision 3 (hash 5d8f): 0 of 2 processes ready (replicas task failed, 3 attempts) (aborted revision 3)",
		},
		{
			"no traffic worker took task prod/web/r2/route/4 within 30s (3 attempts); is the traffic service running?",
			"no traffic worker took task within 30s (3 attempts); is the traffic service running?",
		},
		// The orchestrator's newer form: the reason first, the task after.
		{
			"RolloutAborted: Rollout aborted update to revision 3: revision 3 (hash 5d8f): 0 of 2 processes ready (replicas task default/web/r3/scale/7, 3 attempts)",
			"revision 3 (hash 5d8f): 0 of 2 processes ready (replicas task, 3 attempts) (aborted revision 3)",
		},
		{
			"no replicas worker took the task within 30s: is the replicas service running? (task prod/web/r2/scale/4, 3 attempts)",
			"no replicas worker took the task within 30s: is the replicas service running? (3 attempts)",
		},
		{
			"no replicas worker took the task within 30s: is the replicas service running? If it is only busy, raise the orchestrator's --task-start-timeout (task prod/web/r2/scale/4, 3 attempts)",
			"no replicas worker took the task within 30s: is the replicas service running? If it is only busy, raise the orchestrator's --task-start-timeout (3 attempts)",
		},
		{"manually paused", "manually paused"},
	}
	for _, tt := range tests {
		if got := readableMessage(tt.message); got != tt.want {
			t.Errorf("readableMessage(%q)\n got %q\nwant %q", tt.message, got, tt.want)
		}
	}
	for _, tt := range []struct {
		s     string
		width int
		want  string
	}{
		{"short enough", 20, "short enough"},
		{"revision 3 (hash 5d8f): 0 of 2 processes ready", 30, "revision 3 (hash 5d8f): 0 of…"},
		{"nospacesatallinthisverylongword", 10, "nospacesa…"},
	} {
		if got := truncate(tt.s, tt.width); got != tt.want || len([]rune(got)) > tt.width {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.s, tt.width, got, tt.want)
		}
	}
}

func TestLogsPrintsAndFollowsEachProcess(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, "replicas", "default", "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
	}
	write("aaa-0", "listening on 8081\n")
	write("aaa-1", "listening on 8082\nhalf a li")

	var out strings.Builder
	if code := run(context.Background(), []string{"logs", "web", "--state-dir", state}, &out, &out); code != exitOK {
		t.Fatalf("logs: exit %d\n%s", code, out.String())
	}
	if want := "[aaa-0] listening on 8081\n[aaa-1] listening on 8082\n[aaa-1] half a li\n"; out.String() != want {
		t.Errorf("logs printed\n%s\nwant\n%s", out.String(), want)
	}

	f := following(t, "nats://unused:4222", "logs", "web", "-f", "--pod", "aaa-1", "--state-dir", state)
	poll.Until(t, "logs -f printing what is there", func() error {
		if !strings.Contains(f.String(), "[aaa-1] listening on 8082") {
			return fmt.Errorf("output %q", f.String())
		}
		return nil
	})
	write("aaa-1", "ne, finished\nnext\n")
	write("aaa-0", "not this process\n")
	poll.Until(t, "logs -f printing new output", func() error {
		if !strings.Contains(f.String(), "[aaa-1] half a line, finished\n[aaa-1] next\n") {
			return fmt.Errorf("output %q", f.String())
		}
		return nil
	})
	if strings.Contains(f.String(), "aaa-0") {
		t.Errorf("--pod aaa-1 printed another process:\n%s", f.String())
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "other", "--state-dir", state}, "no processes of default/other under " + state},
		{[]string{"logs", "web", "--pod", "bbb-0", "--state-dir", state}, `default/web has no process "bbb-0"; it has aaa-0, aaa-1`},
	} {
		var out strings.Builder
		if code := run(context.Background(), tt.args, &out, &out); code != exitFail || !strings.Contains(out.String(), tt.want) {
			t.Errorf("sluice %s: exit %d\n%s", strings.Join(tt.args, " "), code, out.String())
		}
	}
}

func TestCompletionCompletesRolloutNames(t *testing.T) {
	url := startSystem(t)
	c := eventstest.Connect(t, url)
	for _, r := range []events.Ref{{Namespace: "default", Name: "web"}, {Namespace: "default", Name: "worker"}, {Namespace: "prod", Name: "web"}} {
		publishStatus(t, c, r, events.TypeRolloutCompleted, events.StatusData{Status: events.Snapshot{Namespace: r.Namespace, Name: r.Name, Phase: events.PhaseHealthy}}, nil)
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"get", "w"}, []string{"web", "worker"}},
		{[]string{"history", "-n", "prod", ""}, []string{"web"}},
		{[]string{"logs", "prod/"}, []string{"prod/web"}},
		{[]string{"promote", "wo"}, []string{"worker"}},
		{[]string{"delete", "-n", "prod", "w"}, []string{"web"}},
		{[]string{"get", "web", ""}, nil},
	} {
		// The word completed comes last: the NATS flag goes before it.
		code, out := complete(url, tt.args...)
		var names []string
		for _, l := range strings.Split(out, "\n") {
			if l != "" && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "Completion ended") {
				names = append(names, l)
			}
		}
		if code != exitOK || strings.Join(names, ",") != strings.Join(tt.want, ",") {
			t.Errorf("sluice %s: exit %d, completes %v, want %v\n%s", strings.Join(tt.args, " "), code, names, tt.want, out)
		}
	}
	// Without NATS, nothing is completed and nothing is said.
	if code, out := complete("nats://"+freeAddr(t), "get", ""); code != exitOK || strings.Contains(out, "NATS") {
		t.Errorf("completion without NATS: exit %d\n%s", code, out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if code, out := sluice(t, url, "completion", shell); code != exitOK || !strings.Contains(out, "sluice") {
			t.Errorf("completion %s: exit %d", shell, code)
		}
	}
}

// complete runs the shell completion of args against url.
func complete(url string, args ...string) (int, string) {
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, append([]string{"__complete", "--nats-url", url}, args...), &out, &out)
	return code, out.String()
}

// get and list show the status as the orchestrator holds it now, not as
// the latest event said: a scale-down reported after it changes the
// counts without an event.
func TestGetAndListShowTheStatusHeldNow(t *testing.T) {
	url := startSystem(t)
	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:1"), "--wait", "--timeout", "20s"); code != exitOK {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	c := eventstest.Connect(t, url)
	stale := events.Snapshot{Namespace: "default", Name: "web", Phase: events.PhaseHealthy, Revision: 1, StableRevision: 1,
		Replicas: events.Replicas{Desired: 4, Current: 9, Updated: 9, Ready: 9, Available: 9}}
	publishStatus(t, c, events.Ref{Namespace: "default", Name: "web"}, events.TypeRolloutResumed, events.StatusData{Status: stale}, nil)

	code, out := sluice(t, url, "get", "web")
	if code != exitOK || !strings.Contains(out, "desired 4, current 4, updated 4, ready 4, available 4") || !strings.Contains(out, "resumed") {
		t.Errorf("get shows the latest event's counts, not the record's: exit %d\n%s", code, out)
	}
	code, out = sluice(t, url, "list", "-o", "json")
	if l := jsonLines[getJSON](t, out); code != exitOK || len(l) != 1 || l[0].Status.Replicas.Current != 4 {
		t.Errorf("list -o json: exit %d\n%s", code, out)
	}
}
