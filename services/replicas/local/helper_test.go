package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

// The helper process: the test binary run again as the "app" of a pod
// template, configured through its container env.
const (
	helperEnv       = "SLUICE_LOCAL_HELPER" // "1" makes the test binary the app
	helperExit      = "HELPER_EXIT"         // exit at once with this code...
	helperExitMsg   = "HELPER_EXIT_MESSAGE" // ...after writing this to stderr
	helperReadyFile = "HELPER_READY_FILE"   // /healthz is 200 only while this file exists
	helperNotReady  = "HELPER_NEVER_READY"  // /healthz is always 503
	helperTermDir   = "HELPER_TERM_DIR"     // on SIGTERM, write <dir>/<pid> and exit 0
	helperListen    = "HELPER_LISTEN"       // address to serve on: 127.0.0.1:$(PORT), expanded in env
	helperParentPID = "HELPER_PARENT_PID"   // exit when reparented: the test binary died
	helperChildDir  = "HELPER_CHILD_DIR"    // start a child that sleeps; write its pid to <dir>/<pid>
	helperSleep     = "HELPER_SLEEP"        // be that child: sleep until killed
	helperDrain     = "HELPER_DRAIN"        // on SIGTERM, finish the requests in flight before exiting
)

// TestMain runs the test binary as the app the local backend runs when it
// is started with SLUICE_LOCAL_HELPER=1 (the helper-process pattern).
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperMain() int {
	if os.Getenv(helperSleep) != "" {
		// Bounded, so that a broken group kill leaks nothing for long.
		time.Sleep(2 * time.Minute)
		return 0
	}
	if dir := os.Getenv(helperChildDir); dir != "" {
		// A child in the helper's process group, as a shell script's
		// server would be. It does not watch its parent.
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = []string{helperEnv + "=1", helperSleep + "=1"}
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = os.WriteFile(filepath.Join(dir, strconv.Itoa(os.Getpid())), []byte(strconv.Itoa(child.Process.Pid)), 0o644)
	}
	if code := os.Getenv(helperExit); code != "" {
		n, _ := strconv.Atoi(code)
		fmt.Fprintln(os.Stderr, os.Getenv(helperExitMsg))
		return n
	}
	if ppid, err := strconv.Atoi(os.Getenv(helperParentPID)); err == nil {
		go func() {
			for range time.Tick(100 * time.Millisecond) {
				if os.Getppid() != ppid {
					os.Exit(9)
				}
			}
		}()
	}
	mux := http.NewServeMux()
	srv := &http.Server{Addr: os.Getenv(helperListen), Handler: mux}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		if dir := os.Getenv(helperTermDir); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, strconv.Itoa(os.Getpid())), []byte("SIGTERM\n"), 0o644)
		}
		if os.Getenv(helperDrain) != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
		}
		os.Exit(0)
	}()
	exiting := make(chan struct{}) // never closed: the handler above exits
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, os.Getpid()) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ready := os.Getenv(helperNotReady) == ""
		if f := os.Getenv(helperReadyFile); f != "" {
			if _, err := os.Stat(f); err != nil {
				ready = false
			}
		}
		if !ready {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/crash", func(http.ResponseWriter, *http.Request) {
		fmt.Fprintln(os.Stderr, "crashing on request")
		os.Exit(3)
	})
	fmt.Println("helper listening on", os.Getenv(helperListen))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Shutdown returns ListenAndServe at once; the SIGTERM handler exits
	// the process once the requests in flight are done.
	<-exiting
	return 0
}

// app describes a helper process for a pod template.
type app struct {
	env   map[string]string
	probe *corev1.Probe
	// ports are the container's ports (default: one named http, 8080).
	ports []corev1.ContainerPort
}

// httpProbe probes /healthz every second on port.
func httpProbe(port intstr.IntOrString) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: port}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
}

func (a app) template() corev1.PodTemplateSpec {
	env := []corev1.EnvVar{
		{Name: helperEnv, Value: "1"},
		{Name: helperParentPID, Value: strconv.Itoa(os.Getpid())},
		// Exercises $(VAR) in env: PORT is defined before the container's env.
		{Name: helperListen, Value: "127.0.0.1:$(PORT)"},
	}
	for k, v := range a.env {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	ports := a.ports
	if ports == nil {
		ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	}
	grace := int64(5)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "helper"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:           "app",
				Command:        []string{os.Args[0]},
				Args:           []string{"-test.run=^$"},
				Env:            env,
				Ports:          ports,
				ReadinessProbe: a.probe,
			}},
		},
	}
}

