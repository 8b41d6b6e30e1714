package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/devtest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// busService starts as every Sluice service does: it provisions the
// streams and a bucket through a Lifecycle.
type busService struct {
	env daemon.Env
	lc  daemon.Lifecycle
}

func (b *busService) Run(ctx context.Context) error {
	return b.lc.Run(ctx, daemon.Plan{Name: "test", Client: b.env.Client, Bus: b.env.Bus, Log: eventstest.Quiet(),
		Needs: events.Needs{Buckets: []events.Bucket{{Name: "sluice-test", Description: "test", History: 1}}},
		Start: func(context.Context, *daemon.Running) error { return nil }})
}

func (b *busService) Ready() bool { return b.lc.Ready() }

func busSpec() daemon.Spec {
	return daemon.Spec{Name: "sluice-test", Build: func(env daemon.Env) (daemon.Service, error) { return &busService{env: env}, nil }}
}

// readyz is /readyz's status and body at addr.
func readyz(addr string) (int, string, error) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// running runs spec with args until the test ends, and fails the test if
// it exits before.
type running struct {
	t      *testing.T
	addr   string
	exit   chan int
	stderr *systemtest.Logs
	cancel context.CancelFunc
}

func start(t *testing.T, spec daemon.Spec, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, addr: devtest.FreeAddr(t), exit: make(chan int, 1), stderr: &systemtest.Logs{}, cancel: cancel}
	go func() { r.exit <- daemon.Run(ctx, spec, append(args, "--http-listen", r.addr), r.stderr) }()
	return r
}

// waitReadyz waits until /readyz answers code with a body holding every
// one of want, failing the test if the process exits first.
func (r *running) waitReadyz(what string, code int, want ...string) {
	r.t.Helper()
	poll.Until(r.t, what, func() error {
		select {
		case c := <-r.exit:
			r.t.Fatalf("exited %d while it should wait: %s", c, r.stderr.String())
		default:
		}
		got, body, err := readyz(r.addr)
		if err != nil {
			return err
		}
		if got != code {
			return fmt.Errorf("/readyz %d %q", got, body)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				return fmt.Errorf("/readyz %d %q lacks %q", got, body, w)
			}
		}
		return nil
	})
}

// stop ends the process and checks that it exits 0.
func (r *running) stop() {
	r.t.Helper()
	r.cancel()
	if code := <-r.exit; code != daemon.ExitOK {
		r.t.Errorf("exit %d after stop: %s", code, r.stderr.String())
	}
}

// TestServiceStartedBeforeNATSBecomesReadyWhenItStarts: a service whose
// NATS server is not up yet says on /readyz what it waits for, logs it,
// and becomes ready once the server starts, without exiting.
func TestServiceStartedBeforeNATSBecomesReadyWhenItStarts(t *testing.T) {
	_, portStr, _ := net.SplitHostPort(devtest.FreeAddr(t))
	port, _ := strconv.Atoi(portStr)
	url := "nats://127.0.0.1:" + portStr
	r := start(t, busSpec(), "--nats-url", url)
	r.waitReadyz("/readyz to say it waits for NATS", http.StatusServiceUnavailable,
		"not ready: waiting for NATS at "+url+": attempt", "no servers available for connection", "trying again in")
	if log := r.stderr.String(); !strings.Contains(log, `msg="waiting for NATS"`) {
		t.Errorf("the wait is not logged: %s", log)
	}
	srv, err := embedded.Start(embedded.Options{Port: port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	r.waitReadyz("the service ready once NATS is up", http.StatusOK, "ready")
	r.stop()
}

// flakyService fails its start as a service does whose bus does not
// answer in time, until allowed to start.
type flakyService struct {
	allowed *atomic.Bool
	ready   atomic.Bool
}

func (f *flakyService) Run(ctx context.Context) error {
	if !f.allowed.Load() {
		return fmt.Errorf("provision bucket sluice-test: %w", context.DeadlineExceeded)
	}
	f.ready.Store(true)
	<-ctx.Done()
	return nil
}

func (f *flakyService) Ready() bool { return f.ready.Load() }

// TestServiceWhoseBusDoesNotAnswerIsStartedAgain: a start that fails
// because the bus did not answer does not end the process: the service
// is built and started again, and /readyz says why it is not ready.
func TestServiceWhoseBusDoesNotAnswerIsStartedAgain(t *testing.T) {
	srv := eventstest.StartServer(t)
	var allowed atomic.Bool
	var builds atomic.Int32
	r := start(t, daemon.Spec{Name: "sluice-test", Build: func(daemon.Env) (daemon.Service, error) {
		builds.Add(1)
		return &flakyService{allowed: &allowed}, nil
	}}, "--nats-url", srv.ClientURL())
	r.waitReadyz("/readyz to say it waits for the bus", http.StatusServiceUnavailable,
		"not ready: waiting for the bus: attempt", "provision bucket sluice-test: context deadline exceeded")
	poll.True(t, "the service built again", func() bool { return builds.Load() >= 2 })
	allowed.Store(true)
	r.waitReadyz("the service ready once its bus answers", http.StatusOK, "ready")
	if log := r.stderr.String(); !strings.Contains(log, `msg="waiting for the bus"`) || !strings.Contains(log, "provision bucket sluice-test") {
		t.Errorf("the wait is not logged with its reason: %s", log)
	}
	r.stop()
}

// TestConfigurationErrorsEndTheProcess: what waiting cannot cure ends the
// process at once with the reason.
func TestConfigurationErrorsEndTheProcess(t *testing.T) {
	open := eventstest.StartServer(t)
	guarded, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer guarded.Shutdown()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad credentials", []string{"--nats-url", guarded.ClientURL(), "--nats-token", "wrong"}, "Authorization Violation"},
		{"replicas on a server not clustered", []string{"--nats-url", open.ClientURL(), "--bus-replicas", "3"}, "--bus-replicas 3 needs a JetStream cluster of at least 3 servers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stderr systemtest.Logs
			code := daemon.Run(ctx, busSpec(), append(tt.args, "--http-listen", "127.0.0.1:0"), &stderr)
			if code != daemon.ExitFail || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, want %d with %q: %s", code, daemon.ExitFail, tt.want, stderr.String())
			}
			if ctx.Err() != nil {
				t.Errorf("it waited until the context ended instead of exiting: %s", stderr.String())
			}
		})
	}
}
