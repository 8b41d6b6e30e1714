// Command sluice-replicas runs the replicas service: it creates, scales and
// deletes the revisions of rollouts and reports when they are available.
//
// On the local platform (--platform local, the only one so far) each pod is
// an OS process on this machine, with its state and logs under
// --state-dir/replicas; run one replicas service per machine and state
// directory. See docs/platform-local.md.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/local"
)

// platforms are the values --platform accepts.
var platforms = []string{"local"}

// platformFlag is --platform: an unknown platform is a usage error.
type platformFlag string

func (p *platformFlag) String() string { return string(*p) }
func (p *platformFlag) Type() string   { return "platform" }
func (p *platformFlag) Set(v string) error {
	for _, name := range platforms {
		if v == name {
			*p = platformFlag(v)
			return nil
		}
	}
	return fmt.Errorf("unknown platform %q: supported platforms are %s", v, strings.Join(platforms, ", "))
}

func main() {
	os.Exit(daemon.Main(spec(), os.Args[1:], os.Stderr))
}

func spec() daemon.Spec {
	var (
		cfg        replicas.Config
		platform   = platformFlag("local")
		stateDir   string
		stopOnExit bool
		host       string
	)
	return daemon.Spec{
		Name: "sluice-replicas",
		Flags: func(fs *pflag.FlagSet) {
			fs.Var(&platform, "platform", "where workloads run: "+strings.Join(platforms, ", ")+" (local: OS processes on this machine)")
			fs.StringVar(&stateDir, "state-dir", ".sluice", "directory for the local platform's state files and process logs (under replicas/)")
			fs.BoolVar(&stopOnExit, "stop-on-exit", false, "local platform: stop every process when the service exits, instead of leaving them for the next start to adopt")
			fs.StringVar(&host, "advertise-host", local.DefaultHost, "local platform: host the processes are reached at, published in the endpoints bucket and probed (set it to this machine's name when the traffic service runs elsewhere, as in Docker Compose)")
			fs.DurationVar(&cfg.Wait, "scale-wait", replicas.DefaultWait, "how long a scale task waits for its revisions to become available before it fails")
		},
		Build: func(env daemon.Env) (daemon.Service, error) {
			cfg.Bus, cfg.Logger = env.Bus, env.Log
			backend, err := local.New(local.Config{
				StateDir:    stateDir,
				Host:        host,
				JetStream:   env.Client.JetStream(),
				Bus:         env.Bus,
				StopOnClose: stopOnExit,
				Logger:      env.Log,
			})
			if err != nil {
				return nil, err
			}
			return replicas.New(env.Client, backend, cfg)
		},
	}
}
