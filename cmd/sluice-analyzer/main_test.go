package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
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

func TestAnalyzerBinaryRunsUntilStopped(t *testing.T) {
	srv := eventstest.StartServer(t)
	addr := freeAddr(t)
	env := map[string]string{"SLUICE_PROMETHEUS_ADDRESS": "http://prometheus:9090", "SLUICE_PROMETHEUS_TOKEN": "tok"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- daemon.Run(ctx, spec(func(k string) string { return env[k] }), []string{"--nats-url", srv.ClientURL(), "--http-listen", addr, "--log-level", "error"}, io.Discard)
	}()
	poll.True(t, "the analyzer's /readyz to answer 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case code := <-exit:
			t.Fatalf("exited %d before it was ready", code)
		default:
		}
		return false
	}, poll.Timeout(eventstest.Wait), poll.Every(20*time.Millisecond))
	cancel()
	if code := <-exit; code != daemon.ExitOK {
		t.Fatalf("exit %d after shutdown", code)
	}
}

func TestAnalyzerBinaryConfiguration(t *testing.T) {
	srv := eventstest.StartServer(t)
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    int
		wantOut string
		never   string
	}{
		{name: "help names the environment and hides secrets", env: map[string]string{"SLUICE_PROMETHEUS_TOKEN": "hunter2"},
			args: []string{"--help"}, want: daemon.ExitOK, wantOut: "SLUICE_PROMETHEUS_ADDRESS", never: "hunter2"},
		{name: "address that is not http", args: []string{"--prometheus-address", "ftp://prometheus"},
			want: daemon.ExitFail, wantOut: "SLUICE_PROMETHEUS_ADDRESS must be an http or https URL"},
		{name: "credentials without address", env: map[string]string{"SLUICE_PROMETHEUS_PASSWORD": "hunter2"}, args: []string{"--prometheus-username", "u"},
			want: daemon.ExitFail, wantOut: "credentials need SLUICE_PROMETHEUS_ADDRESS", never: "hunter2"},
		{name: "bad lease margin", args: []string{"--lease-margin", "-1s"}, want: daemon.ExitFail, wantOut: "LeaseMargin -1s must be positive"},
		// --platform kube reads secretKeyRef arguments from the cluster, so
		// it needs one.
		{name: "kube secrets without a cluster", args: []string{"--platform", "kube", "--kubeconfig", "/nonexistent/kubeconfig"},
			want: daemon.ExitFail, wantOut: "no cluster to talk to"},
		{name: "unknown platform", args: []string{"--platform", "kubernetes"},
			want: daemon.ExitUsage, wantOut: `unknown platform "kubernetes": supported platforms are local, kube`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
			defer cancel()
			var out strings.Builder
			args := append([]string{"--nats-url", srv.ClientURL(), "--http-listen", "127.0.0.1:0"}, tc.args...)
			code := daemon.Run(ctx, spec(func(k string) string { return tc.env[k] }), args, &out)
			if code != tc.want || !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("exit %d, want %d with %q; output:\n%s", code, tc.want, tc.wantOut, out.String())
			}
			if tc.never != "" && strings.Contains(out.String(), tc.never) {
				t.Fatalf("output shows %q:\n%s", tc.never, out.String())
			}
		})
	}
}
