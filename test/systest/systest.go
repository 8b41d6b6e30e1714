// Package systest runs Sluice as its users do, for the fault-injection
// suite (test/chaos) and the process benchmarks (test/bench): the real
// service binaries as separate processes, supervised and restarted when they
// exit, on a NATS server the test can restart, with a real PromQL engine
// whose queries can be slowed or sent nowhere. The replicas and traffic
// services run on a recording data plane (package dataplane, binary
// worker) that completes every task at once.
package systest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/promserver"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// Quiet is a logger that drops everything.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// FreePort returns a TCP port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Bus is the NATS server, which a test may restart.
type Bus struct {
	URL string

	mu       sync.Mutex
	srv      *embedded.Server
	restarts int
}

// StartBus starts an embedded NATS server with JetStream on file storage.
func StartBus(t testing.TB) *Bus {
	t.Helper()
	srv, err := embedded.Start(embedded.Options{Port: FreePort(t), StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b := &Bus{srv: srv, URL: srv.ClientURL()}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.srv.Shutdown()
	})
	return b
}

// Restart stops the server, keeps it down for outage, and starts it again
// on the same port and store, as an operator restarting nats-server would.
func (b *Bus) Restart(outage time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	opts := b.srv.Options()
	b.srv.Shutdown()
	time.Sleep(outage)
	srv, err := embedded.Start(opts)
	if err != nil {
		return err
	}
	b.srv = srv
	b.restarts++
	return nil
}

// Restarts counts the restarts so far.
func (b *Bus) Restarts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.restarts
}

// Metric values the suite's Prometheus serves, by class label of
// chaos_success_ratio. The class "none" has no series.
var series = []struct {
	class string
	value float64
}{{"good", 0.99}, {"bad", 0.5}, {"nan", math.NaN()}}

