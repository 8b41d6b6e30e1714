package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// experimentYAML is a standalone Experiment r with a baseline and a canary
// template of one pod each and no duration: it runs until terminated.
func experimentYAML(r events.Ref) string {
	return strings.NewReplacer("NAME", r.Name, "NS", r.Namespace).Replace(`apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata: {name: NAME, namespace: NS}
spec:
  templates:
  - name: baseline
    replicas: 1
    selector: {matchLabels: {app: NAME, role: baseline}}
    template:
      metadata: {labels: {app: NAME, role: baseline}}
      spec: {containers: [{name: app, image: "web:1"}]}
  - name: canary
    replicas: 1
    selector: {matchLabels: {app: NAME, role: canary}}
    template:
      metadata: {labels: {app: NAME, role: canary}}
      spec: {containers: [{name: app, image: "web:2"}]}
`)
}

// requestExperiment posts the experiment r's request to the ingress as the
// YAML a CI job has, and returns the event's id.
func (a *api) requestExperiment(id string, r events.Ref) {
	a.t.Helper()
	h := binaryHeaders(id, events.TypeExperimentRequested, r.String())
	h["Content-Type"] = "application/yaml"
	if res := a.post("", h, experimentYAML(r)); res.code != http.StatusAccepted {
		a.t.Fatalf("request experiment %s: %s, want 202", r, res)
	}
}

// waitExperiment waits until the API shows experiment r in phase.
func (a *api) waitExperiment(r events.Ref, phase string) ExperimentDetail {
	a.t.Helper()
	var d ExperimentDetail
	poll.Until(a.t, fmt.Sprintf("experiment %s %s", r, phase), func() error {
		res := a.get("/api/v1/namespaces/" + r.Namespace + "/experiments/" + r.Name)
		if res.code != http.StatusOK {
			return fmt.Errorf("%s", res)
		}
		d = decode[ExperimentDetail](a.t, res)
		if d.Status.Phase != phase {
			return fmt.Errorf("%s: %s", d.Status.Phase, d.Status.Message)
		}
		return nil
	})
	return d
}

