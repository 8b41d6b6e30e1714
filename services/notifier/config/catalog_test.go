package config_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/notifier/config"
	"github.com/sluicehq/sluice/services/notifier/config/configtest"
	"github.com/sluicehq/sluice/services/notifier/trigger"
)

// The catalog test feeds Argo Rollouts' notification catalog
// (testdata/argo-catalog.yaml) the status events of rollouts of every
// kind, as the orchestrator publishes them (services/orchestrator/machine:
// a step.completed's snapshot is already on the next step, a canary's
// first step starts with the accepted event), and checks which triggers
// fire and what the Slack destination gets.

var canaryYAML = configtest.Rollout{
	Name: "web", Namespace: "shop", Labels: "{team: shop}", Replicas: 4,
	Containers: `[{name: app, image: "shop/web:2.0"}, {name: proxy, image: "envoyproxy/envoy:v1.30"}]`,
	Strategy: `    canary:
      steps:
      - setWeight: 25
      - pause: {}
      - analysis: {templates: [{templateName: success-rate}]}
      - setWeight: 75
`,
}.YAML()

var blueGreenYAML = configtest.Rollout{
	Name: "api", Namespace: "shop", Replicas: 2,
	Containers: `[{name: api, image: "shop/api:7"}]`,
	Strategy:   "    blueGreen: {activeService: api, previewService: api-preview}\n",
}.YAML()

func rollout(t *testing.T, y string) *spec.Rollout {
	t.Helper()
	var ro spec.Rollout
	if err := yaml.Unmarshal([]byte(y), &ro); err != nil {
		t.Fatal(err)
	}
	ro.SetDefaults()
	return &ro
}

// step is one status event of a recorded sequence: its type and how it
// changes the snapshot and data.
type step struct {
	typ  string
	edit func(s *events.Snapshot, d *events.StatusData)
}

func ev(typ string, edit func(s *events.Snapshot, d *events.StatusData)) step {
	return step{typ, edit}
}

func stepIdx(i int32) *int32 { return &i }

func stepDone(i int32, action string) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		d.Step = &events.StepInfo{Index: i, Action: action}
		s.StepIndex = stepIdx(i + 1)
	}
}

func stepStart(i int32, action string) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		d.Step = &events.StepInfo{Index: i, Action: action}
		s.StepIndex = stepIdx(i)
	}
}

func measured(phase string, sum events.AnalysisSummary) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		sum.Name, sum.Phase = "web-2-analysis-2", "Running"
		d.Analysis = &sum
		d.Measurement = &events.Measurement{Metric: "success-rate", Phase: phase, Value: "0.99"}
		s.Analysis = &sum
	}
}

func completedRun(phase, msg string) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		sum := events.AnalysisSummary{Name: "web-2-analysis-2", Phase: phase, Message: msg}
		d.Analysis = &sum
		s.Analysis = &sum
	}
}

func scale(updated int32) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		s.Replicas.Updated, s.Replicas.Current = updated, s.Replicas.Desired+updated
	}
}

func and(fs ...func(s *events.Snapshot, d *events.StatusData)) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		for _, f := range fs {
			f(s, d)
		}
	}
}

func phase(p, msg string) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) { s.Phase, s.Message = p, msg }
}

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func pausedAt(reason string) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		s.Phase, s.Message = events.PhasePaused, reason
		s.PauseConditions = []events.PauseCondition{{Reason: reason, StartTime: t0}}
		d.Reason = reason
	}
}

func resumed(s *events.Snapshot, d *events.StatusData) {
	s.Phase, s.Message, s.PauseConditions = events.PhaseProgressing, "", nil
	d.Reason = "promoted"
}

func aborted(reason string) func(s *events.Snapshot, d *events.StatusData) {
	return func(s *events.Snapshot, d *events.StatusData) {
		s.Phase, s.Message, s.Aborted = events.PhaseDegraded, "RolloutAborted: "+reason, true
		s.Replicas.Updated, s.Replicas.Current = 0, s.Replicas.Desired
		s.CanaryWeight, s.StableWeight = 0, 100
		d.Reason = reason
	}
}

// canaryStart is a canary update of web to revision 2: accepted, and its
// first step (setWeight 25) carried out.
var canaryStart = []step{
	ev(events.TypeRolloutAccepted, stepIdx0),
	ev(events.TypeRolloutStepStarted, stepStart(0, "setWeight")),
	ev(events.TypeRolloutStepCompleted, and(stepDone(0, "setWeight"), scale(1), func(s *events.Snapshot, _ *events.StatusData) { s.CanaryWeight, s.StableWeight = 25, 75 })),
	ev(events.TypeRolloutStepStarted, stepStart(1, "pause")),
	ev(events.TypeRolloutPaused, pausedAt("CanaryPauseStep")),
}

func stepIdx0(s *events.Snapshot, _ *events.StatusData) { s.StepIndex = stepIdx(0) }

