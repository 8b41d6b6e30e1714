package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/worker"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// startSystem runs the orchestrator and workers that complete every task at
// once, on a real embedded NATS server, and returns its URL.
func startSystem(t *testing.T) string {
	t.Helper()
	url := eventstest.StartServer(t).ClientURL()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	oc := eventstest.Connect(t, url)
	orch, err := orchestrator.New(oc, orchestrator.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = orch.Run(ctx) }()

	wc := eventstest.Connect(t, url)
	instant := map[string]map[string]worker.Executor{
		tasks.ServiceReplicas: {tasks.KindScale: func(_ context.Context, task tasks.Task) (tasks.Finished, error) {
			fin := tasks.Finished{Outcome: tasks.OutcomeSucceeded}
			for _, r := range task.Scale.Revisions {
				st := tasks.RevisionStatus{Revision: r.Revision, PodHash: r.PodHash, Replicas: r.Replicas, Ready: r.Replicas, Available: r.Replicas}
				if r.Experiment != nil {
					st.Template = r.Experiment.Template
				}
				fin.Replicas = append(fin.Replicas, st)
			}
			return fin, nil
		}},
		tasks.ServiceTraffic: {tasks.KindRoute: func(_ context.Context, task tasks.Task) (tasks.Finished, error) {
			w := task.Route.CanaryWeight
			return tasks.Finished{Outcome: tasks.OutcomeSucceeded, CanaryWeight: &w}, nil
		}},
	}
	for svc, execs := range instant {
		w, err := worker.New(wc, worker.Config{Service: svc, Executors: execs, Logger: eventstest.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Stop(context.Background()) })
	}
	poll.True(t, "the orchestrator to be ready", orch.Ready, poll.Timeout(eventstest.Wait))
	return url
}

const webRollout = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: IMAGE}]}
  strategy:
    canary:
      steps:
      - setWeight: 25
      - pause: {}
      - setWeight: 75
`

func writeManifest(t *testing.T, image string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rollout.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(webRollout, "IMAGE", image, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sluice runs the CLI against url and returns exit code and output.
func sluice(t *testing.T, url string, args ...string) (int, string) {
	t.Helper()
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, append(args, "--nats-url", url), &out, &errOut)
	return code, out.String() + errOut.String()
}

func TestApplyGetPromoteAbortFromTheCLI(t *testing.T) {
	url := startSystem(t)

	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:1"), "--wait", "--timeout", "20s"); code != exitOK || !strings.Contains(out, "default/web: completed (revision 1)") {
		t.Fatalf("first apply: exit %d\n%s", code, out)
	}

	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:2")); code != exitOK {
		t.Fatalf("second apply: exit %d\n%s", code, out)
	}
	waitOutput(t, func() (int, string) { return sluice(t, url, "get", "web") }, "॥ Paused (CanaryPauseStep)", "canary 25%")
	if code, out := sluice(t, url, "list"); code != exitOK || !strings.Contains(squeeze(out), "default web") || !strings.Contains(out, "Paused") {
		t.Errorf("list: exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "promote", "web"); code != exitOK || !strings.Contains(out, "default/web: promote done: resumed") {
		t.Fatalf("promote: exit %d\n%s", code, out)
	}
	waitOutput(t, func() (int, string) { return sluice(t, url, "get", "default/web") }, "✔ Healthy", "Revision: 2 (stable 2)")

	// v3 pauses; an abort while `apply --wait` waits makes it exit 1.
	done := make(chan struct{})
	var code int
	var out string
	go func() {
		defer close(done)
		code, out = sluice(t, url, "apply", "-f", writeManifest(t, "web:3"), "--wait", "--timeout", "20s")
	}()
	waitOutput(t, func() (int, string) { return sluice(t, url, "get", "web") }, "Revision: 3 (stable 2)", "Paused")
	if c, o := sluice(t, url, "abort", "web"); c != exitOK {
		t.Fatalf("abort: exit %d\n%s", c, o)
	}
	<-done
	if code != exitFail || !strings.Contains(out, "default/web: aborted") {
		t.Errorf("apply --wait of an aborted rollout: exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "history", "default/web"); code != exitOK || !strings.Contains(out, "rollout.abort.v1") || !strings.Contains(out, "rollout.aborted.v1") {
		t.Errorf("history: exit %d\n%s", code, out)
	}
}

func TestApplyRefusesInvalidManifestsBeforePublishing(t *testing.T) {
	url := startSystem(t)
	bad := writeManifest(t, "web:1")
	data, _ := os.ReadFile(bad)
	if err := os.WriteFile(bad, []byte(strings.Replace(string(data), "setWeight: 75", "setWeight: 175", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := sluice(t, url, "apply", "-f", bad, "--wait")
	if code != exitFail || !strings.Contains(out, "spec.strategy.canary.steps[2].setWeight: Invalid value: 175: must be between 0 and 100") {
		t.Errorf("exit %d\n%s", code, out)
	}
	if code, out := sluice(t, url, "get", "web"); code != exitFail || !strings.Contains(out, "rollout default/web not found") {
		t.Errorf("an invalid manifest reached the bus: exit %d\n%s", code, out)
	}
	if code, _ := sluice(t, url, "promote", "Not_A_Name"); code != exitUsage {
		t.Errorf("promote with an invalid name: exit %d, want %d", code, exitUsage)
	}
}

// waitOutput reruns cmd until its output holds every want; runs of spaces
// compare equal, so column alignment does not matter.
func waitOutput(t *testing.T, cmd func() (int, string), want ...string) {
	t.Helper()
	poll.Until(t, fmt.Sprintf("output showing %q", want), func() error {
		_, out := cmd()
		for _, w := range want {
			if !strings.Contains(squeeze(out), squeeze(w)) {
				return fmt.Errorf("output:\n%s", out)
			}
		}
		return nil
	}, poll.Every(50*time.Millisecond))
}

func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }
