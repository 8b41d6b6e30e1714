// Command sluice-gateway runs the gateway: Sluice's HTTP edge on --listen
// (default :3100). It serves the JSON API over rollouts and their history
// under /api/v1, the server-sent-events stream of status events,
// CloudEvents over HTTP at POST /api/v1/events for CI systems that do not
// speak NATS, and the web dashboard. Callers authenticate and are
// authorized per namespace as the --auth-config file says; every command
// it publishes carries the caller as its actor. See docs/gateway.md.
package main

import (
	"os"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(newSpec(os.Getenv), os.Args[1:], os.Stderr))
}

func newSpec(getenv func(string) string) daemon.Spec {
	return assembly.Binary(assembly.Gateway, getenv)
}
