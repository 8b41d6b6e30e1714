package e2e

import (
	"strings"
	"testing"
	"time"
)

// smokeJob is an AnalysisTemplate whose metric is a Job that fails, as a
// smoke test of a broken canary would: on the local platform its first
// container runs as a process of the analyzer's machine.
const smokeJob = `apiVersion: argoproj.io/v1alpha1
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
            spec:
              restartPolicy: Never
              containers:
              - name: smoke
                image: busybox
                command: [sh, -c, "echo smoke failed; exit 1"]
`

// A canary whose analysis step runs a Job that fails is aborted, and the
// measurement's message carries the Job's output.
func TestFailingJobAbortsTheCanary(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	if code, out := d.apply(smokeJob); code != 0 {
		t.Fatalf("template: exit %d\n%s", code, out)
	}
	steps := routed(`- setWeight: 50
- analysis:
    templates: [{templateName: smoke}]
- setWeight: 100
`)
	d.live(listen, steps, 1)
	code, out := d.apply(rollout("web", listen, "v2", 0, 1, steps), "--wait", "--timeout", "2m")
	if code != 1 || !strings.Contains(out, "default/web: aborted") {
		t.Fatalf("a canary whose smoke Job fails: exit %d\n%s", code, out)
	}
	got := d.waitGet("web", time.Minute, "Degraded", "Failed: exit code 1: smoke failed")
	if !strings.Contains(got, "smoke") {
		t.Errorf("sluice get names no smoke metric:\n%s", got)
	}
	if got := versions(t, listen, 100); got["v2"] != 0 || got["v1"] != 100 {
		t.Errorf("after the abort: %v; want every request on v1", got)
	}
}
