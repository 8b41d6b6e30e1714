package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// TestHelpListsTheGatewaysFlags: --help names every flag of the gateway
// and the environment variables its defaults come from.
func TestHelpListsTheGatewaysFlags(t *testing.T) {
	env := map[string]string{"GATEWAY_LISTEN": "127.0.0.1:3199"}
	var stderr strings.Builder
	if code := daemon.Run(context.Background(), newSpec(func(k string) string { return env[k] }), []string{"--help"}, &stderr); code != daemon.ExitOK {
		t.Fatalf("--help: exit %d", code)
	}
	help := stderr.String()
	for _, want := range []string{
		"Usage: sluice-gateway [flags]",
		"--listen string", `(default "127.0.0.1:3199")`, "(env GATEWAY_LISTEN)",
		"--auth-config string", "(env GATEWAY_AUTH_CONFIG)",
		"--read-only", "--command-timeout duration", "(default 10s)", "--max-wait duration", "(default 30m0s)",
		"--rate-limit float", "(default 20)", "--rate-burst int", "(default 40)",
		"--nats-url", "--http-listen",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
}

// TestBadFlagsAreUsageErrors: a value the gateway cannot use fails before
// it starts, naming the flag.
func TestBadFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--rate-limit", "-1"},
		{"--rate-limit", "many"},
		{"--rate-burst", "-1"},
		{"--command-timeout", "-1s"},
		{"--max-wait", "-1m"},
	} {
		var stderr strings.Builder
		if code := daemon.Run(context.Background(), newSpec(func(string) string { return "" }), args, &stderr); code != daemon.ExitUsage {
			t.Errorf("sluice-gateway %s: exit %d, want %d", strings.Join(args, " "), code, daemon.ExitUsage)
		}
		if !strings.Contains(stderr.String(), args[0]) {
			t.Errorf("sluice-gateway %s: stderr %q does not name the flag", strings.Join(args, " "), stderr.String())
		}
	}
}

// TestWithoutAnAuthFileItRefusesToStart: a gateway nobody could sign in to
// (or, worse, everybody) is a mistake; it says which flag is missing.
func TestWithoutAnAuthFileItRefusesToStart(t *testing.T) {
	srv := eventstest.StartServer(t)
	var stderr strings.Builder
	code := daemon.Run(context.Background(), newSpec(func(string) string { return "" }),
		[]string{"--nats-url", srv.ClientURL(), "--http-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--log-level", "error"}, &stderr)
	if code != daemon.ExitFail || !strings.Contains(stderr.String(), "--auth-config") {
		t.Errorf("exit %d, stderr %q; want %d and a message naming --auth-config", code, stderr.String(), daemon.ExitFail)
	}
}
