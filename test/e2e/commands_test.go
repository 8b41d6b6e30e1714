package e2e

import (
	"net"
	"strings"
	"testing"
	"time"
)

// expectCLI runs the CLI and checks its exit code and that its output holds
// every want.
func (d *dev) expectCLI(code int, want []string, args ...string) string {
	d.t.Helper()
	got, out := d.sluice(args...)
	if got != code {
		d.t.Fatalf("sluice %s: exit %d, want %d\n%s", strings.Join(args, " "), got, code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			d.t.Fatalf("sluice %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// TestEveryCommandAnsweredThroughTheCLI drives every operator command
// through the real CLI against sluice dev, in the cases where it takes
// effect, where it is refused, and where the rollout does not exist.
func TestEveryCommandAnsweredThroughTheCLI(t *testing.T) {
	d := newDev(t)
	d.start()
	listen := freeAddr(t)
	w := func(s ...string) []string { return s }

	// No such rollout: every command is refused with NotFound, exit 1.
	for _, c := range []string{"promote", "abort", "retry", "pause", "resume", "undo", "restart", "delete"} {
		d.expectCLI(1, w("default/nosuch: "+c+" refused (NotFound): rollout default/nosuch does not exist"), c, "nosuch")
	}
	d.expectCLI(1, w("prod/nosuch: pause refused (NotFound)"), "pause", "nosuch", "-n", "prod")

	steps := routed("- setWeight: 50\n- pause: {}\n")
	d.live(listen, steps, 2)

	// Healthy: nothing to promote, abort or retry.
	d.expectCLI(1, w("default/web: promote refused (NotApplicable): nothing to promote: revision 1 is stable"), "promote", "web")
	d.expectCLI(1, w("default/web: promote refused (NotApplicable)"), "promote", "web", "--full")
	d.expectCLI(1, w("default/web: abort refused (NotApplicable): no update to abort: revision 1 is stable"), "abort", "web")
	d.expectCLI(1, w("default/web: retry refused (NotApplicable): nothing to retry"), "retry", "web")
	d.expectCLI(1, w("default/web: undo refused (Invalid): cannot undo: there is no revision before the current one"), "undo", "web")

	before := canaryPIDs(t, d, "web") // healthy: the newest revision is the stable one
	d.expectCLI(0, w("default/web: restart done: restarted"), "restart", "web", "--timeout", "2m")
	var after []int
	eventually(t, "the restarted processes recorded", 30*time.Second, func() bool {
		after = canaryPIDs(t, d, "web")
		return len(after) == 2
	})
	for _, p := range before {
		for _, q := range after {
			if p == q {
				t.Fatalf("restart kept process %d (before %v, after %v)", p, before, after)
			}
		}
	}

	if code, out := d.apply(rollout("web", listen, "v2", 0, 2, steps)); code != 0 {
		t.Fatalf("v2: exit %d\n%s", code, out)
	}
	d.waitGet("web", 2*time.Minute, "Paused (CanaryPauseStep)", "Revision: 2 (stable 1)")
	d.expectCLI(0, w("default/web: pause done: paused (paused by operator)"), "pause", "web", "--as", "ci:github/acme/shop")
	d.expectCLI(1, w("default/web: pause refused (NotApplicable): already paused"), "pause", "web")
	d.expectCLI(0, w("default/web: resume done: resumed"), "resume", "web")
	d.expectCLI(1, w("default/web: resume refused (NotApplicable): not paused by an operator but by CanaryPauseStep: promote to go on, or abort"), "resume", "web")
	d.expectCLI(1, w("default/web: undo refused (Invalid): cannot undo: revision 99 is not kept (revisions kept: 1 2)"), "undo", "web", "--to-revision", "99")
	d.expectCLI(0, w("default/web: promote sent (event "), "promote", "web", "--no-wait")
	d.waitGet("web", 2*time.Minute, "Healthy", "Revision: 2 (stable 2)")
	hist := d.expectCLI(0, nil, "history", "web")
	if !strings.Contains(hist, "ci:github/acme/shop") {
		t.Errorf("history does not say who paused:\n%s", hist)
	}

	d.expectCLI(0, w("default/web: delete done: deleted"), "delete", "web", "--timeout", "1m")
	eventually(t, "the proxy's port free after delete", 30*time.Second, func() bool {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return false
		}
		l.Close()
		return true
	})
	for _, p := range after {
		if alive(p) {
			t.Errorf("process %d of the deleted rollout still runs", p)
		}
	}
	d.expectCLI(1, w("default/web: promote refused (NotFound)"), "promote", "web")
	d.expectCLI(0, w("default/web: completed (revision 1)"), "apply", "-f", d.writeFile(rollout("web", listen, "v3", 0, 1, steps)), "--wait", "--timeout", "2m")
}