// A standalone Experiment through the gateway: requested as a CloudEvent,
// listed and read apart from the rollouts beside it, terminated and
// deleted through its own commands; each kind's routes point to the
// other's for a name of the other kind.
func TestExperimentsThroughTheAPI(t *testing.T) {
	sys := startSystem(t)
	a := sys.gateway(auth.RoleAdmin, "user:dev")
	sys.leavesNoConsumer()
	exp, web := events.Ref{Namespace: "shop", Name: "exp"}, events.Ref{Namespace: "shop", Name: "web"}
	sys.Request(web, "web:1")
	a.requestExperiment("exp-1", exp)
	a.waitPhase(web, 1, events.PhaseHealthy)

	d := a.waitExperiment(exp, events.ExperimentPhaseRunning)
	if d.Status.Kind != events.KindExperiment || d.Status.Experiment == nil {
		t.Fatalf("status %+v, want an Experiment's", d.Status)
	}
	var templates []string
	for _, tm := range d.Status.Experiment.Templates {
		templates = append(templates, fmt.Sprintf("%s %s %d/%d", tm.Name, tm.ReplicaSet, tm.Available, tm.Replicas))
	}
	if want := []string{"baseline exp-baseline 1/1", "canary exp-canary 1/1"}; !slices.Equal(templates, want) {
		t.Fatalf("templates %v, want %v", templates, want)
	}
	if d.LastEvent == nil || d.LastEvent.Type() != events.TypeExperimentRunning {
		t.Errorf("last event %v, want running", d.LastEvent)
	}

	// Each list shows its own kind.
	list := func(path string) []string {
		t.Helper()
		res := a.get(path)
		if res.code != http.StatusOK {
			t.Fatalf("GET %s: %s", path, res)
		}
		var names []string
		for _, it := range decode[struct{ Items []Summary }](t, res).Items {
			names = append(names, it.Namespace+"/"+it.Name+" "+it.Phase)
		}
		return names
	}
	for path, want := range map[string][]string{
		"/api/v1/rollouts":    {"shop/web Healthy"},
		"/api/v1/experiments": {"shop/exp Running"},
		"/api/v1/experiments?namespace=shop&phase=Running": {"shop/exp Running"},
		"/api/v1/experiments?phase=Successful":             nil,
		"/api/v1/experiments?namespace=blog":               nil,
	} {
		if got := list(path); !slices.Equal(got, want) {
			t.Errorf("GET %s: %v, want %v", path, got, want)
		}
	}
	for path, want := range map[string]string{
		"/api/v1/namespaces/shop/rollouts/exp":     "it is an Experiment (GET /api/v1/namespaces/shop/experiments/exp)",
		"/api/v1/namespaces/shop/experiments/web":  "it is a Rollout (GET /api/v1/namespaces/shop/rollouts/web)",
		"/api/v1/namespaces/shop/experiments/nope": "no experiment shop/nope",
		"/api/v1/experiments?phase=Healthy":        "phase Healthy is none of Pending, Running,",
	} {
		res := a.get(path)
		if msg, _ := res.json["error"].(string); res.code/100 != 4 || !strings.Contains(msg, want) {
			t.Errorf("GET %s: %s, want an error saying %q", path, res, want)
		}
	}

	// Its commands, answered by the orchestrator; a rollout's command is
	// not one of them.
	cmd := func(command string, code int, want string) CommandResult {
		t.Helper()
		res := a.call("POST", "/api/v1/namespaces/shop/experiments/exp/"+command, "")
		r := decode[CommandResult](t, res)
		if res.code != code || r.Type != want || r.Event == nil || events.Extension(*r.Event, events.ExtActor) != "user:dev" {
			t.Fatalf("%s: %s, want %d %s answered to user:dev", command, res, code, want)
		}
		return r
	}
	if r := cmd("terminate", http.StatusOK, events.TypeExperimentTerminated); r.Status == nil || r.Status.Phase != events.ExperimentPhaseTerminated {
		t.Fatalf("terminate: status %+v", r.Status)
	}
	if r := cmd("terminate", http.StatusConflict, events.TypeExperimentRefused); r.Outcome != OutcomeRefused || r.Code == "" {
		t.Fatalf("a second terminate: %+v, want refused with a code", r)
	}
	res := a.call("POST", "/api/v1/namespaces/shop/experiments/exp/promote", "")
	if msg, _ := res.json["error"].(string); res.code != http.StatusBadRequest || !strings.Contains(msg, "use one of delete, terminate") {
		t.Errorf("promote of an experiment: %s, want 400 naming its commands", res)
	}
	if res := a.call("POST", "/api/v1/namespaces/shop/experiments/exp/terminate", `{"now": true}`); res.code != http.StatusBadRequest {
		t.Errorf("terminate with a body: %s, want 400", res)
	}
	cmd("delete", http.StatusOK, events.TypeExperimentDeleted)
	poll.Until(t, "the deleted experiment gone from the API", func() error {
		if res := a.get("/api/v1/namespaces/shop/experiments/exp"); res.code != http.StatusNotFound {
			return fmt.Errorf("%s", res)
		}
		if got := list("/api/v1/experiments"); len(got) != 0 {
			return fmt.Errorf("listed: %v", got)
		}
		return nil
	})
	cmd("terminate", http.StatusConflict, events.TypeExperimentRefused)
}

