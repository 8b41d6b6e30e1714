// Command sluice-orchestrator runs the orchestrator service: it owns every
// rollout's state and decides each step. Run any number of replicas.
package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/services/orchestrator"
)

func main() {
	var cfg orchestrator.Config
	os.Exit(daemon.Main(daemon.Spec{
		Name: "sluice-orchestrator",
		Flags: func(fs *pflag.FlagSet) {
			fs.DurationVar(&cfg.Machine.TaskStartTimeout, "task-start-timeout", 0, "how long a task may wait for a worker before it is sent again (default 30s)")
			fs.IntVar(&cfg.Machine.TaskMaxAttempts, "task-max-attempts", 0, "attempts of a task before its step fails (default 3)")
			fs.IntVar(&cfg.StateCache, "state-cache", 1024, "how many rollouts' decoded states to keep in memory (0: none); a busy rollout's state is then not decoded again for each report")
		},
		Build: func(env daemon.Env) (daemon.Service, error) {
			cfg.Bus, cfg.Logger = env.Bus, env.Log
			if cfg.StateCache == 0 {
				cfg.StateCache = -1 // none, not the default
			}
			return orchestrator.New(env.Client, cfg)
		},
	}, os.Args[1:], os.Stderr))
}
