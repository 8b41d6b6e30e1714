package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// TestHelpListsTheNotifiersFlags: --help names every flag of the notifier
// and the environment variables its defaults come from.
func TestHelpListsTheNotifiersFlags(t *testing.T) {
	env := map[string]string{"NOTIFIER_LISTEN": "127.0.0.1:3199", "NOTIFIER_CONFIG": "/etc/sluice/notifications.yaml", "POD_NAMESPACE": "sluice"}
	var stderr strings.Builder
	if code := daemon.Run(context.Background(), newSpec(func(k string) string { return env[k] }), []string{"--help"}, &stderr); code != daemon.ExitOK {
		t.Fatalf("--help: exit %d", code)
	}
	help := stderr.String()
	for _, want := range []string{
		"Usage: sluice-notifier [flags]",
		"--config string", `(default "/etc/sluice/notifications.yaml")`, "(env NOTIFIER_CONFIG)",
		"--listen string", `(default "127.0.0.1:3199")`, "(env NOTIFIER_LISTEN)",
		"--secrets-dir string", "--dashboard-url string", "--max-attempts int", "(default 10)",
		"--platform", "--namespace string", `(default "sluice")`, "--kubeconfig",
		"--nats-url", "--http-listen",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
}

// TestWithoutAConfigurationItRefusesToStart: a notifier with nothing to
// send says which flag is missing.
func TestWithoutAConfigurationItRefusesToStart(t *testing.T) {
	srv := eventstest.StartServer(t)
	var stderr strings.Builder
	code := daemon.Run(context.Background(), newSpec(func(string) string { return "" }),
		[]string{"--nats-url", srv.ClientURL(), "--http-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--log-level", "error"}, &stderr)
	if code == daemon.ExitOK || !strings.Contains(stderr.String(), "--config") {
		t.Errorf("exit %d, stderr %q; want a failure naming --config", code, stderr.String())
	}
}

// TestBadFlagsAreUsageErrors: a value the notifier cannot use fails before
// it starts, naming the flag.
func TestBadFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--max-attempts", "-1"},
		{"--platform", "mars"},
	} {
		var stderr strings.Builder
		if code := daemon.Run(context.Background(), newSpec(func(string) string { return "" }), args, &stderr); code != daemon.ExitUsage {
			t.Errorf("sluice-notifier %s: exit %d, want %d", strings.Join(args, " "), code, daemon.ExitUsage)
		}
		if !strings.Contains(stderr.String(), args[0]) {
			t.Errorf("sluice-notifier %s: stderr %q does not name the flag", strings.Join(args, " "), stderr.String())
		}
	}
}
