package trigger

import (
	"reflect"
	"strings"
	"testing"
	"text/template"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

func event(t *testing.T, typ string, data events.StatusData) events.Event {
	t.Helper()
	e, err := events.New("/test", typ, "shop/web", data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestOf(t *testing.T) {
	base := events.Snapshot{Namespace: "shop", Name: "web", Revision: 2, StepIndex: ptr(int32(1)), Replicas: events.Replicas{Desired: 4, Updated: 1}}
	with := func(f func(*events.Snapshot)) *events.Snapshot {
		s := base
		f(&s)
		return &s
	}
	for _, tc := range []struct {
		name string
		typ  string
		data events.StatusData
		prev *events.Snapshot
		want []string
	}{
		{"completed", events.TypeRolloutCompleted, events.StatusData{Status: base}, &base, []string{RolloutCompleted}},
		{"step completed", events.TypeRolloutStepCompleted, events.StatusData{Status: base}, &base, []string{RolloutStepCompleted}},
		{"blue/green stage completed", events.TypeRolloutStepCompleted, events.StatusData{Status: events.Snapshot{Strategy: "blueGreen", Revision: 2, Replicas: base.Replicas}}, &base, nil},
		{"step started fires nothing", events.TypeRolloutStepStarted, events.StatusData{Status: base}, &base, nil},
		{"accepted, new revision", events.TypeRolloutAccepted, events.StatusData{Status: base}, with(func(s *events.Snapshot) { s.Revision = 1 }), []string{RolloutUpdated}},
		{"accepted without a previous snapshot", events.TypeRolloutAccepted, events.StatusData{Status: base}, nil, []string{RolloutUpdated}},
		{"accepted, same revision", events.TypeRolloutAccepted, events.StatusData{Status: base}, &base, nil},
		{"aborted", events.TypeRolloutAborted, events.StatusData{Status: base}, &base, []string{RolloutAborted}},
		{"paused", events.TypeRolloutPaused, events.StatusData{Status: base, Reason: "InconclusiveAnalysisRun"}, &base, []string{RolloutPaused}},
		{"first measurement of a run", events.TypeAnalysisMeasured, events.StatusData{Status: base, Analysis: &events.AnalysisSummary{Inconclusive: 1}}, &base, []string{AnalysisRunRunning}},
		{"later measurement", events.TypeAnalysisMeasured, events.StatusData{Status: base, Analysis: &events.AnalysisSummary{Successful: 1, Error: 1}}, &base, nil},
		{"analysis failed", events.TypeAnalysisCompleted, events.StatusData{Status: base, Analysis: &events.AnalysisSummary{Phase: "Failed"}}, &base, []string{AnalysisRunFailed}},
		{"analysis error", events.TypeAnalysisCompleted, events.StatusData{Status: base, Analysis: &events.AnalysisSummary{Phase: "Error"}}, &base, []string{AnalysisRunError}},
		{"analysis successful", events.TypeAnalysisCompleted, events.StatusData{Status: base, Analysis: &events.AnalysisSummary{Phase: "Successful"}}, &base, nil},
		{"scaled with a step", events.TypeRolloutStepCompleted, events.StatusData{Status: base}, with(func(s *events.Snapshot) { s.Replicas.Updated = 0 }), []string{RolloutStepCompleted, ScalingReplicaSet}},
		{"desired replicas changed", events.TypeRolloutResumed, events.StatusData{Status: base}, with(func(s *events.Snapshot) { s.Replicas.Desired = 2 }), []string{RolloutResumed, ScalingReplicaSet}},
		{"no scaling without prev", events.TypeRolloutResumed, events.StatusData{Status: base}, nil, []string{RolloutResumed}},
		{"degraded", events.TypeRolloutDegraded, events.StatusData{Status: base}, &base, []string{RolloutDegraded}},
		{"rejected", events.TypeRolloutRejected, events.StatusData{Status: base}, &base, []string{RolloutRejected}},
		{"restarted", events.TypeRolloutRestarted, events.StatusData{Status: base}, &base, []string{RolloutRestarted}},
		{"deleted never scales", events.TypeRolloutDeleted, events.StatusData{Status: events.Snapshot{Namespace: "shop", Name: "web"}}, &base, []string{RolloutDeleted}},
		{"refused never scales", events.TypeRolloutRefused, events.StatusData{Status: events.Snapshot{Namespace: "shop", Name: "web"}}, &base, []string{CommandRefused}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Of(event(t, tc.typ, tc.data), tc.data, tc.prev)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Of = %v, want %v", got, tc.want)
			}
		})
	}
}

const manifest = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: shop
  labels: {team: shop}
  annotations: {owner: alice}
spec:
  replicas: 1000000
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: "shop/web:2"}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web
      trafficRouting: {nginx: {stableIngress: web}}
      steps: [{setWeight: 20}, {pause: {}}]
