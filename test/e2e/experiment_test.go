package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// passingJob is smokeJob (job_test.go) named "passes", whose Job exits 0.
var passingJob = strings.NewReplacer("metadata:\n  name: smoke", "metadata:\n  name: passes",
	"echo smoke failed; exit 1", "echo smoke passed").Replace(smokeJob)

// experiment renders a standalone Experiment of a baseline and a canary
// demoapp (one process each) that go as soon as it ends; analysis, when
// set, names the template of its one analysis, required for completion.
// Without one (and without a duration) it runs until terminated.
func experiment(name, analysis string) string {
	analyses := ""
	if analysis != "" {
		analyses = fmt.Sprintf("  analyses:\n  - {name: smoke, templateName: %s, requiredForCompletion: true}\n", analysis)
	}
	template := func(role string) string {
		return fmt.Sprintf(`  - name: %[2]s
    selector:
      matchLabels: {app: %[1]s, role: %[2]s}
    template:
      metadata:
        labels: {app: %[1]s, role: %[2]s}
      spec:
%[3]s
`, name, role, indent(demoappContainers(fmt.Sprintf("{name: VERSION, value: %s}", role)), "        "))
	}
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata:
  name: %s
spec:
  scaleDownDelaySeconds: 0
%s  templates:
%s%s`, name, analyses, template("baseline"), template("canary"))
}

// experimentPIDs are the pids of the experiment's processes, as
// `sluice get experiment -o json` reads them from the state directory.
func experimentPIDs(t *testing.T, d *dev, name string) map[string]int {
	t.Helper()
	code, out := d.sluice("get", "experiment", name, "-o", "json", "--state-dir", d.state)
	if code != 0 {
		t.Fatalf("get experiment %s -o json: exit %d\n%s", name, code, out)
	}
	var got struct {
		Processes []struct {
			PID        int `json:"pid"`
			Experiment struct {
				Template string `json:"template"`
			} `json:"experiment"`
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("get experiment %s -o json: %v\n%s", name, err, out)
	}
	pids := map[string]int{}
	for _, p := range got.Processes {
		pids[p.Experiment.Template] = p.PID
	}
	return pids
}

// running waits until the experiment name is Running with a process of
// each template, and returns their pids.
func (d *dev) running(name string) map[string]int {
	d.t.Helper()
	d.waitShows([]string{"get", "experiment", name}, 2*time.Minute, "Running", "baseline replicaSet "+name+"-baseline available 1/1",
		"canary replicaSet "+name+"-canary available 1/1")
	var pids map[string]int
	eventually(d.t, "a process of each template of "+name, time.Minute, func() bool {
		pids = experimentPIDs(d.t, d, name)
		return pids["baseline"] > 0 && pids["canary"] > 0
	})
	return pids
}

// allGone waits until none of pids is alive.
func allGone(t *testing.T, what string, pids map[string]int) {
	t.Helper()
	eventually(t, what, time.Minute, func() bool {
		for _, p := range pids {
			if alive(p) {
				return false
			}
		}
		return true
	})
}

// Standalone Experiments through the real CLI on sluice dev, with real
// processes: one whose Job analysis passes ends Successful (apply --wait
// exits 0) and its processes go; one whose Job fails ends Failed (exit 1
// with the reason); one with neither duration nor required analysis runs
// until `sluice terminate experiment`; `sluice delete experiment` removes
// one's processes and forgets it. get, list and logs tell them from
// rollouts.
func TestStandaloneExperimentsOnSluiceDev(t *testing.T) {
	d := newDev(t)
	d.start()
	w := func(s ...string) []string { return s }
	if code, out := d.apply(smokeJob + "---\n" + passingJob); code != 0 {
		t.Fatalf("templates: exit %d\n%s", code, out)
	}

	// (a) The Job passes: Successful, and its processes go at once
	// (scaleDownDelaySeconds: 0).
	code, out := d.apply(experiment("exp-pass", "passes"), "--wait", "--timeout", "3m")
	for _, want := range []string{"Experiment default/exp-pass published", "default/exp-pass: accepted, Pending",
		"default/exp-pass: running: every template available (baseline 1/1, canary 1/1)",
		"default/exp-pass: completed: Successful"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --wait lacks %q", want)
		}
	}
	if code != 0 || t.Failed() {
		t.Fatalf("exp-pass: exit %d, want 0\n%s", code, out)
	}
	// The ended experiment still lists its run with its verdict.
	d.waitShows([]string{"get", "experiment", "exp-pass"}, time.Minute, "✔ Successful", "Analysis runs:", "exp-pass-smoke  ✔ Successful",
		"smoke = - Successful: smoke passed")
	eventually(t, "exp-pass's processes gone", time.Minute, func() bool { return len(experimentPIDs(t, d, "exp-pass")) == 0 })
	// Its processes ran: their logs stay.
	logs := d.expectCLI(0, w("[exp-pass-baseline-0] ", "demoapp baseline listening", "[exp-pass-canary-0] ", "demoapp canary listening"),
		"logs", "exp-pass", "--state-dir", d.state)
	if strings.Contains(logs, "exp-fail") {
		t.Errorf("logs of exp-pass show another experiment's:\n%s", logs)
	}

	// (b) The Job fails: Failed, exit 1 with the reason.
	code, out = d.apply(experiment("exp-fail", "smoke"), "--wait", "--timeout", "3m")
	if code != 1 || !strings.Contains(out, "default/exp-fail: Failed") || !strings.Contains(out, "smoke failed") {
		t.Fatalf("exp-fail: exit %d, want 1 and the Job's failure\n%s", code, out)
	}

	// (c) No duration, no required analysis: Running until terminated.
	if code, out := d.apply(experiment("exp-run", "")); code != 0 {
		t.Fatalf("exp-run: exit %d\n%s", code, out)
	}
	pids := d.running("exp-run")
	// A repeated identical request is accepted again and changes nothing:
	// apply --wait says what it waits for.
	d.expectCLI(1, w("default/exp-run: accepted, Running",
		"timed out after 3s: default/exp-run Running: no duration and no analysis requiredForCompletion: it runs until terminated (sluice terminate experiment exp-run)"),
		"apply", "-f", d.writeFile(experiment("exp-run", "")), "--wait", "--timeout", "3s")
	list := d.expectCLI(0, w("(and 3 standalone experiments: sluice list experiments)"), "list")
	if strings.Contains(list, "exp-") {
		t.Errorf("list shows experiments as rollouts:\n%s", list)
	}
	exps := squeeze(d.expectCLI(0, nil, "list", "experiments"))
	for _, want := range []string{"default exp-fail ✖ Failed", "default exp-pass ✔ Successful", "default exp-run ◌ Running baseline 1/1, canary 1/1"} {
		if !strings.Contains(exps, want) {
			t.Errorf("list experiments lacks %q:\n%s", want, exps)
		}
	}
	d.expectCLI(1, w("default/exp-run: abort refused (NotFound): default/exp-run is an Experiment, not a Rollout"), "abort", "exp-run")
	d.expectCLI(0, w("default/exp-run: terminate done: terminated (terminated by user:e2e); now Terminated"),
		"terminate", "experiment", "exp-run", "--as", "user:e2e")
	d.waitShows([]string{"get", "experiment", "exp-run"}, time.Minute, "Terminated", "terminated by user:e2e")
	allGone(t, "exp-run's processes gone after terminate", pids)
	d.expectCLI(1, w("default/exp-run: terminate refused (NotApplicable): experiment default/exp-run already ended Terminated"),
		"terminate", "experiment", "exp-run")
	d.expectCLI(0, w("experiment.requested.v1", "experiment.running.v1", "experiment.terminate.v1", "experiment.terminated.v1", "user:e2e"),
		"history", "exp-run")

	// (d) delete removes a running experiment's processes and forgets it.
	if code, out := d.apply(experiment("exp-del", "")); code != 0 {
		t.Fatalf("exp-del: exit %d\n%s", code, out)
	}
	pids = d.running("exp-del")
	d.expectCLI(0, w("default/exp-del: delete done: deleted"), "delete", "experiment", "exp-del", "--timeout", "1m")
	allGone(t, "exp-del's processes gone after delete", pids)
	d.expectCLI(1, w("default/exp-del: delete refused (NotFound)"), "delete", "experiment", "exp-del")
	// The name can be requested again.
	d.expectCLI(0, w("default/exp-del: completed: Successful"), "apply", "-f", d.writeFile(experiment("exp-del", "passes")), "--wait", "--timeout", "3m")
}