// metricsSource serves the series for Prometheus to scrape.
func metricsSource(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# TYPE chaos_success_ratio gauge")
		for _, s := range series {
			fmt.Fprintf(w, "chaos_success_ratio{class=%q} %v\n", s.class, s.value)
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/metrics"
}

// Prometheus is the real PromQL engine (internal/promserver) scraping
// chaos_success_ratio{class="good"|"bad"|"nan"}, reached directly, through
// proxies that delay every query, or at an address where nothing listens.
type Prometheus struct {
	URL     string
	SlowURL string // queries delayed by SlowDelay
	Stalled string // queries delayed by StallDelay
	DownURL string
}

// Query delays of Prometheus.SlowURL and Prometheus.Stalled.
const (
	SlowDelay  = 400 * time.Millisecond
	StallDelay = 3 * time.Second
)

// StartPrometheus starts the engine and waits for its first scrape.
func StartPrometheus(t testing.TB) Prometheus {
	t.Helper()
	source := metricsSource(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := promserver.Start(ctx, promserver.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: 250 * time.Millisecond,
		Targets: func() []promserver.Target { return []promserver.Target{{URL: source}} },
		Logger:  Quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	target, _ := url.Parse(srv.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // the analyzer giving up on a stalled query is expected
	delayed := func(delay time.Duration) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
			proxy.ServeHTTP(w, r)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		t.Cleanup(func() { _ = hs.Close() })
		return "http://" + ln.Addr().String()
	}
	p := Prometheus{URL: srv.URL(), SlowURL: delayed(SlowDelay), Stalled: delayed(StallDelay), DownURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))}
	for end := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(`chaos_success_ratio{class="good"}`))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `"good"`) {
				return p
			}
		}
		if time.Now().After(end) {
			t.Fatal("Prometheus scraped nothing in 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Proc is one service process, started again whenever it exits until the
// system stops.
type Proc struct {
	Name    string // e.g. orchestrator-1
	Service string // orchestrator, analyzer, replicas, traffic
	Args    []string
	Log     string
	Env     []string // extra environment, besides the test's
	ready   string   // the /readyz URL

	mu      sync.Mutex
	cmd     *exec.Cmd
	starts  int
	started time.Time
	held    chan struct{} // closed by Release; nil when not held
}

// Started returns when p was last started.
func (p *Proc) Started() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// Spec describes the processes of a System.
type Spec struct {
	// NATS is the server's URL; DataPlane the data plane's.
	NATS, DataPlane string
	// Replicas is how many processes of each service run (default 1).
	Replicas int
	// AckWait is every service's --bus-ack-wait (default 2s).
	AckWait time.Duration
	// WorkerFaults are extra flags of the replicas and traffic workers
	// (--crash-before, ...).
	WorkerFaults []string
	// Orchestrator and Analyzer are extra flags of the orchestrators and
	// of the analyzers.
	Orchestrator, Analyzer []string
	// LogDir receives one log file per process.
	LogDir string
	// Restart is the delay before a process that exited is started again
	// (default 300ms).
	Restart time.Duration
	// BusReplicas is every service's --bus-replicas (default 1): 3 on a
	// three-node cluster.
	BusReplicas int
	// Env is extra environment of processes by name ("orchestrator-1"),
	// e.g. clock.EnvTestSkew.
	Env map[string][]string
	// Held names processes that are not started until Release.
	Held []string
	// Local runs every service binary as an operator does instead of
	// the workers on DataPlane: sluice-replicas --platform local (each
	// with its own state directory) and sluice-traffic --router local
	// beside the orchestrator and the analyzer, and sluice-gateway and
	// sluice-notifier too. DataPlane is then not needed.
	Local bool
	// Place, when set, says where process name (orchestrator-1,
	// traffic-2, ...) runs: the partition tests run each in a host of a
	// test network (package netns).
	Place func(name string) Placement
}

// Placement is where one process runs.
type Placement struct {
	// Wrap is the command prefix it runs under, e.g. netns.Host.Wrap().
	Wrap []string
	// Host is the address its --http-listen binds, one the test reaches
	// (default 127.0.0.1).
	Host string
	// NATS, when set, replaces Spec.NATS as its --nats-url: a process
	// that may reach only some of the nodes.
	NATS string
}

// System is every service process, supervised.
type System struct {
	Procs []*Proc

	t       testing.TB
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	restart time.Duration

	mu    sync.Mutex
	kills map[string]int // by service
}

// Start starts the orchestrator, analyzer, replicas and traffic processes
// s describes; they stop when the test ends.
func Start(t testing.TB, s Spec) *System {
	t.Helper()
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if s.AckWait == 0 {
		s.AckWait = 2 * time.Second
	}
	if s.Restart == 0 {
		s.Restart = 300 * time.Millisecond
	}
	if s.BusReplicas == 0 {
		s.BusReplicas = 1
	}
	bins := map[string]string{}
	for _, name := range []string{"sluice-orchestrator", "sluice-analyzer", "worker", "sluice-replicas", "sluice-traffic", "sluice-gateway", "sluice-notifier"} {
		bins[name] = testbin.Path(t, name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sys := &System{t: t, ctx: ctx, stop: cancel, restart: s.Restart, kills: map[string]int{}}
	common := []string{"--bus-ack-wait", s.AckWait.String(), "--bus-replicas", strconv.Itoa(s.BusReplicas), "--log-level", "info"}
	var edge []string // the gateway's and notifier's configuration files
	if s.Local {
		edge = edgeConfig(t)
	}
	for i := 1; i <= s.Replicas; i++ {
		add := func(service, bin string, extra ...string) {
			name := fmt.Sprintf("%s-%d", service, i)
			var place Placement
			if s.Place != nil {
				place = s.Place(name)
			}
			if place.Host == "" {
				place.Host = "127.0.0.1"
			}
			if place.NATS == "" {
				place.NATS = s.NATS
			}
			listen := net.JoinHostPort(place.Host, strconv.Itoa(FreePort(t)))
			args := append(append([]string{}, place.Wrap...), bins[bin], "--http-listen", listen, "--nats-url", place.NATS)
			args = append(append(args, common...), extra...)
			p := &Proc{Name: name, Service: service, Args: args, Env: s.Env[name],
				Log: filepath.Join(s.LogDir, name+".log"), ready: "http://" + listen + "/readyz"}
			if slices.Contains(s.Held, name) {
				p.held = make(chan struct{})
			}
			sys.Procs = append(sys.Procs, p)
		}
		add("orchestrator", "sluice-orchestrator", s.Orchestrator...)
		add("analyzer", "sluice-analyzer", append([]string{"--lease-margin", "2s"}, s.Analyzer...)...)
		if s.Local {
			add("replicas", "sluice-replicas", "--platform", "local", "--state-dir", t.TempDir(), "--stop-on-exit")
			add("traffic", "sluice-traffic", "--router", "local")
			add("gateway", "sluice-gateway", "--listen", fmt.Sprintf("127.0.0.1:%d", FreePort(t)), "--auth-config", edge[0])
			add("notifier", "sluice-notifier", "--listen", "off", "--config", edge[1])
			continue
		}
		for _, svc := range []string{"replicas", "traffic"} {
			name := fmt.Sprintf("%s-%d", svc, i)
			add(svc, "worker", append([]string{"--service", svc, "--data-plane", s.DataPlane, "--name", name}, s.WorkerFaults...)...)
		}
	}
	for _, p := range sys.Procs {
		sys.wg.Go(func() { sys.supervise(p) })
	}
	t.Cleanup(sys.Shutdown)
	return sys
}

// edgeConfig writes the gateway's auth file (a token for a viewer) and the
// notifier's configuration (one webhook nobody subscribes to) and returns
// their paths.
func edgeConfig(t testing.TB) []string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"auth.yaml": fmt.Sprintf("tokens: [{name: systest, hash: \"sha256:%x\"}]\nroles: [{role: viewer, subjects: [\"*\"], namespaces: [\"*\"]}]\n", sha256.Sum256([]byte("systest"))),
		"notifications.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: argo-rollouts-notification-configmap}
data:
  service.webhook.hook: |
    url: http://127.0.0.1:1/
`,
	}
	var paths []string
	for _, name := range []string{"auth.yaml", "notifications.yaml"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(files[name]), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// supervise runs p until the system stops, starting it again after it
// exits (killed by the test or by itself).
func (s *System) supervise(p *Proc) {
	for s.ctx.Err() == nil {
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held != nil {
			select {
			case <-held:
			case <-s.ctx.Done():
				return
			}
		}
		f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			s.t.Error(err)
			return
		}
		cmd := exec.Command(p.Args[0], p.Args[1:]...)
		cmd.Stdout, cmd.Stderr = f, f
		if len(p.Env) > 0 {
			cmd.Env = append(os.Environ(), p.Env...)
		}
		if err := cmd.Start(); err != nil {
			f.Close()
			s.t.Errorf("start %s: %v", p.Name, err)
			return
		}
		p.mu.Lock()
		p.cmd = cmd
		p.starts++
		p.started = time.Now()
		p.mu.Unlock()
		_ = cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.cmd = nil
		p.mu.Unlock()
		// A usage error (a flag the binary does not take, a value it
		// refuses) is the test's mistake, and the same again on every
		// start: say so, with the process's own words, rather than start
		// it again until the test's deadline says only "not ready".
		if cmd.ProcessState.ExitCode() == daemon.ExitUsage && s.ctx.Err() == nil {
			s.t.Errorf("%s exited with a usage error (exit %d); not started again:\n%s", p.Name, daemon.ExitUsage, p.logTail(20))
			return
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(s.restart):
		}
	}
}

// Ready reports whether every process answers /readyz with 200.
func (s *System) Ready() bool {
	for _, p := range s.Procs {
		if !p.Ready() {
			return false
		}
	}
	return true
}

// Starts counts the times p was started: more than one means it exited
// (or was killed) and was started again.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Ready reports whether p answers /readyz with 200.
func (p *Proc) Ready() bool { return p.NotReady() == "" }

// NotReady is why p is not ready, as its /readyz says (or why /readyz
// did not answer); empty when it is ready.
func (p *Proc) NotReady() string {
	resp, err := http.Get(p.ready)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// URL is the address of path on p's HTTP server (/metrics, ...).
func (p *Proc) URL(path string) string { return strings.TrimSuffix(p.ready, "/readyz") + path }

// Proc returns the process named name, or nil.
func (s *System) Proc(name string) *Proc {
	for _, p := range s.Procs {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Kill sends SIGKILL to p; it reports false when p was not running.
func (s *System) Kill(p *Proc) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || p.cmd.Process.Signal(syscall.SIGKILL) != nil {
		return false
	}
	s.mu.Lock()
	s.kills[p.Service]++
	s.mu.Unlock()
	return true
}

// Hold sends SIGKILL to p and keeps it stopped until Release.
func (s *System) Hold(p *Proc) {
	p.mu.Lock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
	p.mu.Unlock()
	s.Kill(p)
}

// Release starts p again after Hold (or Spec.Held).
func (s *System) Release(p *Proc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// Pause stops p with SIGSTOP, as a long GC pause or a frozen VM does: it
// keeps its connections and its work in hand and does nothing until
// Resume. It reports false when p was not running.
func (s *System) Pause(p *Proc) bool { return p.signal(syscall.SIGSTOP) }

// Resume continues p after Pause (SIGCONT).
func (s *System) Resume(p *Proc) bool { return p.signal(syscall.SIGCONT) }

func (p *Proc) signal(sig syscall.Signal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && p.cmd.Process != nil && p.cmd.Process.Signal(sig) == nil
}

// KillRandom sends SIGKILL to a random process.
func (s *System) KillRandom() { s.Kill(s.Procs[rand.N(len(s.Procs))]) }

// Kills returns the SIGKILLs so far, by service.
func (s *System) Kills() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.kills {
		out[k] = v
	}
	return out
}

// RSS is p's resident memory now, in bytes (0 when it is not running).
func (p *Proc) RSS() int64 {
	p.mu.Lock()
	var pid int
	if p.cmd != nil && p.cmd.Process != nil {
		pid = p.cmd.Process.Pid
	}
	p.mu.Unlock()
	if pid == 0 {
		return 0
	}
	return RSS(pid)
}

// RSS is the resident memory of process pid, in bytes, from
// /proc/<pid>/status (0 when unknown).
func RSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// Shutdown stops every process gracefully (SIGTERM) and waits.
func (s *System) Shutdown() {
	s.stop()
	s.signalAll(syscall.SIGTERM)
	s.signalAll(syscall.SIGCONT) // a paused process must run to exit
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		s.signalAll(syscall.SIGKILL)
		<-done
	}
}

func (s *System) signalAll(sig syscall.Signal) {
	for _, p := range s.Procs {
		p.mu.Lock()
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(sig)
		}
		p.mu.Unlock()
	}
}

// LogTails returns the last lines of every process's log, for a failure.
func (s *System) LogTails(lines int) string {
	var b strings.Builder
	for _, p := range s.Procs {
		p.mu.Lock()
		starts := p.starts
		p.mu.Unlock()
		fmt.Fprintf(&b, "--- %s (started %d times)\n%s\n", p.Name, starts, p.logTail(lines))
	}
	return b.String()
}

// logTail returns the last lines of p's log.
func (p *Proc) logTail(lines int) string { return fileTail(p.Log, lines) }

// fileTail returns the last lines of the file at path.
func fileTail(path string, lines int) string {
	data, _ := os.ReadFile(path)
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
