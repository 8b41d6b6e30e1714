package e2e

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devtest"
)

// At setWeight 20 the measured share of requests reaching the canary is
// within four standard deviations of 20%; after an abort no request reaches
// the canary.
func TestCanaryShareAndAbort(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	steps := routed("- setWeight: 20\n- pause: {}\n")
	d.update(listen, steps, 2)
	d.waitGet("web", 2*time.Minute, "Paused (CanaryPauseStep)", "canary 20%")

	const n = 1000
	got := versions(t, listen, n)
	share := float64(got["v2"]) / n
	sd := math.Sqrt(0.2 * 0.8 / n)
	if math.Abs(share-0.2) > 4*sd || got["error"] > 0 || got["v1"]+got["v2"] != n {
		t.Fatalf("at setWeight 20: %v (canary share %.3f, want 0.20 ± %.3f)", got, share, 4*sd)
	}

	if code, out := d.sluice("abort", "web"); code != 0 {
		t.Fatalf("abort: exit %d\n%s", code, out)
	}
	d.waitGet("web", time.Minute, "Degraded", "canary 0%")
	if got := versions(t, listen, 300); got["v2"] != 0 || got["v1"] != 300 {
		t.Errorf("after the abort: %v; want every request on v1", got)
	}
}

// A canary that fails its analysis (real load, real proxy metrics, the
// embedded Prometheus) is aborted, and afterwards no request reaches it.
func TestBadCanaryIsAbortedByAnalysis(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	if code, out := d.apply(devtest.SuccessRate(d.prom)); code != 0 {
		t.Fatalf("template: exit %d\n%s", code, out)
	}
	steps := routed(`- setWeight: 50
- analysis:
    templates: [{templateName: success-rate}]
    args: [{name: rollout, value: web}]
- setWeight: 100
`)
	d.live(listen, steps, 1)
	stop := devtest.Load(listen, nil)
	defer stop()
	code, out := d.apply(rollout("web", listen, "bad", 1, 1, steps), "--wait", "--timeout", "3m")
	if code != 1 || !strings.Contains(out, "default/web: aborted") || !strings.Contains(out, "success-rate") {
		t.Fatalf("a failing canary: exit %d\n%s", code, out)
	}
	if got := versions(t, listen, 300); got["bad"] != 0 || got["v1"] != 300 {
		t.Errorf("after the abort: %v; want every request on v1", got)
	}
}

// A demo app process killed mid-rollout is restarted; the rollout carries on.
func TestKilledAppProcessIsRecovered(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	steps := routed("- setWeight: 50\n- pause: {}\n")
	d.update(listen, steps, 2)
	d.waitGet("web", 2*time.Minute, "Paused", "canary 50%")

	pid := canaryPID(t, d, "web")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the killed canary process is replaced", time.Minute, func() bool {
		p := canaryPIDs(t, d, "web")
		return len(p) > 0 && p[0] != pid && alive(p[0])
	})
	eventually(t, "the canary answers again", time.Minute, func() bool { return versions(t, listen, 50)["v2"] > 0 })
	if code, out := d.sluice("promote", "web"); code != 0 {
		t.Fatalf("promote: exit %d\n%s", code, out)
	}
	d.waitGet("web", 2*time.Minute, "Healthy", "Revision: 2 (stable 2)")
	if got := versions(t, listen, 100); got["v2"] != 100 {
		t.Errorf("after promotion: %v", got)
	}
}

// sluice dev killed with SIGKILL during a timed pause and started again
// completes the rollout.
func TestDevKilledMidRolloutResumes(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	steps := routed("- setWeight: 30\n- pause: {duration: 5s}\n")
	d.update(listen, steps, 1)
	d.waitGet("web", 2*time.Minute, "Paused", "canary 30%")
	d.kill()
	d.start()
	d.waitGet("web", 2*time.Minute, "Healthy", "Revision: 2 (stable 2)")
	eventually(t, "traffic is on v2", time.Minute, func() bool { return versions(t, listen, 50)["v2"] == 50 })
}

// canaryPIDs lists the pids of the processes of the rollout's newest
// revision, from the local platform's state files.
func canaryPIDs(t *testing.T, d *dev, name string) []int {
	t.Helper()
	dir := filepath.Join(d.state, "replicas", "default", name)
	var desired struct {
		Revisions []struct {
			Revision int64  `json:"revision"`
			PodHash  string `json:"podHash"`
		} `json:"revisions"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "rollout.json"))
	if err != nil || json.Unmarshal(b, &desired) != nil || len(desired.Revisions) == 0 {
		return nil
	}
	newest := desired.Revisions[0]
	for _, r := range desired.Revisions {
		if r.Revision > newest.Revision {
			newest = r
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, newest.PodHash+"-*.json"))
	var pids []int
	for _, f := range files {
		var p struct {
			PID int `json:"pid"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &p) == nil && p.PID > 0 {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

func canaryPID(t *testing.T, d *dev, name string) int {
	t.Helper()
	pids := canaryPIDs(t, d, name)
	if len(pids) == 0 {
		t.Fatalf("no canary process in %s", d.state)
	}
	return pids[0]
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// An analysis with no data to judge (no canary traffic at all) never
// promotes: the run is inconclusive and the rollout pauses on the old
// stable revision.
func TestMissingDataNeverPromotes(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	if code, out := d.apply(devtest.SuccessRate(d.prom)); code != 0 {
		t.Fatalf("template: exit %d\n%s", code, out)
	}
	steps := routed(`- setWeight: 50
- analysis:
    templates: [{templateName: success-rate}]
    args: [{name: rollout, value: web}]
`)
	d.update(listen, steps, 1)
	// get reads the orchestrator's record, written just before the events
	// (the measurement among them) are published: wait for both.
	d.waitGet("web", 2*time.Minute, "Paused (InconclusiveAnalysisRun)", "Revision: 2 (stable 1)", "= [] Inconclusive")
	// The pause is the analysis's: only a promote lifts it, and resume
	// says so.
	if code, out := d.sluice("resume", "web"); code != 1 ||
		!strings.Contains(out, "resume refused (NotApplicable): not paused by an operator but by InconclusiveAnalysisRun: promote to go on, or abort") {
		t.Errorf("resume of an inconclusive pause: exit %d\n%s", code, out)
	}
	d.waitGet("web", 10*time.Second, "Paused (InconclusiveAnalysisRun)", "Revision: 2 (stable 1)")
}

// live makes v1 of rollout "web" live and waits until it is.
func (d *dev) live(listen, steps string, replicas int) {
	d.t.Helper()
	if code, out := d.apply(rollout("web", listen, "v1", 0, replicas, steps), "--wait", "--timeout", "2m"); code != 0 {
		d.t.Fatalf("v1: exit %d\n%s", code, out)
	}
}

// update makes v1 live, then starts the update to a healthy v2.
func (d *dev) update(listen, steps string, replicas int) {
	d.t.Helper()
	d.live(listen, steps, replicas)
	if code, out := d.apply(rollout("web", listen, "v2", 0, replicas, steps)); code != 0 {
		d.t.Fatalf("v2: exit %d\n%s", code, out)
	}
}
