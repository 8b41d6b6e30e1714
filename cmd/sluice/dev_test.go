package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// TestDevHonoursOrRefusesEveryServiceFlag: every flag of every service
// binary is a flag of sluice dev of the same type, or sluice dev refuses it
// with a reason. sluice dev registers the services' flags through the
// composition root the binaries use, so an honoured flag sets the same
// field of the same configuration.
func TestDevHonoursOrRefusesEveryServiceFlag(t *testing.T) {
	dev := newRootCmd()
	devCmd, _, err := dev.Find([]string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	var conn events.ConnConfig
	connFlags := pflag.NewFlagSet("conn", pflag.ContinueOnError)
	conn.AddFlags(connFlags)
	for _, name := range assembly.Names {
		binary := assembly.Binary(name, func(string) string { return "" })
		binary.FlagSet().VisitAll(func(f *pflag.Flag) {
			if f.Name == "version" {
				return // each binary's own; sluice dev's is `sluice --version`
			}
			why, refused := devRefused[f.Name]
			if connFlags.Lookup(f.Name) != nil {
				why, refused = devRefusedConn, true
			}
			d := devCmd.Flags().Lookup(f.Name)
			if d == nil {
				d = dev.PersistentFlags().Lookup(f.Name)
			}
			switch {
			case refused && why == "":
				t.Errorf("%s --%s: refused without a reason", binary.Name, f.Name)
			case refused:
				checkRefused(t, f.Name, why)
			case d == nil:
				t.Errorf("%s --%s: sluice dev neither takes nor refuses it", binary.Name, f.Name)
			case d.Hidden:
				t.Errorf("%s --%s: hidden in sluice dev but not refused", binary.Name, f.Name)
			case d.Value.Type() != f.Value.Type():
				t.Errorf("%s --%s: a %s, but a %s in sluice dev", binary.Name, f.Name, f.Value.Type(), d.Value.Type())
			}
		})
	}
}

// checkRefused runs sluice dev with the flag and wants a usage error that
// says why.
func checkRefused(t *testing.T, flag, why string) {
	t.Helper()
	var stderr strings.Builder
	args := []string{"dev", "--" + flag + "=" + refusedValue(flag)}
	if code := run(context.Background(), args, &strings.Builder{}, &stderr); code != exitUsage {
		t.Errorf("sluice %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
	}
	if !strings.Contains(stderr.String(), why) || !strings.Contains(stderr.String(), "--"+flag) {
		t.Errorf("sluice %s: stderr %q does not name the flag and say %q", strings.Join(args, " "), stderr.String(), why)
	}
}

func refusedValue(flag string) string {
	switch flag {
	case "router":
		return "kube"
	case "stop-on-exit":
		return "false"
	case "nats-url":
		return "nats://127.0.0.1:1"
	}
	return "x"
}

// TestDevTakesTheServiceFlags: service flags given to sluice dev reach the
// services' configuration, the ones sluice dev used to drop among them.
func TestDevTakesTheServiceFlags(t *testing.T) {
	var cfg devConfig
	fs := pflag.NewFlagSet("dev", pflag.ContinueOnError)
	cfg.addFlags(fs)
	err := fs.Parse([]string{"--platform", "kube", "--namespace", "shop", "--istio-api-version", "v1", "--smi-api-version", "v1alpha2",
		"--task-start-timeout", "5s", "--state-cache", "0", "--scale-wait", "1m", "--stop-timeout", "7s", "--log-format", "json",
		"--clock-max-uncertainty", "2s"})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Services
	if o.Platform.Value() != "kube" || o.Namespace != "shop" || o.IstioAPIVersion != "v1" || o.SMIAPIVersion != "v1alpha2" {
		t.Errorf("kube flags not taken: %+v", o)
	}
	if o.Orchestrator.Machine.TaskStartTimeout.String() != "5s" || o.Orchestrator.StateCache >= 0 || o.Replicas.Wait.String() != "1m0s" {
		t.Errorf("service flags not taken: %+v %+v", o.Orchestrator, o.Replicas)
	}
	if o.ClockMaxUncertainty != 2*time.Second {
		t.Errorf("--clock-max-uncertainty not taken: %s", o.ClockMaxUncertainty)
	}
	if cfg.Process.StopTimeout.String() != "7s" || cfg.Process.LogFormat != "json" {
		t.Errorf("process flags not taken: %+v", cfg.Process)
	}
}

// TestDevTakesTheNotifiersFlags: --notifications runs the notifier with
// that file, and the notifier's own flags reach it.
func TestDevTakesTheNotifiersFlags(t *testing.T) {
	var cfg devConfig
	fs := pflag.NewFlagSet("dev", pflag.ContinueOnError)
	cfg.addFlags(fs)
	if cfg.Notifications != "" || cfg.NotificationsListen != "127.0.0.1:3101" {
		t.Errorf("defaults: --notifications %q --notifications-listen %q; want none and 127.0.0.1:3101", cfg.Notifications, cfg.NotificationsListen)
	}
	err := fs.Parse([]string{"--notifications", "notifications.yaml", "--notifications-listen", "127.0.0.1:4101",
		"--secrets-dir", "secrets", "--max-attempts", "3", "--dashboard-url", "https://sluice.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Services
	if cfg.Notifications != "notifications.yaml" || cfg.NotificationsListen != "127.0.0.1:4101" || o.NotifierSecretsDir != "secrets" ||
		o.Notifier.MaxAttempts != 3 || o.Notifier.DashboardURL != "https://sluice.example.com" {
		t.Errorf("notifier flags not taken: %+v %+v", cfg, o.Notifier)
	}
}

// TestBadServiceFlagsAreUsageErrors: a value a service cannot use fails at
// start, naming the flag, in sluice dev as in the binaries.
func TestBadServiceFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"dev", "--task-start-timeout", "-1s"},
		{"dev", "--task-max-attempts", "-2"},
		{"dev", "--state-cache", "-5"},
		{"dev", "--stop-timeout", "-1s"},
	} {
		var stderr strings.Builder
		if code := run(context.Background(), args, &strings.Builder{}, &stderr); code != exitUsage {
			t.Errorf("sluice %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
		if !strings.Contains(stderr.String(), args[1]) {
			t.Errorf("sluice %s: stderr %q does not name the flag", strings.Join(args, " "), stderr.String())
		}
	}
}

// TestDevRefusesAnOpenDashboardWithoutSignIn: without --dashboard-auth
// every caller of the gateway is an admin, so sluice dev refuses to serve
// it on an address others can reach, and says what to do instead.
func TestDevRefusesAnOpenDashboardWithoutSignIn(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:3100", ":3100", "192.0.2.10:3100", "[::]:3100", "example.com:3100"} {
		var stderr strings.Builder
		args := []string{"dev", "--dashboard-listen", addr}
		if code := run(context.Background(), args, &strings.Builder{}, &stderr); code != exitUsage {
			t.Errorf("sluice %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
		if !strings.Contains(stderr.String(), "not a loopback address") || !strings.Contains(stderr.String(), "--dashboard-auth") {
			t.Errorf("sluice %s: stderr %q does not say why and what to give", strings.Join(args, " "), stderr.String())
		}
	}
}

// TestDevDashboardAddresses: which --dashboard-listen values sluice dev
// takes, with and without an auth file.
func TestDevDashboardAddresses(t *testing.T) {
	for _, c := range []struct {
		listen, auth string
		wantErr      string
	}{
		{listen: DefaultDashboardListen},
		{listen: "localhost:3100"},
		{listen: "[::1]:3100"},
		{listen: "off"},
		{listen: ""},
		{listen: "0.0.0.0:3100", auth: "auth.yaml"},
		{listen: ":3100", auth: "auth.yaml"},
		{listen: "0.0.0.0:3100", wantErr: "not a loopback address"},
		{listen: "3100", wantErr: "want host:port"},
		{listen: "127.0.0.1:http", wantErr: "numeric port"},
	} {
		cfg := newDevConfig()
		cfg.DashboardListen, cfg.DashboardAuth = c.listen, c.auth
		err := cfg.validate()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("--dashboard-listen %q --dashboard-auth %q: %v", c.listen, c.auth, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("--dashboard-listen %q --dashboard-auth %q: error %v, want %q", c.listen, c.auth, err, c.wantErr)
		}
	}
	if got := newDevConfig().DashboardListen; got != "127.0.0.1:3100" {
		t.Errorf("--dashboard-listen defaults to %q, want 127.0.0.1:3100", got)
	}
}

// TestDevServesTheDashboard: sluice dev prints the dashboard's address
// and serves the dashboard there, without sign-in.
func TestDevServesTheDashboard(t *testing.T) {
	cfg := testDevConfig(t)
	stop, banner := startDev(t, cfg)
	defer stop()
	const prefix = "sluice dev: dashboard and HTTP API  "
	var url string
	for _, line := range strings.Split(banner, "\n") {
		if u, ok := strings.CutPrefix(line, prefix); ok {
			url = strings.TrimSpace(u)
		}
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("sluice dev printed no dashboard address on loopback:\n%s", banner)
	}
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(strings.ToLower(string(body)), "<html") && !strings.Contains(strings.ToLower(string(body)), "<!doctype html") {
		t.Errorf("GET %s/: %s %s\n%s", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
}

// TestDevWithoutDashboard: --dashboard-listen off runs no gateway and
// prints no dashboard address.
func TestDevWithoutDashboard(t *testing.T) {
	cfg := testDevConfig(t)
	cfg.DashboardListen = "off"
	stop, banner := startDev(t, cfg)
	defer stop()
	if strings.Contains(banner, "dashboard") {
		t.Errorf("sluice dev --dashboard-listen off printed a dashboard:\n%s", banner)
	}
}

// TestDevActorIsTheUser: without sign-in, the commands from the dashboard
// carry the user who started sluice dev as their actor.
func TestDevActorIsTheUser(t *testing.T) {
	if got := devActor(func(k string) string { return map[string]string{"USER": "alice"}[k] }); got != "user:alice" {
		t.Errorf("with USER=alice: %q, want user:alice", got)
	}
	if got := devActor(func(string) string { return "" }); !strings.HasPrefix(got, "user:") || got == "user:" {
		t.Errorf("without USER: %q, want user:<the account's name>", got)
	}
}

// TestDevRunsTheNotifierGivenAConfiguration: with --notifications the
// notifier runs on sluice dev's bus, serves the chat endpoints on
// --notifications-listen and sends what the configuration subscribes to;
// without it, none runs.
func TestDevRunsTheNotifierGivenAConfiguration(t *testing.T) {
	got := make(chan string, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- string(body)
	}))
	defer hook.Close()
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	conf := `apiVersion: v1
kind: ConfigMap
metadata: {name: argo-rollouts-notification-configmap}
data:
  service.webhook.hook: |
    url: ` + hook.URL + `
  template.done: |
    webhook:
      hook: {method: POST, body: '{{.rollout.metadata.name}} completed'}
  trigger.on-rollout-completed: |
    - send: [done]
  subscriptions: |
    - recipients: ["hook:"]
      triggers: [on-rollout-completed]
`
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testDevConfig(t)
	cfg.DashboardListen = "off"
	cfg.Notifications, cfg.NotificationsListen = file, "127.0.0.1:0"
	stop, banner := startDev(t, cfg)
	defer stop()
	const prefix = "sluice dev: notifier chat endpoints "
	var url string
	for _, line := range strings.Split(banner, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			url, _, _ = strings.Cut(strings.TrimSpace(rest), " ")
		}
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("sluice dev printed no chat endpoints:\n%s", banner)
	}
	resp, err := http.Post(url+"/slack/commands", "application/x-www-form-urlencoded", strings.NewReader("text=status"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /slack/commands without commands.slack: %s, want 404", resp.Status)
	}

	bus := eventstest.Connect(t, "nats://"+cfg.NATSListen)
	ref := events.Ref{Namespace: "prod", Name: "shop"}
	ev, err := events.New("/test", events.TypeRolloutCompleted, ref.String(), events.StatusData{Status: events.Snapshot{Namespace: "prod", Name: "shop", Phase: events.PhaseHealthy}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(context.Background(), events.StatusSubject(ref), ev); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-got:
		if body != "shop completed" {
			t.Errorf("the hook received %q", body)
		}
	case <-time.After(poll.Default):
		t.Fatal("the notifier sent nothing")
	}
}

func TestDevRunsNoNotifierWithoutAConfiguration(t *testing.T) {
	cfg := testDevConfig(t)
	cfg.DashboardListen = "off"
	stop, banner := startDev(t, cfg)
	defer stop()
	if strings.Contains(banner, "notifier") {
		t.Errorf("sluice dev without --notifications printed a notifier:\n%s", banner)
	}
}