`

func render(t *testing.T, src string, vars map[string]any) string {
	t.Helper()
	var b strings.Builder
	if err := template.Must(template.New("t").Parse(src)).Execute(&b, vars); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRolloutIsArgosObject(t *testing.T) {
	var ro spec.Rollout
	if err := yaml.Unmarshal([]byte(manifest), &ro); err != nil {
		t.Fatal(err)
	}
	ro.SetDefaults()
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	data := events.StatusData{Status: events.Snapshot{
		Namespace: "shop", Name: "web", Strategy: "canary", Phase: "Paused", Message: "CanaryPauseStep",
		Revision: 3, StableRevision: 2, PodHash: "abc", StablePodHash: "def", StepIndex: ptr(int32(1)), StepCount: 2,
		CanaryWeight: 20, StableWeight: 80,
		Replicas:        events.Replicas{Desired: 1000000, Current: 5, Updated: 1, Ready: 4, Available: 3},
		PauseConditions: []events.PauseCondition{{Reason: "CanaryPauseStep", StartTime: t0}},
	}}
	vars := map[string]any{"rollout": Rollout(&ro, data)}
	for src, want := range map[string]string{
		"{{.rollout.apiVersion}} {{.rollout.kind}}":                                                                      "argoproj.io/v1alpha1 Rollout",
		"{{.rollout.metadata.namespace}}/{{.rollout.metadata.name}} {{.rollout.metadata.labels.team}}":                   "shop/web shop",
		`{{index .rollout.metadata.annotations "rollout.argoproj.io/revision"}} {{.rollout.metadata.annotations.owner}}`: "3 alice",
		"{{.rollout.spec.replicas}}":                                                                           "1000000",
		"{{(index .rollout.spec.template.spec.containers 0).image}}":                                           "shop/web:2",
		"{{len .rollout.spec.strategy.canary.steps}}":                                                          "2",
		"{{.rollout.status.phase}} {{.rollout.status.message}}":                                                "Paused CanaryPauseStep",
		"{{.rollout.status.currentStepIndex}} {{.rollout.status.currentPodHash}} {{.rollout.status.stableRS}}": "1 abc def",
		"{{.rollout.status.replicas}} {{.rollout.status.updatedReplicas}} {{.rollout.status.readyReplicas}} {{.rollout.status.availableReplicas}}": "5 1 4 3",
		"{{(index .rollout.status.pauseConditions 0).reason}} {{(index .rollout.status.pauseConditions 0).startTime}}":                             "CanaryPauseStep 2026-12-06T12:00:00Z",
		"{{.rollout.status.canary.weights.canary.weight}} {{.rollout.status.canary.weights.stable.weight}}":                                        "20 80",
		// Argo leaves abort out while false.
		"{{if .rollout.status.abort}}aborted{{else}}running{{end}} {{.rollout.status.selector}}": "running app=web",
	} {
		if got := render(t, src, vars); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
	if ro.Annotations[RevisionAnnotation] != "" {
		t.Error("Rollout changed the manifest's annotations")
	}

	// Deleted, or never accepted: only the names.
	gone := Rollout(nil, events.StatusData{Status: events.Snapshot{Namespace: "shop", Name: "web", Phase: "Degraded"}})
	if got := render(t, "{{.rollout.metadata.namespace}}/{{.rollout.metadata.name}} {{.rollout.status.phase}} {{.rollout.metadata.annotations}}", map[string]any{"rollout": gone}); got != "shop/web Degraded <no value>" {
		t.Errorf("nil manifest renders %q", got)
	}
}

func TestVars(t *testing.T) {
	data := events.StatusData{
		Status:  events.Snapshot{Namespace: "shop", Name: "web"},
		Reason:  "promoted",
		Step:    &events.StepInfo{Index: 2, Action: "analysis", Detail: "analysis success-rate"},
		Command: &events.CommandAnswer{Type: events.TypeRolloutPromote, ID: "c1", Code: "NotApplicable", Reason: "nothing to promote"},
	}
	e := event(t, events.TypeRolloutResumed, data)
	e.SetID("e1")
	e.SetTime(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	e.SetExtension(events.ExtActor, "slack:U024BE7LH")
	vars := Vars(map[string]any{}, e, data, map[string]string{"env": "prod"}, "https://sluice.example.com/")
	for src, want := range map[string]string{
		"{{.sluice.event.id}} {{.sluice.event.type}} {{.sluice.event.actor}}":    "e1 io.sluice.rollout.resumed.v1 slack:U024BE7LH",
		"{{.sluice.event.reason}} {{.sluice.event.time}}":                        "promoted 2026-12-06T12:00:00Z",
		"{{.sluice.step.index}} {{.sluice.step.action}} {{.sluice.step.detail}}": "2 analysis analysis success-rate",
		"{{.sluice.command.code}}: {{.sluice.command.reason}}":                   "NotApplicable: nothing to promote",
		"{{.sluice.dashboardURL}}":                                               "https://sluice.example.com/#/ns/shop/web",
		"{{.context.env}} {{.sluice.analysis}}":                                  "prod <no value>",
	} {
		if got := render(t, src, vars); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
