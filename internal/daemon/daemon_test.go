package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/buildinfo"
	"github.com/sluicehq/sluice/pkg/events/embedded"
)

type fakeService struct {
	ready   atomic.Bool
	started chan struct{}
}

func (f *fakeService) Run(ctx context.Context) error {
	close(f.started)
	<-ctx.Done()
	return nil
}

func (f *fakeService) Ready() bool { return f.ready.Load() }

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServiceEndpointsFollowReadiness(t *testing.T) {
	srv, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	addr := freeAddr(t)
	svc := &fakeService{started: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() {
		exit <- Run(ctx, Spec{Name: "sluice-test", Build: func(env Env) (Service, error) {
			if env.Client == nil || env.Bus.Storage != "file" {
				t.Errorf("env = %+v", env)
			}
			return svc, nil
		}}, []string{"--nats-url", srv.ClientURL(), "--http-listen", addr}, io.Discard)
	}()
	select {
	case <-svc.started:
	case code := <-exit:
		t.Fatalf("exited %d before starting", code)
	case <-time.After(20 * time.Second):
		t.Fatal("service not started")
	}
	base := "http://" + addr
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Errorf("/readyz before ready = %d %q", code, body)
	}
	svc.ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready = %d", code)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d", code)
	}
	cancel()
	if code := <-exit; code != ExitOK {
		t.Errorf("exit code %d after shutdown", code)
	}
}

func TestUsageAndStartupErrors(t *testing.T) {
	build := func(Env) (Service, error) { return &fakeService{started: make(chan struct{})}, nil }
	tests := []struct {
		name    string
		args    []string
		want    int
		wantErr string
	}{
		{"unknown flag", []string{"--bogus"}, ExitUsage, "unknown flag"},
		{"stray argument", []string{"extra"}, ExitUsage, "unexpected arguments"},
		{"bad log format", []string{"--log-format", "xml"}, ExitUsage, "--log-format"},
		{"bad bus replicas", []string{"--bus-replicas", "2", "--http-listen", "127.0.0.1:0"}, ExitFail, "--bus-replicas 2"},
		{"no NATS", []string{"--nats-url", "nats://127.0.0.1:1", "--http-listen", "127.0.0.1:0"}, ExitFail, "connect to NATS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var stderr strings.Builder
			if code := Run(ctx, Spec{Name: "sluice-test", Build: build}, tt.args, &stderr); code != tt.want {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr lacks %q: %s", tt.wantErr, stderr.String())
			}
		})
	}
}

func TestVersionAndHelpNameTheBinary(t *testing.T) {
	for _, tt := range []struct {
		arg  string
		want []string
	}{
		{"--version", []string{"sluice-test " + buildinfo.Version()}},
		{"--help", []string{"Usage: sluice-test [flags]", "docs/configuration.md", "--nats-url", "--version"}},
	} {
		var stdout, stderr strings.Builder
		code := Run(context.Background(), Spec{Name: "sluice-test", Stdout: &stdout}, []string{tt.arg}, &stderr)
		if code != ExitOK {
			t.Errorf("%s: exit %d; stderr: %s", tt.arg, code, stderr.String())
		}
		printed := stdout.String() + stderr.String()
		for _, w := range tt.want {
			if !strings.Contains(printed, w) {
				t.Errorf("%s prints %q, lacking %q", tt.arg, printed, w)
			}
		}
	}
}
