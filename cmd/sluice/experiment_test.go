package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

const experimentManifest = `apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata:
  name: exp
spec:
  DURATION
  templates:
  - name: baseline
    selector: {matchLabels: {app: web, role: baseline}}
    template:
      metadata: {labels: {app: web, role: baseline}}
      spec: {containers: [{name: web, image: web:1}]}
  - name: canary
    selector: {matchLabels: {app: web, role: canary}}
    template:
      metadata: {labels: {app: web, role: canary}}
      spec: {containers: [{name: web, image: web:2}]}
`

// experimentStatus is exp's status in phase, with its two templates and
// runs.
func experimentStatus(phase, message string, available int32, runs ...events.RunSummary) events.StatusData {
	return events.StatusData{Status: events.Snapshot{
		Kind: events.KindExperiment, Namespace: "default", Name: "exp", Phase: phase, Message: message, Runs: runs,
		Experiment: &events.ExperimentSummary{Name: "exp", Templates: []events.ExperimentTemplateSummary{
			{Name: "baseline", ReplicaSet: "exp-baseline", PodHash: "aaa", Replicas: 1, Available: available},
			{Name: "canary", ReplicaSet: "exp-canary", PodHash: "bbb", Replicas: 1, Available: available, Service: "exp-canary"},
		}},
	}}
}

// statusReply is one status event an orchestrator stand-in answers a
// command with.
type statusReply struct {
	typ string
	d   events.StatusData
}

