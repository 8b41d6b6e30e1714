package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/worker"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer"
)

// startAnalyzer runs an analyzer on the NATS server at url, so that
// applied templates reach its bucket.
func startAnalyzer(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	a, err := analyzer.New(eventstest.Connect(t, url), analyzer.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = a.Run(ctx) }()
	poll.True(t, "the analyzer to be ready", a.Ready, poll.Timeout(eventstest.Wait))
}

func writeLintFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyPublishesNothingWhenATemplateIsInvalid(t *testing.T) {
	url := startSystem(t)
	file := writeLintFile(t, "both.yaml", lintTemplate(`"result[0] >= 0.95 &&"`, goodQuery)+"---\n"+analysedRollout)
	code, out := sluice(t, url, "apply", "-f", file)
	if code != exitFail || !strings.Contains(out, `both.yaml: AnalysisTemplate default/success-rate: spec.metrics[0].successCondition: Invalid value: "result[0] >= 0.95 &&": unexpected token EOF`) {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if strings.Contains(out, "published") {
		t.Errorf("apply says it published:\n%s", out)
	}
	client := eventstest.Connect(t, url)
	s, err := client.JetStream().Stream(context.Background(), events.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Msgs; n != 0 {
		t.Errorf("%d commands published from an invalid file", n)
	}
}

func TestTemplateReferencesResolveAgainstTheBus(t *testing.T) {
	url := startSystem(t)
	startAnalyzer(t, url)
	rollout := writeLintFile(t, "rollout.yaml", analysedRollout)
	tmpl := writeLintFile(t, "template.yaml", lintTemplate("result[0] < 0.05", goodQuery))

	code, out := sluice(t, url, "lint", "-f", rollout)
	if want := `rollout.yaml: Rollout default/web: spec.strategy.canary.steps[1].analysis.templates[0].templateName: analysis template "success-rate" not found in namespace "default" in the files given nor applied on the bus`; code != exitFail || !strings.Contains(out, want) {
		t.Fatalf("lint before the template is applied: exit %d\n%s\nwant %s", code, out, want)
	}
	if code, out := sluice(t, url, "apply", "-f", tmpl); code != exitOK || !strings.Contains(out, "AnalysisTemplate default/success-rate published") {
		t.Fatalf("apply template: exit %d\n%s", code, out)
	}
	poll.Until(t, "lint to find the applied template", func() error {
		if code, out := sluice(t, url, "lint", "-f", rollout); code != exitOK {
			return fmt.Errorf("exit %d\n%s", code, out)
		}
		return nil
	})
	// Without --nats-url or --remote, lint looks only at the files.
	var stdout, stderr strings.Builder
	if code := run(context.Background(), []string{"lint", "-f", rollout}, &stdout, &stderr); code != exitFail || !strings.Contains(stdout.String(), "--remote also looks among the templates applied on the bus") {
		t.Errorf("lint without the bus: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

func TestApplyWaitPrintsEachStepAndWhereItWaits(t *testing.T) {
	url := startSystem(t)
	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:1"), "--wait", "--timeout", "20s"); code != exitOK || !strings.Contains(out, "default/web: completed (revision 1)") {
		t.Fatalf("first apply: exit %d\n%s", code, out)
	}

	// Revision 2 stops at the indefinite pause of step 2 and times out
	// there, whatever the timeout.
	code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:2"), "--wait", "--timeout", "5s")
	for _, want := range []string{
		"default/web: accepted as revision 2",
		"default/web: step 1/3 started: setWeight 25",
		"default/web: step 1/3 completed: setWeight 25",
		"default/web: step 2/3 started: pause",
		"default/web: paused: ",
		"timed out after 5s: default/web at step 2/3 (pause), Paused: waiting for promote (an indefinite pause)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --wait output lacks %q", want)
		}
	}
	if code != exitFail || t.Failed() {
		t.Fatalf("exit %d\n%s", code, out)
	}

	// -q prints nothing but the reason it failed.
	code, out = sluice(t, url, "apply", "-q", "-f", writeManifest(t, "web:3"), "--wait", "--timeout", "5s")
	if code != exitFail || strings.Contains(out, "started") || strings.Contains(out, "published") ||
		!strings.Contains(out, "timed out after 5s: default/web at step 2/3 (pause), Paused: waiting for promote (an indefinite pause)") {
		t.Fatalf("apply -q --wait: exit %d\n%s", code, out)
	}
}

func TestApplyWaitPrintsTheAnalysisVerdict(t *testing.T) {
	url := startSystem(t)
	// An analyzer that finds every run successful at once.
	w, err := worker.New(eventstest.Connect(t, url), worker.Config{Service: tasks.ServiceAnalyzer, Logger: eventstest.Quiet(),
		Executors: map[string]worker.Executor{tasks.KindAnalysisRun: func(context.Context, tasks.Task) (tasks.Finished, error) {
			return tasks.Finished{Outcome: tasks.OutcomeSucceeded, Analysis: &events.AnalysisSummary{Name: "success-rate", Phase: "Successful", Successful: 3}}, nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop(context.Background()) })

	rollout := func(version string) string {
		return writeLintFile(t, "rollout.yaml", strings.Replace(analysedRollout, "web:1", "web:"+version, 1))
	}
	if code, out := sluice(t, url, "apply", "-f", rollout("1"), "--wait", "--timeout", "20s"); code != exitOK {
		t.Fatalf("first apply: exit %d\n%s", code, out)
	}
	code, out := sluice(t, url, "apply", "-f", rollout("2"), "--wait", "--timeout", "20s")
	for _, want := range []string{
		"default/web: step 2/2 started: analysis",
		"default/web: analysis success-rate: Successful (3 successful, 0 failed, 0 inconclusive, 0 errors)",
		"default/web: completed (revision 2)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --wait output lacks %q", want)
		}
	}
	if code != exitOK || t.Failed() {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestDescribeWait(t *testing.T) {
	ro := &spec.Rollout{}
	ro.Spec.Strategy.Canary = &spec.CanaryStrategy{Steps: []spec.CanaryStep{{SetWeight: lintInt32(20)}, {Pause: &spec.RolloutPause{}}, {Analysis: &spec.RolloutAnalysis{}},
		{Experiment: &spec.RolloutExperimentStep{}}}}
	at := func(step int32, phase string, mod func(*events.Snapshot)) *outcome {
		s := events.Snapshot{Phase: phase, Revision: 2, StepIndex: &step, StepCount: 3, Replicas: events.Replicas{Desired: 4, Available: 4}}
		if mod != nil {
			mod(&s)
		}
		return &outcome{accepted: true, revision: 2, last: &s}
	}
	tests := []struct {
		name string
		o    *outcome
		want string
	}{
		{"no answer", &outcome{}, "was not accepted: no answer from the orchestrator (is it running? `sluice dev` runs one)"},
		{"indefinite pause", at(1, "Paused", func(s *events.Snapshot) { s.PauseConditions = []events.PauseCondition{{Reason: "CanaryPauseStep"}} }),
			"at step 2/3 (pause), Paused: waiting for promote (an indefinite pause)"},
		{"analysis running", at(2, "Progressing", func(s *events.Snapshot) {
			s.Analysis = &events.AnalysisSummary{Name: "web-2-2", Phase: "Running", Successful: 1}
		}), "at step 3/3 (analysis), Progressing: analysis web-2-2 running (1 successful, 0 failed, 0 inconclusive, 0 errors)"},
		{"replicas not available", at(0, "Progressing", func(s *events.Snapshot) { s.Replicas.Available = 1 }),
			"at step 1/3 (setWeight), Progressing: replicas available 1/4"},
		{"inconclusive analysis", at(2, "Paused", func(s *events.Snapshot) {
			s.PauseConditions = []events.PauseCondition{{Reason: "InconclusiveAnalysisRun"}}
		}),
			"at step 3/3 (analysis), Paused: waiting for promote or abort (an inconclusive analysis)"},
		{"inconclusive experiment", at(3, "Paused", func(s *events.Snapshot) {
			s.StepCount, s.PauseConditions = 4, []events.PauseCondition{{Reason: "InconclusiveExperiment"}}
		}),
			"at step 4/4 (experiment), Paused: waiting for promote or abort (an inconclusive experiment)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeWait(tt.o, ro); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func lintInt32(v int32) *int32 { return &v }

func TestApplyStrictRefusesUnknownFields(t *testing.T) {
	url := startSystem(t)
	file := writeLintFile(t, "typo.yaml", strings.Replace(webRollout, "replicas: 4", "replicaz: 4", 1))
	code, out := sluice(t, url, "apply", "--strict", "-f", file)
	if code != exitFail || !strings.Contains(out, `typo.yaml: Rollout default/web: spec.replicaz: unknown field (did you mean "replicas"?)`) || strings.Contains(out, "published") {
		t.Fatalf("apply --strict: exit %d\n%s", code, out)
	}
	code, out = sluice(t, url, "apply", "-f", file)
	if code != exitOK || !strings.Contains(out, `typo.yaml: Rollout default/web: warning: spec.replicaz: unknown field`) || !strings.Contains(out, "Rollout default/web published") {
		t.Fatalf("apply without --strict: exit %d\n%s", code, out)
	}
}
