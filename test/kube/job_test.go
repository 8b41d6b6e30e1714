package kube_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/metrics/job"
)

// startJobAnalyzer runs an analyzer whose job provider creates Jobs in
// the control plane, as --platform kube wires it.
func (s *stack) startJobAnalyzer(t *testing.T) {
	t.Helper()
	reg, err := analyzer.DefaultProviders(analyzer.ProviderConfig{Job: job.Config{Kube: s.cp.Client, Dynamic: s.cp.Dynamic}})
	must(t, err)
	an, err := analyzer.New(eventstest.Connect(t, s.bus.Conn().ConnectedUrl()), analyzer.Config{Logger: eventstest.Quiet(), Providers: reg})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := an.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("analyzer stopped: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "analyzer ready", func() error {
		if !an.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
}

// TestFailingJobAbortsTheCanaryOnKubernetes: a Rollout object whose
// analysis step runs a smoke-test Job is aborted when the Job fails (the
// Job controller runs its pod, kwok fails it); the AnalysisRun object's
// measurement carries the container's termination message, and the Job
// stays for inspection, labelled with its rollout and metric and owned by
// the Rollout.
func TestFailingJobAbortsTheCanaryOnKubernetes(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.startJobAnalyzer(t)
	s.template(t, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: smoke
spec:
  metrics:
  - name: smoke
    provider:
      job:
        spec:
          backoffLimit: 0
          template:
            metadata:
              labels: {%s: "true"}
              annotations: {%s: "smoke failed: 503 from /healthz"}
            spec:
              restartPolicy: Never
              containers:
              - name: smoke
                image: curlimages/curl
                command: [sh, -c, "curl -fsS http://web-canary/healthz"]
`, kubetest.LabelFail, kubetest.AnnotationMessage))
	s.apply(t, rollout("web", "v1", 1, `    canary:
      steps:
      - setWeight: 50
      - analysis:
          templates: [{templateName: smoke}]
      - setWeight: 100
`))
	s.waitPhase(t, "web", "Healthy", -1)
	s.setImage(t, "web", "web:v2")
	st := s.waitPhase(t, "web", "Degraded", -1)
	hash, _ := st["currentPodHash"].(string)

	// The AnalysisRun object is written from the analysis's status events,
	// which may reach the cluster just after the Rollout's phase does.
	run := "web-" + hash + "-2-1"
	var ms []any
	eventually(t, "AnalysisRun "+run+" with its measurement", func() error {
		u, err := s.analysisRun(run)
		if err != nil {
			return err
		}
		if ms = measurementsOf(u); len(ms) == 0 {
			return fmt.Errorf("no measurement yet: status %v", u.Object["status"])
		}
		return nil
	})
	if len(ms) != 1 {
		t.Fatalf("AnalysisRun %s measurements %v, want one", run, ms)
	}
	m, _ := ms[0].(map[string]any)
	msg, _ := m["message"].(string)
	if m["phase"] != "Failed" || !strings.Contains(msg, "container smoke exited with code 1 (Error): smoke failed: 503 from /healthz") {
		t.Errorf("measurement %v", m)
	}

	jobs, err := s.cp.Client.BatchV1().Jobs(s.ns).List(context.Background(), metav1.ListOptions{LabelSelector: job.LabelRollout + "=web," + job.LabelMetric + "=smoke"})
	must(t, err)
	if len(jobs.Items) != 1 || jobs.Items[0].Annotations[job.AnnotationRunName] != run {
		t.Fatalf("Jobs of web's smoke metric: %d, want the run's one", len(jobs.Items))
	}
	if owners := jobs.Items[0].OwnerReferences; len(owners) != 1 || owners[0].Kind != "Rollout" || owners[0].Name != "web" {
		t.Errorf("the Job's owners %v, want Rollout web", owners)
	}
}