// answerCommands stands in for the orchestrator at the bus: every command
// published for r is answered with the status events reply returns for
// it, each carrying the command's id as causationid and its actor.
func answerCommands(t *testing.T, c *events.Client, r events.Ref, reply func(cmd events.Event) []statusReply) {
	t.Helper()
	sub, err := c.Conn().Subscribe(events.CommandSubject(r), func(m *nats.Msg) {
		cmd, err := events.Decode(m.Data, m.Header)
		if err != nil {
			t.Error(err)
			return
		}
		for _, s := range reply(cmd) {
			publishStatus(t, c, r, s.typ, s.d, map[string]string{
				events.ExtCausationID: cmd.ID(), events.ExtActor: events.Extension(cmd, events.ExtActor)})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// apply --wait of an Experiment publishes experiment.requested and exits
// 0 on a Successful verdict, printing its progress, and 1 with the reason
// on any other verdict or a rejection.
func TestApplyWaitsForAnExperimentsVerdict(t *testing.T) {
	url := eventstest.StartServer(t).ClientURL()
	c := eventstest.Connect(t, url)
	exp := events.Ref{Namespace: "default", Name: "exp"}
	verdict := map[string]statusReply{
		"5m": {events.TypeExperimentCompleted, experimentStatus(events.ExperimentPhaseSuccessful, "", 1,
			events.RunSummary{Name: "exp-smoke", Purpose: "experiment", Phase: "Successful"})},
		"6m": {events.TypeExperimentCompleted, experimentStatus(events.ExperimentPhaseFailed, "analysis smoke Failed: exit code 1", 1)},
		"7m": {events.TypeExperimentTerminated, experimentStatus(events.ExperimentPhaseTerminated, "terminated by user:alice", 1)},
	}
	answerCommands(t, c, exp, func(cmd events.Event) []statusReply {
		if cmd.Type() != events.TypeExperimentRequested {
			t.Errorf("published %s, want %s", cmd.Type(), events.TypeExperimentRequested)
			return nil
		}
		var m struct {
			Kind string `json:"kind"`
			Spec struct {
				Duration string `json:"duration"`
			} `json:"spec"`
		}
		if err := events.DecodeData(cmd, &m); err != nil || m.Kind != "Experiment" {
			t.Errorf("request data: %v, kind %q", err, m.Kind)
		}
		if m.Spec.Duration == "8m" {
			rejected := experimentStatus("", "", 0)
			rejected.Errors = []string{"spec.templates[0].name: Invalid value: \"baseline\": the name is held by a Rollout"}
			return []statusReply{{events.TypeExperimentRejected, rejected}}
		}
		return []statusReply{
			{events.TypeExperimentAccepted, experimentStatus(events.ExperimentPhasePending, "", 0)},
			{events.TypeExperimentRunning, experimentStatus(events.ExperimentPhaseRunning, "", 1)},
			verdict[m.Spec.Duration],
		}
	})
	manifest := func(duration string) string {
		return writeLintFile(t, "exp.yaml", strings.Replace(experimentManifest, "DURATION", "duration: "+duration, 1))
	}

	code, out := sluice(t, url, "apply", "-f", manifest("5m"), "--wait", "--timeout", "20s")
	for _, want := range []string{
		"Experiment default/exp published",
		"default/exp: accepted, Pending",
		"default/exp: running: every template available (baseline 1/1, canary 1/1)",
		"default/exp: completed: Successful",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --wait output lacks %q", want)
		}
	}
	if code != exitOK || t.Failed() {
		t.Fatalf("a Successful experiment: exit %d\n%s", code, out)
	}
	for duration, want := range map[string]string{
		"6m": "default/exp: Failed: analysis smoke Failed: exit code 1",
		"7m": "default/exp: Terminated: terminated by user:alice",
		"8m": `default/exp: rejected: spec.templates[0].name: Invalid value: "baseline": the name is held by a Rollout`,
	} {
		if code, out := sluice(t, url, "apply", "-f", manifest(duration), "--wait", "--timeout", "20s"); code != exitFail || !strings.Contains(out, want) {
			t.Errorf("duration %s: exit %d, want 1 and %q\n%s", duration, code, want, out)
		}
	}
}

// Without an answer, apply --wait says where the experiment stands.
func TestApplyWaitSaysWhatAnExperimentWaitsFor(t *testing.T) {
	url := eventstest.StartServer(t).ClientURL()
	c := eventstest.Connect(t, url)
	exp := events.Ref{Namespace: "default", Name: "exp"}
	answerCommands(t, c, exp, func(cmd events.Event) []statusReply {
		return []statusReply{
			{events.TypeExperimentAccepted, experimentStatus(events.ExperimentPhasePending, "", 0)},
			{events.TypeExperimentRunning, experimentStatus(events.ExperimentPhaseRunning, "", 1)},
		}
	})
	code, out := sluice(t, url, "apply", "-f", writeLintFile(t, "exp.yaml", strings.Replace(experimentManifest, "DURATION", "", 1)), "--wait", "--timeout", "3s")
	if want := "timed out after 3s: default/exp Running: no duration and no analysis requiredForCompletion: it runs until terminated (sluice terminate experiment exp)"; code != exitFail || !strings.Contains(out, want) {
		t.Fatalf("exit %d, want 1 and %q\n%s", code, want, out)
	}
}

// A file may not hold a Rollout and an Experiment of one name: they
// would share their subjects.
func TestApplyRefusesARolloutAndAnExperimentOfOneName(t *testing.T) {
	url := eventstest.StartServer(t).ClientURL()
	eventstest.Connect(t, url)
	exp := strings.Replace(strings.Replace(experimentManifest, "DURATION", "", 1), "name: exp", "name: web", 1)
	file := writeLintFile(t, "both.yaml", strings.Replace(webRollout, "IMAGE", "web:1", 1)+"---\n"+exp)
	code, out := sluice(t, url, "apply", "-f", file)
	if want := "document 2: Experiment default/web: the files also hold a Rollout of that name, and a namespace holds one Rollout or Experiment of a name"; code != exitFail || !strings.Contains(out, want) || strings.Contains(out, "published") {
		t.Fatalf("exit %d, want 1 and %q\n%s", code, want, out)
	}
}

// terminate experiment and delete experiment publish their commands and
// report the answer: exit 0 when it took effect, 1 with the code and
// reason when refused; delete NAME still deletes a rollout.
func TestTerminateAndDeleteExperimentAnswered(t *testing.T) {
	url := eventstest.StartServer(t).ClientURL()
	c := eventstest.Connect(t, url)
	exp := events.Ref{Namespace: "default", Name: "exp"}
	terminated := false
	answerCommands(t, c, exp, func(cmd events.Event) []statusReply {
		refused := func(code, reason string) []statusReply {
			d := experimentStatus(events.ExperimentPhaseTerminated, "", 0)
			d.Command = &events.CommandAnswer{Type: cmd.Type(), ID: cmd.ID(), Code: code, Reason: reason}
			return []statusReply{{events.TypeExperimentRefused, d}}
		}
		switch cmd.Type() {
		case events.TypeExperimentTerminate:
			if terminated {
				return refused(events.RefusedNotApplicable, "experiment default/exp has ended: Terminated")
			}
			terminated = true
			return []statusReply{{events.TypeExperimentTerminated, experimentStatus(events.ExperimentPhaseTerminated, "terminated by user:alice", 1)}}
		case events.TypeExperimentDelete:
			d := experimentStatus(events.ExperimentPhaseTerminated, "", 0)
			d.Reason = "its pods are gone"
			return []statusReply{{events.TypeExperimentDeleted, d}}
		case events.TypeRolloutDelete:
			d := events.StatusData{Status: events.Snapshot{Namespace: "default", Name: "exp"},
				Command: &events.CommandAnswer{Type: cmd.Type(), ID: cmd.ID(), Code: events.RefusedNotFound, Reason: "default/exp is an Experiment: sluice delete experiment exp"}}
			return []statusReply{{events.TypeRolloutRefused, d}}
		}
		t.Errorf("unexpected command %s", cmd.Type())
		return nil
	})
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"terminate", "experiment", "exp", "--as", "user:alice"}, exitOK, "default/exp: terminate done: terminated; now Terminated"},
		{[]string{"terminate", "experiment", "default/exp"}, exitFail, "default/exp: terminate refused (NotApplicable): experiment default/exp has ended: Terminated"},
		{[]string{"delete", "exp"}, exitFail, "default/exp: delete refused (NotFound): default/exp is an Experiment: sluice delete experiment exp"},
		{[]string{"delete", "experiment", "exp"}, exitOK, "default/exp: delete done: deleted (its pods are gone); now Terminated"},
		{[]string{"terminate", "experiment", "Not_A_Name"}, exitUsage, `experiment "Not_A_Name"`},
		{[]string{"terminate", "exp"}, exitUsage, `unknown command "exp" for "sluice terminate"`},
		{[]string{"terminate"}, exitUsage, "terminate what? `sluice terminate experiment NAME`"},
		{[]string{"delete", "experiment"}, exitUsage, "accepts 1 arg(s), received 0"},
	} {
		if code, out := sluice(t, url, tc.args...); code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("sluice %s: exit %d, want %d and %q\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
}

// get and list tell experiments from rollouts: list leaves them out and
// says so, list experiments and get experiment show them, with -o json.
func TestGetAndListExperiments(t *testing.T) {
	url := startSystem(t)
	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:1"), "--wait", "--timeout", "20s"); code != exitOK {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	c := eventstest.Connect(t, url)
	exp := events.Ref{Namespace: "default", Name: "exp"}
	publishStatus(t, c, exp, events.TypeExperimentAccepted, experimentStatus(events.ExperimentPhasePending, "", 0), nil)
	publishStatus(t, c, exp, events.TypeExperimentRunning, experimentStatus(events.ExperimentPhaseRunning, "", 1,
		events.RunSummary{Name: "exp-smoke", Purpose: "experiment", Phase: "Running"}), nil)

	code, out := sluice(t, url, "list")
	if code != exitOK || !strings.Contains(squeeze(out), "default web canary") || strings.Contains(out, "default  exp") ||
		!strings.Contains(out, "(and 1 standalone experiment: sluice list experiments)") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	code, out = sluice(t, url, "list", "-o", "json")
	if l := jsonLines[getJSON](t, out); code != exitOK || len(l) != 1 || l[0].Status.Name != "web" {
		t.Errorf("list -o json: exit %d\n%s", code, out)
	}
	code, out = sluice(t, url, "list", "experiments")
	if want := "default exp ◌ Running baseline 1/1, canary 1/1 exp-smoke ◌ Running"; code != exitOK || !strings.Contains(squeeze(out), want) || strings.Contains(out, "web") {
		t.Errorf("list experiments: exit %d, want %q\n%s", code, want, out)
	}
	code, out = sluice(t, url, "list", "experiments", "-A", "-o", "json")
	if l := jsonLines[getJSON](t, out); code != exitOK || len(l) != 1 || l[0].Status.Kind != events.KindExperiment || l[0].Status.Experiment == nil {
		t.Errorf("list experiments -o json: exit %d\n%s", code, out)
	}

	for _, args := range [][]string{{"get", "experiment", "exp"}, {"get", "exp"}} {
		code, out := sluice(t, url, args...)
		for _, want := range []string{"Kind: Experiment", "Status: ◌ Running", "baseline replicaSet exp-baseline available 1/1 hash aaa",
			"canary replicaSet exp-canary available 1/1 hash bbb service exp-canary", "exp-smoke ◌ Running", "Last event:"} {
			if !strings.Contains(squeeze(out), want) {
				t.Errorf("sluice %s lacks %q", strings.Join(args, " "), want)
			}
		}
		if code != exitOK || t.Failed() {
			t.Fatalf("sluice %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	code, out = sluice(t, url, "get", "experiment", "exp", "-o", "json")
	if g := jsonLines[getJSON](t, out); code != exitOK || len(g) != 1 || g[0].Status.Kind != events.KindExperiment || g[0].Status.Phase != events.ExperimentPhaseRunning {
		t.Errorf("get experiment -o json: exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "get", "experiment", "web"); code != exitFail || !strings.Contains(out, "default/web is a rollout, not an experiment: `sluice get default/web` shows it") {
		t.Errorf("get experiment of a rollout: exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "get", "experiment", "nosuch"); code != exitFail || !strings.Contains(out, "experiment default/nosuch not found") {
		t.Errorf("get experiment nosuch: exit %d\n%s", code, out)
	}
}

// Against the real orchestrator: an experiment with a duration ends
// Successful; one at a rollout's name is rejected; a running one is
// terminated, then deleted, and a rollout command at its name is refused.
func TestExperimentCommandsAgainstTheOrchestrator(t *testing.T) {
	url := startSystem(t)
	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:1"), "--wait", "--timeout", "20s"); code != exitOK {
		t.Fatalf("rollout: exit %d\n%s", code, out)
	}
	manifest := func(name, duration string) string {
		m := strings.Replace(experimentManifest, "name: exp", "name: "+name, 1)
		if duration != "" {
			duration = "duration: " + duration
		}
		return writeLintFile(t, name+".yaml", strings.Replace(m, "DURATION", duration, 1))
	}

	code, out := sluice(t, url, "apply", "-f", manifest("short", "1s"), "--wait", "--timeout", "20s")
	if code != exitOK || !strings.Contains(out, "default/short: running: every template available (baseline 1/1, canary 1/1)") ||
		!strings.Contains(out, "default/short: completed: Successful: duration 1s passed") {
		t.Fatalf("an experiment of 1s: exit %d\n%s", code, out)
	}
	code, out = sluice(t, url, "apply", "-f", manifest("web", ""), "--wait", "--timeout", "20s")
	if want := `default/web: rejected: metadata.name: Invalid value: "web": default/web is a Rollout`; code != exitFail || !strings.Contains(out, want) {
		t.Fatalf("an experiment at a rollout's name: exit %d, want 1 and %q\n%s", code, want, out)
	}

	if code, out := sluice(t, url, "apply", "-f", manifest("long", "")); code != exitOK {
		t.Fatalf("long: exit %d\n%s", code, out)
	}
	waitOutput(t, func() (int, string) { return sluice(t, url, "get", "experiment", "long") }, "◌ Running")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"promote", "long"}, exitFail, "default/long: promote refused (NotFound): default/long is an Experiment, not a Rollout"},
		{[]string{"terminate", "experiment", "web"}, exitFail, "default/web: terminate refused (NotFound): default/web is a Rollout, not an Experiment"},
		{[]string{"terminate", "experiment", "long", "--as", "user:alice"}, exitOK, "default/long: terminate done: terminated (terminated by user:alice); now Terminated"},
		{[]string{"terminate", "experiment", "long"}, exitFail, "default/long: terminate refused (NotApplicable): experiment default/long already ended Terminated"},
		{[]string{"delete", "experiment", "long"}, exitOK, "default/long: delete done: deleted (the pods of experiment default/long removed; its state is forgotten)"},
		{[]string{"delete", "experiment", "long"}, exitFail, "default/long: delete refused (NotFound)"},
		{[]string{"terminate", "experiment", "nosuch"}, exitFail, "default/nosuch: terminate refused (NotFound)"},
	} {
		if code, out := sluice(t, url, tc.args...); code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("sluice %s: exit %d, want %d and %q\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
}
