// Package e2e runs the real binaries: `sluice dev` with the local platform,
// demoapp processes, real HTTP traffic through the rollout's proxy and real
// metrics through the embedded Prometheus.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// dev is one `sluice dev` process and the addresses it uses.
type dev struct {
	t          *testing.T
	work       string // working directory: bin/demoapp lives here
	cli        string // the sluice binary
	state      string
	nats, prom string
	http       string
	cmd        *exec.Cmd
	exited     chan error // receives the process's end, once
	out        *bytes.Buffer
}

func newDev(t *testing.T) *dev {
	t.Helper()
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testbin.Path(t, "demoapp"), filepath.Join(work, "bin", "demoapp")); err != nil {
		t.Fatal(err)
	}
	d := &dev{t: t, work: work, cli: testbin.Path(t, "sluice"), state: filepath.Join(work, "state"), nats: freeAddr(t), prom: freeAddr(t), http: freeAddr(t)}
	t.Cleanup(d.stop)
	return d
}

// start runs sluice dev and waits until it is ready. Ports are picked free
// but may be taken by another test before sluice dev binds them: then it
// starts again on new ones.
func (d *dev) start() {
	d.t.Helper()
	for attempt := 1; ; attempt++ {
		err := d.tryStart()
		if err == nil {
			return
		}
		if attempt == 3 || !strings.Contains(d.out.String(), "address already in use") {
			d.t.Fatalf("sluice dev did not start: %v\n%s", err, d.out.String())
		}
		d.nats, d.prom, d.http = freeAddr(d.t), freeAddr(d.t), freeAddr(d.t)
	}
}

func (d *dev) tryStart() error {
	d.out = &bytes.Buffer{}
	d.cmd = exec.Command(d.cli, "dev", "--state-dir", d.state,
		"--nats-listen", d.nats, "--prometheus-listen", d.prom, "--http-listen", d.http, "--dashboard-listen", "127.0.0.1:0", "--log-level", "warn")
	d.cmd.Dir = d.work
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case err := <-exited:
			d.cmd = nil
			return fmt.Errorf("exited: %v", err)
		case <-deadline:
			return fmt.Errorf("not ready within 60s")
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get("http://" + d.http + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			d.exited = exited
			return nil
		}
	}
}

// kill ends sluice dev with SIGKILL: nothing is shut down cleanly.
func (d *dev) kill() {
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

func (d *dev) stop() {
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.exited:
		case <-time.After(60 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		d.cmd = nil
	}
	// Nothing this test started may outlive it.
	_ = exec.Command("pkill", "-KILL", "-f", filepath.Join(d.work, "bin", "demoapp")).Run()
}

// sluice runs the CLI against this sluice dev.
func (d *dev) sluice(args ...string) (int, string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.cli, append(args, "--nats-url", "nats://"+d.nats)...)
	cmd.Dir = d.work
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("sluice %v: %v", args, err)
	}
	return code, string(out)
}

// apply writes manifest to a file and applies it.
func (d *dev) apply(manifest string, args ...string) (int, string) {
	d.t.Helper()
	return d.sluice(append([]string{"apply", "-f", d.writeFile(manifest)}, args...)...)
}

// writeFile writes manifest to a new file and returns its path.
func (d *dev) writeFile(manifest string) string {
	d.t.Helper()
	f, err := os.CreateTemp(d.work, "manifest-*.yaml")
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := f.WriteString(manifest); err != nil {
		d.t.Fatal(err)
	}
	f.Close()
	return f.Name()
}

// waitGet waits until `sluice get` shows every want (spaces squeezed).
func (d *dev) waitGet(name string, timeout time.Duration, want ...string) string {
	d.t.Helper()
	var out string
	eventually(d.t, fmt.Sprintf("sluice get %s shows %q", name, want), timeout, func() bool {
		_, out = d.sluice("get", name)
		s := squeeze(out)
		for _, w := range want {
			if !strings.Contains(s, squeeze(w)) {
				return false
			}
		}
		return true
	})
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
