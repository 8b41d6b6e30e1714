package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testbin"
)

// judgeTemplates are the two ways to judge an experiment's canary: a
// fixed threshold on its success rate, and the judge comparing its mean
// latency with the baseline's, both over the local proxy's metrics in
// sluice dev's Prometheus at prom. The experiment's templates are told
// apart by the proxy's template label. Each judge sample is the mean over
// its own 3 s (the step equals the rate window), 10 a side over 30 s.
func judgeTemplates(prom string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: experiment-success-rate
spec:
  metrics:
  - name: success-rate
    initialDelay: 5s
    interval: 3s
    count: 3
    successCondition: len(result) > 0 && result[0] >= 0.95
    failureCondition: len(result) > 0 && result[0] < 0.95
    provider:
      prometheus:
        address: http://%[1]s
        query: |
          (sum(rate(sluice_proxy_requests_total{rollout="web",template="canary",code!~"5.."}[10s])) or vector(0))
          /
          sum(rate(sluice_proxy_requests_total{rollout="web",template="canary"}[10s]))
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: judge
spec:
  metrics:
  - name: judge
    initialDelay: 33s
    count: 1
    successCondition: result >= 90
    provider:
      plugin:
        sluice/judge:
          baseline: baseline
          canary: canary
          metrics:
          - name: mean-latency
            direction: increase
            tolerance: 0.25
            critical: true
            mustHaveData: true
            provider:
              prometheus:
                address: http://%[1]s
                query: |
                  sum(rate(sluice_proxy_request_duration_seconds_sum{rollout="web",template="{{judge.revision}}"}[3s]))
                  /
                  sum(rate(sluice_proxy_request_duration_seconds_count{rollout="web",template="{{judge.revision}}"}[3s]))
                rangeQuery: {start: 'now() - duration("30s")', end: "now()", step: 3s}
`, prom)
}

// experimentRollout is web at version, whose requests take latency, with
// one step: an experiment of a baseline (the stable's template) and a
// canary (this version's), 25% of the traffic each, judged by both
// templates; the experiment ends when both have.
func experimentRollout(listen, version, latency string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  annotations:
    local.sluice.io/listen: %[1]s
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: demoapp
        command: ["bin/demoapp"]
        env:
        - {name: VERSION, value: %[2]s}
        - {name: LATENCY, value: %[3]s}
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
  strategy:
    canary:
      canaryService: canary
      stableService: stable
      trafficRouting:
        istio:
          virtualService: {name: vs, routes: [primary]}
      steps:
      - experiment:
          templates:
          - {name: baseline, specRef: stable, weight: 25}
          - {name: canary, specRef: canary, weight: 25}
          scaleDownDelaySeconds: 0
          analyses:
          - {name: success-rate, templateName: experiment-success-rate, requiredForCompletion: true}
          - {name: judge, templateName: judge, requiredForCompletion: true}
      - setWeight: 100
`, listen, version, latency)
}

// The case for a baseline: a canary three times slower than the
// stable but without errors passes a fixed success-rate threshold, and
// only the judge, comparing it with a baseline of the stable's template
// run beside it under the same load (from loadgen), fails it; a canary as
// fast as its baseline passes both and is promoted.
func TestJudgeFailsASlowCanaryAThresholdPasses(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	if code, out := d.apply(judgeTemplates(d.prom)); code != 0 {
		t.Fatalf("templates: exit %d\n%s", code, out)
	}
	if code, out := d.apply(experimentRollout(listen, "v1", "20ms"), "--wait", "--timeout", "2m"); code != 0 {
		t.Fatalf("v1: exit %d\n%s", code, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var load bytes.Buffer
	gen := exec.CommandContext(ctx, testbin.Path(t, "loadgen"), "--url", "http://"+listen+"/", "--rate", "80", "--report", "0")
	gen.Stdout, gen.Stderr = &load, &load
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = gen.Wait()
	})

	// 3x slower, no errors: the threshold passes, the judge fails it.
	code, out := d.apply(experimentRollout(listen, "slow", "60ms"), "--wait", "--timeout", "4m")
	if code != 1 || !strings.Contains(out, "default/web: aborted") {
		t.Fatalf("a canary 3x slower than its baseline: exit %d, want 1 (aborted)\n%s", code, out)
	}
	_, hist := d.sluice("history", "web")
	for _, want := range []string{"success-rate", "Successful", "judge", "Failed", "mean-latency", "FAIL"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history of the slow canary does not say %q:\n%s", want, hist)
		}
	}

	// As fast as its baseline: both pass, the update completes.
	code, out = d.apply(experimentRollout(listen, "same", "20ms"), "--wait", "--timeout", "4m")
	if code != 0 {
		_, hist := d.sluice("history", "web")
		t.Fatalf("a canary as fast as its baseline: exit %d, want 0\n%s\nhistory:\n%s", code, out, hist)
	}
	if got := versions(t, listen, 100); got["same"] != 100 {
		t.Errorf("after the promotion: %v; want every request on the same-speed canary", got)
	}
}