func concat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// toAnalysis continues canaryStart: promoted past the pause, into the
// analysis step, whose run takes its first measurement.
var toAnalysis = []step{
	ev(events.TypeRolloutResumed, resumed),
	ev(events.TypeRolloutStepCompleted, stepDone(1, "pause")),
	ev(events.TypeRolloutStepStarted, stepStart(2, "analysis")),
	ev(events.TypeAnalysisMeasured, measured("Successful", events.AnalysisSummary{Successful: 1})),
}

const (
	updated   = "on-rollout-updated: Rollout web has been updated."
	scaling   = "on-scaling-replica-set: Scaling Rollout web's replicaset to 4."
	paused    = "on-rollout-paused: Rollout web has been paused."
	running   = "on-analysis-run-running: Rollout web's analysis run is running."
	failed    = "on-analysis-run-failed: Rollout web's analysis run failed."
	errored   = "on-analysis-run-error: Rollout web's analysis run is in error state."
	abortedM  = "on-rollout-aborted: Rollout web has been aborted."
	completed = "on-rollout-completed: Rollout web has been completed."
)

func stepM(n int) string {
	return fmt.Sprintf("on-rollout-step-completed: Rollout web step number %d/4 has been completed.", n)
}

func TestArgoCatalog(t *testing.T) {
	cfg := configtest.Catalog(t)
	for _, tc := range []struct {
		name     string
		manifest string
		steps    []step
		want     []string
	}{
		{
			name:     "a canary that completes",
			manifest: canaryYAML,
			steps: concat(canaryStart, toAnalysis, []step{
				ev(events.TypeAnalysisMeasured, measured("Successful", events.AnalysisSummary{Successful: 2})),
				ev(events.TypeAnalysisCompleted, completedRun("Successful", "")),
				ev(events.TypeRolloutStepCompleted, stepDone(2, "analysis")),
				ev(events.TypeRolloutStepStarted, stepStart(3, "setWeight")),
				ev(events.TypeRolloutStepCompleted, and(stepDone(3, "setWeight"), scale(3))),
				ev(events.TypeRolloutCompleted, and(phase(events.PhaseHealthy, ""), scale(4), func(s *events.Snapshot, _ *events.StatusData) {
					s.StableRevision, s.StablePodHash, s.CanaryWeight, s.StableWeight = 2, s.PodHash, 0, 100
				})),
			}),
			want: []string{
				updated, stepM(2), scaling, paused,
				stepM(3), running, stepM(4), stepM(5), scaling, completed, scaling,
			},
		},
		{
			name:     "a canary aborted while paused",
			manifest: canaryYAML,
			steps: concat(canaryStart, []step{
				ev(events.TypeRolloutAborted, aborted("aborted by operator")),
			}),
			want: []string{updated, stepM(2), scaling, paused, abortedM, scaling},
		},
		{
			name:     "a canary whose analysis fails",
			manifest: canaryYAML,
			steps: concat(canaryStart, toAnalysis, []step{
				ev(events.TypeAnalysisMeasured, measured("Failed", events.AnalysisSummary{Successful: 1, Failed: 1})),
				ev(events.TypeAnalysisCompleted, completedRun("Failed", "metric success-rate assessed Failed")),
				ev(events.TypeRolloutAborted, aborted("step analysis run web-2-analysis-2 failed")),
			}),
			want: []string{updated, stepM(2), scaling, paused, stepM(3), running, failed, abortedM, scaling},
		},
		{
			name:     "a canary whose analysis errs",
			manifest: canaryYAML,
			steps: concat(canaryStart, toAnalysis, []step{
				ev(events.TypeAnalysisCompleted, completedRun("Error", "prometheus unreachable")),
				ev(events.TypeRolloutAborted, aborted("step analysis run web-2-analysis-2 error")),
			}),
			want: []string{updated, stepM(2), scaling, paused, stepM(3), running, errored, abortedM, scaling},
		},
		{
			name:     "a canary applied again unchanged fires nothing",
			manifest: canaryYAML,
			steps: []step{
				ev(events.TypeRolloutAccepted, and(phase(events.PhaseHealthy, ""), stepDone(3, "setWeight"))),
				ev(events.TypeRolloutAccepted, nil),
			},
			want: []string{updated},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := rollout(t, tc.manifest)
			snap := events.Snapshot{
				Namespace: "shop", Name: "web", Strategy: "canary", Phase: events.PhaseProgressing,
				Revision: 2, StableRevision: 1, PodHash: "6d4f8c7b9", StablePodHash: "5b8c9d6f7",
				StepCount: 4, StableWeight: 100, UpdatedAt: t0,
				Replicas: events.Replicas{Desired: 4, Current: 4, Ready: 4, Available: 4},
			}
			got := play(t, cfg, ro, snap, tc.steps)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("notifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}

	t.Run("blue/green promoted", func(t *testing.T) {
		ro := rollout(t, blueGreenYAML)
		snap := events.Snapshot{
			Namespace: "shop", Name: "api", Strategy: "blueGreen", Phase: events.PhaseProgressing,
			Revision: 4, StableRevision: 3, PodHash: "77c9", StablePodHash: "66b8", UpdatedAt: t0,
			Replicas: events.Replicas{Desired: 2, Current: 2, Ready: 2, Available: 2},
		}
		got := play(t, cfg, ro, snap, []step{
			ev(events.TypeRolloutAccepted, nil),
			ev(events.TypeRolloutPaused, and(scale(2), pausedAt("BlueGreenPause"))),
			ev(events.TypeRolloutResumed, resumed),
			ev(events.TypeRolloutCompleted, phase(events.PhaseHealthy, "")),
		})
		want := []string{
			"on-rollout-updated: Rollout api has been updated.",
			"on-rollout-paused: Rollout api has been paused.",
			"on-scaling-replica-set: Scaling Rollout api's replicaset to 2.",
			"on-rollout-completed: Rollout api has been completed.",
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("notifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// play feeds steps through the notifier's pipeline (trigger.Of,
// Destinations, Conditions, Render) and returns "trigger: message" for
// each notification to slack:deploys. It checks every notification's
// Slack attachment as Slack would read it.
func play(t *testing.T, cfg *config.Config, ro *spec.Rollout, snap events.Snapshot, steps []step) []string {
	t.Helper()
	var out []string
	var prev *events.Snapshot
	for i, st := range steps {
		data := events.StatusData{}
		snap.UpdatedAt = t0.Add(time.Duration(i) * time.Second)
		if st.edit != nil {
			st.edit(&snap, &data)
		}
		data.Status = snap
		e, err := events.New("/sluice/orchestrator", st.typ, ro.Namespace+"/"+ro.Name, data)
		if err != nil {
			t.Fatal(err)
		}
		e.SetID(fmt.Sprintf("ev-%d", i))
		e.SetTime(snap.UpdatedAt)
		obj := trigger.Rollout(ro, data)
		for _, f := range configtest.Fire(t, cfg, ro, e, data, prev) {
			for _, n := range f.Sent {
				if n.Email == nil || n.Email.Subject != n.Message {
					t.Errorf("%s: email subject = %+v, want the message", f.Trigger, n.Email)
				}
				checkAttachment(t, f.Trigger, ro, obj, n.Slack.Attachments)
				out = append(out, f.Trigger+": "+n.Message)
			}
		}
		p := snap
		prev = &p
	}
	return out
}

// checkAttachment decodes the catalog's Slack attachment and checks its
// fields: the rollout's name, the strategy, the step for a completed step,
// the replica counts when scaling, and one field per container.
func checkAttachment(t *testing.T, tr string, ro *spec.Rollout, obj map[string]any, attachments string) {
	t.Helper()
	var att []struct {
		Title  string `json:"title"`
		Color  string `json:"color"`
		Fields []struct {
			Title string `json:"title"`
			Value string `json:"value"`
			Short bool   `json:"short"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(attachments), &att); err != nil {
		t.Fatalf("%s: the Slack attachments are not JSON: %v\n%s", tr, err, attachments)
	}
	if len(att) != 1 || att[0].Title != ro.Name {
		t.Fatalf("%s: attachments = %+v", tr, att)
	}
	strategy := "Canary"
	if ro.Spec.Strategy.BlueGreen != nil {
		strategy = "BlueGreen"
	}
	want := []string{"Strategy=" + strategy}
	status := obj["status"].(map[string]any)
	switch tr {
	case trigger.RolloutStepCompleted:
		want = append(want, fmt.Sprintf("Step completed=%d/%d", status["currentStepIndex"].(int64)+1, len(ro.Spec.Strategy.Canary.Steps)))
	case trigger.ScalingReplicaSet:
		// Argo's status leaves a count of 0 out, which a template prints
		// as <no value> (in Argo's notifications too).
		updated := "<no value>"
		if v, ok := status["updatedReplicas"]; ok {
			updated = fmt.Sprint(v)
		}
		want = append(want, fmt.Sprintf("Desired replica=%d", *ro.Spec.Replicas), "Updated replicas="+updated)
	}
	for _, c := range ro.Spec.Template.Spec.Containers {
		want = append(want, c.Name+"="+c.Image)
	}
	var got []string
	for _, f := range att[0].Fields {
		got = append(got, f.Title+"="+f.Value)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: attachment fields = %q, want %q", tr, got, want)
	}
	color := map[string]string{trigger.AnalysisRunError: "#ECB22E", trigger.AnalysisRunFailed: "#E01E5A", trigger.RolloutAborted: "#E01E5A"}[tr]
	if color == "" {
		color = "#18be52"
	}
	if att[0].Color != color {
		t.Errorf("%s: color = %s, want %s", tr, att[0].Color, color)
	}
}
