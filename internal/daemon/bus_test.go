package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// A running service whose bus stops answering (a JetStream cluster that
// lost its quorum) keeps running, and its process's /readyz says it waits
// for the bus, and why, until the bus answers again.
func TestReadyzSaysWhileTheBusDoesNotAnswer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := freeAddr(t)
	p, err := Start(ctx, ProcessConfig{Name: "sluice-test", HTTPListen: addr, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	svc := &fakeService{started: make(chan struct{})}
	svc.ready.Store(true)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, nil, Named{Name: "test", Service: svc}) }()
	var down atomic.Pointer[error]
	go p.watchBus(ctx, func(context.Context) error {
		if err := down.Load(); err != nil {
			return *err
		}
		return nil
	})
	readyz := func(wantCode int, want string) func() error {
		return func() error {
			code, body := get(t, "http://"+addr+"/readyz")
			if code != wantCode || !strings.Contains(body, want) {
				return fmt.Errorf("/readyz %d %q, want %d %q", code, strings.TrimSpace(body), wantCode, want)
			}
			return nil
		}
	}
	poll.Until(t, "the process ready", readyz(http.StatusOK, "ready"), poll.Timeout(eventstest.Wait))
	lost := errors.New("JetStream unavailable: the cluster has no JetStream leader")
	down.Store(&lost)
	poll.Until(t, "/readyz saying the process waits for the bus", readyz(http.StatusServiceUnavailable, "not ready: waiting for the bus: "+lost.Error()), poll.Timeout(eventstest.Wait))
	down.Store(nil)
	poll.Until(t, "the process ready again once the bus answers", readyz(http.StatusOK, "ready"), poll.Timeout(eventstest.Wait))
	select {
	case err := <-ran:
		t.Fatalf("the service stopped while the bus did not answer: %v", err)
	default:
	}
}
