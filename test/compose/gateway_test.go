package compose

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// TestGatewayServesTheDashboard: `docker compose up` gives a dashboard on
// the host's 127.0.0.1:3100: the gateway listens on the port Compose
// publishes, reads an auth file Compose mounts from the repository, and
// the binary, run with that command line and that file, serves the
// dashboard.
func TestGatewayServesTheDashboard(t *testing.T) {
	p := loadProject(t)
	gw, err := p.GetService("sluice-gateway")
	if err != nil {
		t.Fatal(err)
	}
	listen := gw.Environment["GATEWAY_LISTEN"]
	if listen == nil {
		t.Fatal("sluice-gateway: no GATEWAY_LISTEN")
	}
	_, port, err := net.SplitHostPort(*listen)
	if err != nil {
		t.Fatalf("GATEWAY_LISTEN %q: %v", *listen, err)
	}
	published := false
	for _, pp := range gw.Ports {
		if strconv.Itoa(int(pp.Target)) == port && pp.Published == "3100" && pp.HostIP == "127.0.0.1" {
			published = true
		}
	}
	if !published {
		t.Errorf("sluice-gateway publishes %+v; want 127.0.0.1:3100 to its port %s", gw.Ports, port)
	}

	// The auth file the command names is mounted from the repository.
	var authPath string
	args := []string{}
	for _, a := range gw.Command[1:] {
		if v, ok := strings.CutPrefix(a, "--auth-config="); ok {
			authPath = v
			continue
		}
		args = append(args, a)
	}
	var hostFile string
	for _, v := range gw.Volumes {
		if v.Target == authPath && v.ReadOnly {
			hostFile = v.Source
		}
	}
	if authPath == "" || hostFile == "" {
		t.Fatalf("sluice-gateway: command %q and volumes %+v: want --auth-config naming a file mounted read-only", gw.Command, gw.Volumes)
	}
	if want, _ := filepath.Abs(filepath.Join(root, "deploy/compose/gateway-auth.yaml")); hostFile != want {
		t.Errorf("sluice-gateway mounts %s as its auth file, want %s", hostFile, want)
	}

	// The binary takes that file and serves the dashboard.
	srv := eventstest.StartServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exit := make(chan int, 1)
	var stderr strings.Builder
	go func() {
		exit <- daemon.Run(ctx, assembly.Binary(assembly.Gateway, func(string) string { return "" }),
			append(args, "--auth-config="+hostFile, "--listen="+addr, "--http-listen=127.0.0.1:0", "--nats-url="+srv.ClientURL(), "--log-level=error"), &stderr)
	}()
	poll.Until(t, "the gateway to serve the dashboard on "+addr, func() error {
		select {
		case code := <-exit:
			t.Fatalf("sluice-gateway exited %d: %s", code, stderr.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			return fmt.Errorf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		return nil
	}, poll.Timeout(eventstest.Wait), poll.Every(20*time.Millisecond))
	cancel()
	if code := <-exit; code != daemon.ExitOK {
		t.Errorf("sluice-gateway exit %d after shutdown: %s", code, stderr.String())
	}
}
