package dashboard

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devtest"
	"github.com/sluicehq/sluice/pkg/events"
)

// A standalone Experiment requested through the gateway's ingress shows on
// the experiments page with its templates' pods and its analysis run,
// follows the status stream from Running to its verdict without a reload,
// and never shows in the rollout list.
func TestExperimentsPage(t *testing.T) {
	chrome := chromePath(t)
	d := devtest.Start(t, devtest.Options{})
	// The run's Job waits for the test to let it finish, so that the page
	// is seen Running first.
	gate := filepath.Join(t.TempDir(), "finish")
	d.Apply(fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: gated}
spec:
  metrics:
  - name: gated
    provider:
      job:
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
              - name: gated
                image: busybox
                command: [sh, -c, "while [ ! -e %s ]; do sleep 0.2; done"]
`, gate))
	base := "http://" + d.Dashboard
	post(t, base, "exp-1", "default/exp", experiment("exp"))

	b := newBrowser(t, chrome)
	b.navigate(base + "/#/experiments")
	// Four minutes: once, under make test's load, the run had not shown
	// after two (devtest now prints sluice dev's warnings on a failure).
	b.wait("the experiments page shows exp Running with both templates' pods and its run", 4*time.Minute, `(() => {
		const row = document.querySelector('tr[data-experiment="default/exp"]');
		if (!row) return 'no row';
		const t = [...row.querySelectorAll('[data-template]')].map((l) => l.textContent).join(', ');
		const r = [...row.querySelectorAll('[data-run]')].map((l) => l.dataset.run + ' ' + l.dataset.phase).join(', ');
		const s = row.dataset.phase + '; ' + t + '; ' + r;
		// The run is Pending until its Job reports (a Job measures once, when it ends).
		return /^Running; baseline 1\/1, canary 1\/1; exp-gated (Pending|Running)$/.test(s) ? '' : s;
	})()`)
	b.screenshot("dashboard-experiments.png")

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.wait("the row turns Successful with its run without a reload", 2*time.Minute, `(() => {
		const row = document.querySelector('tr[data-experiment="default/exp"]');
		const r = [...row.querySelectorAll('[data-run]')].map((l) => l.dataset.run + ' ' + l.dataset.phase).join(', ');
		const s = row.querySelector('.badge').textContent + '; ' + r;
		return s === 'Successful; exp-gated Successful' ? '' : s;
	})()`)

	b.click(`nav a[href="#/"]`)
	b.wait("the rollout list loads without the experiment", time.Minute, `(() => {
		const empty = document.querySelector('.empty');
		const rows = [...document.querySelectorAll('tr[data-rollout]')].map((r) => r.dataset.rollout).join(' ');
		return empty && !empty.hidden && rows === '' ? '' : 'rows: ' + rows;
	})()`)
}

// experiment is a standalone Experiment of two demoapp templates, a
// baseline and a canary of one process each, whose required analysis
// runs the template "gated"; its processes go as soon as it ends.
func experiment(name string) string {
	tmpl := func(role, version string) string {
		return fmt.Sprintf(`  - name: %[1]s
    replicas: 1
    selector:
      matchLabels: {app: %[3]s, role: %[1]s}
    template:
      metadata:
        labels: {app: %[3]s, role: %[1]s}
      spec:
        containers:
        - name: app
          image: demoapp
          command: ["bin/demoapp"]
          env:
          - {name: VERSION, value: %[2]s}
          ports:
          - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 1
`, role, version, name)
	}
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata:
  name: %s
  namespace: default
spec:
  scaleDownDelaySeconds: 0
  templates:
%s%s  analyses:
  - name: gated
    templateName: gated
    requiredForCompletion: true
`, name, tmpl("baseline", "v1"), tmpl("canary", "v2"))
}

// post sends a command to the gateway's CloudEvents ingress in binary
// mode, its manifest as YAML, and fails unless it is published (202).
func post(t *testing.T, base, id, subject, manifest string) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/v1/events", strings.NewReader(manifest))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"ce-specversion": "1.0", "ce-id": id, "ce-source": "/test", "ce-type": events.TypeExperimentRequested,
		"ce-subject": subject, "Content-Type": "application/yaml",
	} {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/v1/events %s: %d %s", id, res.StatusCode, body)
	}
}