func scaleOf(minReady int32, revs ...tasks.RevisionScale) tasks.Scale {
	return tasks.Scale{Workload: tasks.Workload{MinReadySeconds: minReady}, Revisions: revs}
}

func revScale(revision int64, hash string, replicas int32, tmpl corev1.PodTemplateSpec) tasks.RevisionScale {
	return tasks.RevisionScale{Revision: revision, PodHash: hash, Role: spec.RoleStable, Replicas: replicas, Template: tmpl}
}

// env is a bus and the endpoints bucket for one test.
type env struct {
	client *events.Client
	store  endpoints.Store
}

func newEnv(t *testing.T) env {
	t.Helper()
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	s, err := endpoints.Open(ctx, c.JetStream(), events.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return env{client: c, store: s}
}

// backend starts a backend on dir that stops its processes when the test
// ends, and kills whatever is left in dir after that.
func (e env) backend(t *testing.T, dir string, edit ...func(*Config)) *Backend {
	t.Helper()
	killLeftovers(t, dir)
	cfg := Config{
		StateDir: dir, JetStream: e.client.JetStream(), Logger: eventstest.Quiet(),
		RestartBackoff: 100 * time.Millisecond, RestartBackoffMax: 500 * time.Millisecond,
		StopOnClose: true,
	}
	for _, f := range edit {
		f(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

var leftovers sync.Map // state dirs with a cleanup registered

// killLeftovers makes sure no process started under dir outlives the test,
// whatever happened to the backends: it kills the process group of every
// state file still there.
func killLeftovers(t *testing.T, dir string) {
	if _, loaded := leftovers.LoadOrStore(t.Name()+"\x00"+dir, true); loaded {
		return
	}
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join(dir, stateSubdir, "*", "*", "*.json"))
		for _, f := range files {
			var pf procFile
			if readJSON(f, &pf) == nil && alive(pf.PID, pf.StartTicks) {
				t.Errorf("process %d (%s) still running after the test; killing it", pf.PID, f)
				signalGroup(pf.PID, syscall.SIGKILL)
			}
		}
	})
}

// entry reads a revision's endpoints entry; false when there is none.
func (e env) entry(t *testing.T, r events.Ref, hash string) (endpoints.Revision, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	kv, err := e.store.KV.Get(ctx, endpoints.Key(r, hash))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return endpoints.Revision{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var rev endpoints.Revision
	if err := json.Unmarshal(kv.Value(), &rev); err != nil {
		t.Fatal(err)
	}
	return rev, true
}

// procView is what a test sees of one process.
type procView struct {
	pid        int
	ready      bool
	readySince time.Time
	restarts   int
	lastExit   string
	lastProbe  string
}

// procs returns the revision's processes not being stopped.
func (b *Backend) procsOf(r events.Ref, hash string) []procView {
	b.mu.Lock()
	defer b.mu.Unlock()
	ro := b.rollouts[r]
	if ro == nil || ro.revisions[hash] == nil {
		return nil
	}
	var out []procView
	for _, p := range ro.revisions[hash].procs {
		if p.stopping {
			continue
		}
		v := procView{ready: p.ready, readySince: p.readySince, restarts: p.restarts, lastExit: p.lastExit, lastProbe: p.lastProbe}
		if p.h != nil {
			v.pid = p.h.pid
		}
		out = append(out, v)
	}
	return out
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf [64]byte
	n, _ := resp.Body.Read(buf[:])
	return string(buf[:n])
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	t.Cleanup(cancel)
	return ctx
}

// probedApp is a helper app ready once /healthz answers (the probe names
// the first containerPort) that records its SIGTERM in terms.
func probedApp(terms string) corev1.PodTemplateSpec {
	return app{env: map[string]string{helperTermDir: terms}, probe: httpProbe(intstr.FromString("http"))}.template()
}

// keepRunning makes a backend leave its processes running on Close, for
// the next backend on its state directory to adopt.
func keepRunning(c *Config) { c.StopOnClose = false }

// proxy starts a local proxy on e's bus, which finds the backend's
// processes through the endpoints bucket as in sluice dev.
func (e env) proxy(t *testing.T) *localproxy.Router {
	t.Helper()
	proxy, err := localproxy.New(localproxy.Config{JetStream: e.client.JetStream(), Registerer: prometheus.NewRegistry(), Logger: eventstest.Quiet(), DrainTimeout: eventstest.Wait})
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Start(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close(context.Background()) })
	return proxy
}
