// Package e2e runs the real binaries: `sluice dev` with the local platform,
// demoapp processes, real HTTP traffic through the rollout's proxy and real
// metrics through the embedded Prometheus.
package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devtest"
	"github.com/sluicehq/sluice/internal/poll"
)

func freeAddr(t *testing.T) string { return devtest.FreeAddr(t) }

// dev is one `sluice dev` process (internal/devtest) and what the tests
// here do with it.
type dev struct {
	*devtest.Dev
	t *testing.T
	// prom and state are --prometheus-listen and --state-dir.
	prom, state string
}

func newDev(t *testing.T) *dev {
	t.Helper()
	d := devtest.New(t, devtest.Options{})
	return &dev{Dev: d, t: t, prom: d.Prom, state: d.State}
}

// start runs sluice dev, or runs it again on the same state after kill.
func (d *dev) start() {
	d.t.Helper()
	d.Run()
	d.prom = d.Prom
}

// kill ends sluice dev with SIGKILL: nothing is shut down cleanly.
func (d *dev) kill() { d.Kill() }

// sluice runs the CLI against this sluice dev.
func (d *dev) sluice(args ...string) (int, string) {
	d.t.Helper()
	return d.Sluice(args...)
}

// apply writes manifest to a file and applies it.
func (d *dev) apply(manifest string, args ...string) (int, string) {
	d.t.Helper()
	return d.sluice(append([]string{"apply", "-f", d.WriteFile(manifest)}, args...)...)
}

// writeFile writes manifest to a new file and returns its path.
func (d *dev) writeFile(manifest string) string {
	d.t.Helper()
	return d.WriteFile(manifest)
}

// waitGet waits until `sluice get` shows every want (spaces squeezed).
func (d *dev) waitGet(name string, timeout time.Duration, want ...string) string {
	d.t.Helper()
	return d.waitShows([]string{"get", name}, timeout, want...)
}

// waitShows waits until the CLI run with args shows every want (spaces
// squeezed).
func (d *dev) waitShows(args []string, timeout time.Duration, want ...string) string {
	d.t.Helper()
	var out string
	poll.Until(d.t, fmt.Sprintf("sluice %s shows %q", strings.Join(args, " "), want), func() error {
		_, out = d.sluice(args...)
		s := squeeze(out)
		for _, w := range want {
			if !strings.Contains(s, squeeze(w)) {
				return fmt.Errorf("it shows:\n%s", out)
			}
		}
		return nil
	}, poll.Timeout(timeout), poll.Every(100*time.Millisecond))
	return out
}

func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	poll.True(t, what, cond, poll.Timeout(timeout), poll.Every(100*time.Millisecond))
}

// versions sends n requests to the proxy at addr and counts the answers by
// version (X-Version); failed requests count under "error".
func versions(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	out := map[string]int{}
	for i := 0; i < n; i++ {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			out["error"]++
			continue
		}
		resp.Body.Close()
		v := resp.Header.Get("X-Version")
		if resp.StatusCode >= 500 && v == "" {
			v = "error"
		}
		out[v]++
	}
	return out
}