// An experiment's commands need the roles a rollout's do: its request and
// terminate an operator, its delete an admin. A command refused at the
// gateway is answered, and recorded on the experiment's status subject,
// with the experiment's refusal type and code Forbidden.
func TestExperimentCommandsForbidden(t *testing.T) {
	sys := startSystem(t)
	operator := sys.gateway(auth.RoleOperator, "user:op")
	viewer := sys.gateway(auth.RoleViewer, "user:visitor")
	exp := events.Ref{Namespace: "shop", Name: "exp"}

	if res := viewer.post("", binaryHeaders("v-req", events.TypeExperimentRequested, exp.String()), `{}`); res.code != http.StatusForbidden || res.json["error"] == nil {
		t.Errorf("a request by a viewer: %s, want 403", res)
	}
	// An invalid one is refused as the orchestrator would reject it.
	invalid := strings.Replace(experimentYAML(exp), "replicas: 1", "replicas: -1", 1)
	h := binaryHeaders("op-bad", events.TypeExperimentRequested, exp.String())
	h["Content-Type"] = "application/yaml"
	if res := operator.post("", h, invalid); res.code != http.StatusBadRequest ||
		!slices.ContainsFunc(toStrings(res.json["errors"]), func(e string) bool { return strings.HasPrefix(e, "spec.templates[0].replicas") }) {
		t.Errorf("an invalid experiment: %s, want 400 with spec.templates[0].replicas", res)
	}
	operator.requestExperiment("op-req", exp)
	if evs := sys.commands(exp)["op-req"]; len(evs) != 1 || events.Extension(evs[0], events.ExtActor) != "user:op" ||
		evs[0].DataContentType() != "application/json" || !strings.Contains(string(evs[0].Data()), `"kind":"Experiment"`) {
		t.Fatalf("the operator's request on the bus: %v, want it as JSON from user:op", evs)
	}

	refusals := map[string]string{} // command id -> actor
	for _, c := range []struct {
		a       *api
		command string
		actor   string
	}{{viewer, "terminate", "user:visitor"}, {operator, "delete", "user:op"}} {
		res := c.a.call("POST", "/api/v1/namespaces/shop/experiments/exp/"+c.command, "")
		r := decode[CommandResult](t, res)
		if res.code != http.StatusForbidden || r.Outcome != OutcomeRefused || r.Code != events.RefusedForbidden || r.Type != events.TypeExperimentRefused ||
			r.Event == nil || r.Event.Type() != events.TypeExperimentRefused || !strings.Contains(r.Error, "experiment."+c.command) {
			t.Fatalf("%s by %s: %s, want 403 answered with %s", c.command, c.actor, res, events.TypeExperimentRefused)
		}
		refusals[r.ID] = c.actor
	}
	// Through the ingress too, as a CloudEvent.
	if res := operator.post("", binaryHeaders("op-delete", events.TypeExperimentDelete, exp.String()), ""); res.code != http.StatusForbidden ||
		res.json["type"] != events.TypeExperimentRefused || res.json["code"] != events.RefusedForbidden {
		t.Fatalf("an experiment's delete by an operator through the ingress: %s, want 403 %s", res, events.TypeExperimentRefused)
	}
	refusals["op-delete"] = "user:op"

	poll.Until(t, "every refusal on the experiment's status subject", func() error {
		hist, err := sys.Bus.History(t.Context(), exp)
		if err != nil {
			return err
		}
		found := 0
		for _, e := range hist {
			ev := e.Event
			actor, ok := refusals[events.Extension(ev, events.ExtCausationID)]
			if e.Err != nil || e.Stream != events.StreamStatus || !ok {
				continue
			}
			var d events.StatusData
			if ev.Type() != events.TypeExperimentRefused || events.DecodeData(ev, &d) != nil || d.Command == nil ||
				d.Command.Code != events.RefusedForbidden || events.Extension(ev, events.ExtActor) != actor {
				return fmt.Errorf("refusal %v: %+v", ev, d.Command)
			}
			found++
		}
		if found != len(refusals) {
			return fmt.Errorf("%d of %d refusals recorded", found, len(refusals))
		}
		return nil
	}, poll.Timeout(30*time.Second))
	if cmds := sys.commands(exp); len(cmds) != 1 {
		t.Errorf("commands on the bus: %v, want only the operator's request", cmds)
	}
}

// An experiment's detail counts the runs of the experiment it shows, not
// those of an earlier one of the name that was deleted.
func TestExperimentDetailForgetsADeletedExperimentsRuns(t *testing.T) {
	at := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	entry := func(typ string, d events.StatusData) events.HistoryEntry {
		t.Helper()
		ev, err := events.New("/test", typ, "shop/exp", d)
		if err != nil {
			t.Fatal(err)
		}
		return events.HistoryEntry{Stream: events.StreamStatus, Event: ev}
	}
	measured := func(phase string) events.StatusData {
		return events.StatusData{
			Analysis:    &events.AnalysisSummary{Name: "exp-rate", Phase: phase, Successful: 1},
			Measurement: &events.Measurement{Metric: "rate", Phase: phase, Value: "1", StartedAt: at, FinishedAt: at},
		}
	}
	hist := []events.HistoryEntry{
		entry(events.TypeAnalysisMeasured, measured("Failed")),
		entry(events.TypeExperimentDeleted, events.StatusData{}),
		entry(events.TypeExperimentAccepted, events.StatusData{}),
		entry(events.TypeAnalysisMeasured, measured("Running")),
	}
	snap := events.Snapshot{Kind: events.KindExperiment, Namespace: "shop", Name: "exp", Phase: events.ExperimentPhaseRunning, Runs: []events.RunSummary{
		{Name: "exp-rate", Purpose: "experiment", Phase: "Running"},
		{Name: "exp-latency", Purpose: "experiment", Phase: "Pending"},
	}}
	d := experimentDetailOf(snap, hist)
	var got []string
	for _, r := range d.AnalysisRuns {
		n := 0
		for _, m := range r.Metrics {
			n += len(m.Measurements)
		}
		got = append(got, fmt.Sprintf("%s %s %s %d", r.Name, r.Purpose, r.Phase, n))
	}
	if want := []string{"exp-rate experiment Running 1", "exp-latency experiment Pending 0"}; !slices.Equal(got, want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
	if d.LastEvent == nil || d.LastEvent.Type() != events.TypeAnalysisMeasured {
		t.Errorf("last event %v", d.LastEvent)
	}
}
