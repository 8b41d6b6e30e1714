package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/buildinfo"
	"github.com/sluicehq/sluice/pkg/events"
)

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"version"}, exitOK},
		{[]string{"bogus"}, exitUsage},
		{[]string{"version", "extra"}, exitUsage},
		{[]string{"dev", "--no-such-flag"}, exitUsage},
		{[]string{"dev", "--nats-listen", "nope"}, exitUsage},
		{[]string{"dev", "--bus-replicas", "2", "--nats-listen", freeAddr(t), "--state-dir", t.TempDir()}, exitFail},
	}
	for _, tt := range tests {
		if got := run(context.Background(), tt.args, io.Discard, io.Discard); got != tt.want {
			t.Errorf("sluice %s: exit %d, want %d", strings.Join(tt.args, " "), got, tt.want)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lineWriter hands each write to the test through a channel.
type lineWriter struct {
	ch chan string
}

func (b *lineWriter) Write(p []byte) (int, error) { b.ch <- string(p); return len(p), nil }

// startDev runs `sluice dev` until the returned stop is called, and returns
// once it reports that it is listening, with what it printed until then.
func startDev(t *testing.T, cfg devConfig) (stop func(), banner string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{ch: make(chan string, 100)}
	errc := make(chan error, 1)
	go func() { errc <- runDev(ctx, cfg, out, io.Discard) }()
	deadline := time.After(20 * time.Second)
	var printed strings.Builder
	for ready := false; !ready; {
		select {
		case line := <-out.ch:
			printed.WriteString(line)
			ready = strings.Contains(line, "press Ctrl-C")
		case err := <-errc:
			t.Fatalf("sluice dev exited early: %v", err)
		case <-deadline:
			t.Fatal("sluice dev did not start")
		}
	}
	go func() {
		for range out.ch {
		}
	}()
	return func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("sluice dev: %v", err)
		}
	}, printed.String()
}

func TestDevKeepsEventsAcrossRestarts(t *testing.T) {
	cfg := testDevConfig(t)
	url := "nats://" + cfg.NATSListen

	stop, _ := startDev(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := events.New("/test", events.TypeRolloutAbort, "default/web", nil)
	if _, err := c.Publish(ctx, events.CommandSubject(events.Ref{Namespace: "default", Name: "web"}), ev); err != nil {
		t.Fatal(err)
	}
	c.Close()
	stop()

	stop, _ = startDev(t, cfg)
	defer stop()
	c, err = events.Connect(ctx, events.ConnConfig{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.JetStream().Stream(ctx, events.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(ctx, "sluice.cmd.default.web")
	if err != nil {
		t.Fatalf("event published before the restart is gone: %v", err)
	}
	if got := raw.Header.Get("ce-id"); got != ev.ID() {
		t.Errorf("after restart the stream holds %s, want %s", got, ev.ID())
	}
}

func TestHistoryCommand(t *testing.T) {
	cfg := testDevConfig(t)
	stop, _ := startDev(t, cfg)
	defer stop()
	url := "nats://" + cfg.NATSListen
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := events.Ref{Namespace: "prod", Name: "web"}
	promote, _ := events.New("/chatops", events.TypeRolloutPromote, r.String(), events.PromoteData{Full: true})
	step := int32(1)
	paused, _ := events.New("/sluice/orchestrator", events.TypeRolloutPaused, r.String(), events.StatusData{
		Status: events.Snapshot{Namespace: "prod", Name: "web", Phase: events.PhasePaused, Revision: 2, StableRevision: 1, StepIndex: &step, StepCount: 4, CanaryWeight: 20},
		Reason: "CanaryPauseStep",
	})
	for subject, ev := range map[string]events.Event{events.StatusSubject(r): paused, events.CommandSubject(r): promote} {
		if _, err := c.Publish(ctx, subject, ev); err != nil {
			t.Fatal(err)
		}
	}

	var out, errOut strings.Builder
	if code := run(ctx, []string{"history", "prod/web", "--nats-url", url}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"rollout.paused.v1", "Paused  rev 2 (stable 1)  step 2/4  weight 20  CanaryPauseStep", "rollout.promote.v1", "full"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("history output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(ctx, []string{"history", "prod/other", "--nats-url", url}, &out, &errOut); code != exitFail || !strings.Contains(errOut.String(), "no events for rollout prod/other") {
		t.Errorf("history of an unknown rollout: exit %d, stderr %q", code, errOut.String())
	}
	if code := run(ctx, []string{"history", "Prod/Web", "--nats-url", url}, io.Discard, io.Discard); code != exitUsage {
		t.Errorf("history with an invalid name: exit %d, want %d", code, exitUsage)
	}
}

// testDevConfig is sluice dev on free ports in a temporary state directory.
func testDevConfig(t *testing.T) devConfig {
	cfg := newDevConfig()
	cfg.NATSListen, cfg.PrometheusListen, cfg.Process.HTTPListen = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.DashboardListen = "127.0.0.1:0"
	cfg.Services.StateDir, cfg.ScrapeInterval, cfg.Process.LogLevel = t.TempDir(), time.Second, "error"
	return cfg
}

func TestVersionIsTheBuildsVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out strings.Builder
		if code := run(context.Background(), args, &out, io.Discard); code != exitOK {
			t.Fatalf("sluice %s: exit %d", args[0], code)
		}
		if got, want := out.String(), "sluice "+buildinfo.Version()+"\n"; got != want || strings.Contains(got, "dev") {
			t.Errorf("sluice %s prints %q, want %q", args[0], got, want)
		}
	}
}
