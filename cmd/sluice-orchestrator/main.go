// Command sluice-orchestrator runs the orchestrator service: it owns every
// rollout's state and decides each step. Run any number of replicas.
package main

import (
	"os"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(assembly.Binary(assembly.Orchestrator, os.Getenv), os.Args[1:], os.Stderr))
}
