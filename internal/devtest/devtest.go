// Package devtest runs a real `sluice dev` for a test: the binaries from
// internal/testbin, free loopback ports, a working directory holding
// bin/demoapp (the examples' apps run as `bin/demoapp`), and a clean stop
// that leaves no process behind.
package devtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/internal/testbin"
)

// StartTimeout bounds how long Start waits for sluice dev to be ready.
const StartTimeout = 90 * time.Second

// Options configure a Dev.
type Options struct {
	// Args are added to sluice dev's command line (e.g. --dashboard-auth).
	Args []string
}

// Dev is one `sluice dev` process and the addresses it serves.
type Dev struct {
	t    testing.TB
	opts Options
	// Work is the working directory; State is --state-dir.
	Work, State string
	// NATS, Prom, HTTP and Dashboard are the host:port of --nats-listen,
	// --prometheus-listen, --http-listen and --dashboard-listen.
	NATS, Prom, HTTP, Dashboard string

	cli    string
	cmd    *exec.Cmd
	exited chan error
	out    *systemtest.Logs
}

// FreeAddr returns a loopback address nothing listens on at the moment.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start runs sluice dev (New, then Run) and returns once it serves /readyz
// and the dashboard; it is stopped when the test ends.
func Start(t testing.TB, opts Options) *Dev {
	t.Helper()
	d := New(t, opts)
	d.Run()
	return d
}

// New prepares a sluice dev that Run starts; it is stopped when the test
// ends.
func New(t testing.TB, opts Options) *Dev {
	t.Helper()
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testbin.Path(t, "demoapp"), filepath.Join(work, "bin", "demoapp")); err != nil {
		t.Fatal(err)
	}
	d := &Dev{t: t, opts: opts, Work: work, State: filepath.Join(work, "state"), cli: testbin.Path(t, "sluice")}
	d.NATS, d.Prom, d.HTTP, d.Dashboard = FreeAddr(t), FreeAddr(t), FreeAddr(t), FreeAddr(t)
	t.Cleanup(d.Stop)
	// Registered after Stop, so run before it: a failed test shows what
	// sluice dev said (warnings and errors) while it ran.
	t.Cleanup(func() {
		if t.Failed() && d.out != nil {
			t.Logf("sluice dev's output:\n%s", d.out.String())
		}
	})
	return d
}

// Run starts sluice dev, or starts it again after Kill or Stop with the
// same state and, when they are still free, the same ports, and returns
// once it serves /readyz and the dashboard. Ports are picked free but may
// be taken by another test before sluice dev binds them: then it starts
// again on new ones.
func (d *Dev) Run() {
	d.t.Helper()
	for attempt := 1; ; attempt++ {
		err := d.tryStart()
		if err == nil {
			return
		}
		if attempt == 3 || !strings.Contains(d.out.String(), "address already in use") {
			d.t.Fatalf("sluice dev did not start: %v\n%s", err, d.out.String())
		}
		d.NATS, d.Prom, d.HTTP, d.Dashboard = FreeAddr(d.t), FreeAddr(d.t), FreeAddr(d.t), FreeAddr(d.t)
	}
}

// Kill ends sluice dev with SIGKILL: nothing is shut down cleanly, and the
// processes it started are left running, as after a crash.
func (d *Dev) Kill() {
	d.t.Helper()
	if d.cmd == nil {
		d.t.Fatal("devtest: Kill without a running sluice dev")
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

func (d *Dev) tryStart() error {
	d.out = &systemtest.Logs{}
	args := append([]string{"dev", "--state-dir", d.State,
		"--nats-listen", d.NATS, "--prometheus-listen", d.Prom, "--http-listen", d.HTTP,
		"--dashboard-listen", d.Dashboard, "--log-level", "warn"}, d.opts.Args...)
	d.cmd = exec.Command(d.cli, args...)
	d.cmd.Dir = d.Work
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	deadline := time.After(StartTimeout)
	client := &http.Client{Timeout: 5 * time.Second}
	ready := func(url string) bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for {
		select {
		case err := <-exited:
			d.cmd = nil
			return fmt.Errorf("exited: %v", err)
		case <-deadline:
			d.exited = exited
			d.Stop()
			return fmt.Errorf("not ready within %s", StartTimeout)
		case <-time.After(100 * time.Millisecond):
		}
		if ready("http://"+d.HTTP+"/readyz") && ready("http://"+d.Dashboard+"/") {
			d.exited = exited
			return nil
		}
	}
}

// Stop ends sluice dev with SIGINT (SIGKILL if it has not left within a
// minute) and every demo app it started. The test's cleanup calls it.
func (d *Dev) Stop() {
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.exited:
		case <-time.After(time.Minute):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		d.cmd = nil
	}
	// Nothing this test started may outlive it.
	_ = exec.Command("pkill", "-KILL", "-f", filepath.Join(d.Work, "bin", "demoapp")).Run()
}

// Output is what sluice dev has written so far.
func (d *Dev) Output() string { return d.out.String() }

// Sluice runs the CLI against this sluice dev and returns its exit code
// and output.
func (d *Dev) Sluice(args ...string) (int, string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.cli, append(args, "--nats-url", "nats://"+d.NATS)...)
	cmd.Dir = d.Work
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("sluice %v: %v", args, err)
	}
	return code, string(out)
}

// WriteFile writes manifest to a new file in the working directory and
// returns its path.
func (d *Dev) WriteFile(manifest string) string {
	d.t.Helper()
	f, err := os.CreateTemp(d.Work, "manifest-*.yaml")
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := f.WriteString(manifest); err != nil {
		d.t.Fatal(err)
	}
	f.Close()
	return f.Name()
}

// Apply writes manifest to a file and applies it with args; it fails the
// test unless sluice apply exits 0.
func (d *Dev) Apply(manifest string, args ...string) string {
	d.t.Helper()
	code, out := d.Sluice(append([]string{"apply", "-f", d.WriteFile(manifest)}, args...)...)
	if code != 0 {
		d.t.Fatalf("sluice apply %v: exit %d\n%s\nsluice dev:\n%s", args, code, out, d.Output())
	}
	return out
}

// SuccessRate is an AnalysisTemplate "success-rate" over the local proxy's
// metrics in sluice dev's Prometheus at promAddr: the share of the canary's
// requests that did not fail, measured three times, 3 s apart, that must
// stay at 0.95 or more.
func SuccessRate(promAddr string) string {
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
  - name: rollout
  metrics:
  - name: success-rate
    initialDelay: 5s
    interval: 3s
    count: 3
    failureLimit: 1
    successCondition: len(result) > 0 && result[0] >= 0.95
    failureCondition: len(result) > 0 && result[0] < 0.95
    provider:
      prometheus:
        address: http://%s
        query: |
          (sum(rate(sluice_proxy_requests_total{rollout="{{args.rollout}}",role="canary",code!~"5.."}[10s])) or vector(0))
          /
          sum(rate(sluice_proxy_requests_total{rollout="{{args.rollout}}",role="canary"}[10s]))
`, promAddr)
}

// Load sends a GET to the proxy at addr every 20 ms until stop is called
// (more than once is fine), so that analyses have requests to measure.
// Each answer goes to observe when it is not nil (err set when the request
// failed).
func Load(addr string, observe func(*http.Response, error)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				if observe != nil {
					observe(resp, err)
				}
				if err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}
