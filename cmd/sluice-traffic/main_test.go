package main

import (
	"bytes"
	"context"
	"fmt"
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

func TestUnknownRouterIsAUsageError(t *testing.T) {
	var stderr bytes.Buffer
	code := daemon.Run(context.Background(), newSpec(), []string{"--router", "nginx"}, &stderr)
	if code != daemon.ExitUsage {
		t.Errorf("exit %d, want %d", code, daemon.ExitUsage)
	}
	if !strings.Contains(stderr.String(), `no traffic router named "nginx" (supported: kube, local)`) {
		t.Errorf("stderr %q does not name the supported routers", stderr.String())
	}
}

func TestLocalRouterRunsAndStops(t *testing.T) {
	srv := eventstest.StartServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		exit <- daemon.Run(ctx, newSpec(), []string{"--router", "local", "--nats-url", srv.ClientURL(), "--http-listen", httpAddr, "--log-level", "error"}, &stderr)
	}()
	if err := poll.Wait("/readyz to answer 200", func() error {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}, poll.Timeout(eventstest.Wait), poll.Every(20*time.Millisecond)); err != nil {
		cancel()
		<-exit
		t.Fatalf("never ready: %v; stderr %s", err, stderr.String())
	}
	cancel()
	if code := <-exit; code != daemon.ExitOK {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}
