package main

import (
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

// TestDevWaitsForItsBus freezes sluice dev (SIGSTOP) the moment its
// embedded NATS server accepts connections, while it connects its clients
// and provisions the streams and buckets, for longer than the 10 s it once
// gave each of those: when it continues, every wait in progress has passed
// any fixed limit at once, as on a machine too busy to answer in time. It
// waits for its bus and tries again, as every service binary does, and
// becomes ready; before issue 21 it exited with "context deadline
// exceeded".
func TestDevWaitsForItsBus(t *testing.T) {
	dir := t.TempDir()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	stdout, stderr := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	outF, err := os.Create(stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	cmd := exec.Command(testbin.Path(t, "sluice"), "dev", "--nats-listen", natsAddr, "--http-listen", httpAddr,
		"--prometheus-listen", freeAddr(t), "--dashboard-listen", "off", "--state-dir", filepath.Join(dir, "state"), "--log-level", "info")
	cmd.Stdout, cmd.Stderr = outF, errF
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	logs := func() string {
		o, _ := os.ReadFile(stdout)
		e, _ := os.ReadFile(stderr)
		return fmt.Sprintf("stdout:\n%s\nstderr (last 3000 bytes):\n%s", o, tail(string(e), 3000))
	}

	poll.Until(t, "sluice dev's NATS server accepting connections", func() error {
		select {
		case <-exited:
			t.Fatalf("sluice dev exited before its NATS server listened: %v\n%s", exitErr, logs())
		default:
		}
		c, err := net.DialTimeout("tcp", natsAddr, 100*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	}, poll.Every(2*time.Millisecond), poll.Timeout(time.Minute))
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A freeze that came after sluice dev was ready would test nothing.
	if o, _ := os.ReadFile(stdout); strings.Contains(string(o), "press Ctrl-C") {
		t.Fatalf("sluice dev was ready before it was frozen: the freeze must land while it starts\n%s", logs())
	}
	// The fault is the freeze's length: past the 10 s sluice dev once gave
	// each wait. A stopped process reports nothing, so there is no
	// condition of its to wait for until it continues; only its exit (it
	// was killed) ends the hold early.
	hold := time.NewTimer(12 * time.Second)
	defer hold.Stop()
	select {
	case <-hold.C:
	case <-exited:
		t.Fatalf("sluice dev exited while it was frozen: %v\n%s", exitErr, logs())
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	poll.Until(t, "sluice dev ready after it was frozen", func() error {
		select {
		case <-exited:
			t.Fatalf("sluice dev exited after it was frozen while it started: %v\n%s", exitErr, logs())
		default:
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	}, poll.Timeout(2*time.Minute))
	poll.True(t, "sluice dev's banner", func() bool {
		o, _ := os.ReadFile(stdout)
		return strings.Contains(string(o), "press Ctrl-C")
	}, poll.Timeout(time.Minute))
	e, _ := os.ReadFile(stderr)
	t.Logf("failed attempts sluice dev waited out: %d waiting for NATS, %d waiting for the bus",
		strings.Count(string(e), `msg="waiting for NATS"`), strings.Count(string(e), `msg="waiting for the bus"`))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
