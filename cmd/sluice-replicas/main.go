// Command sluice-replicas runs the replicas service: it creates, scales and
// deletes the revisions of rollouts and reports when they are available.
//
// On the local platform (--platform local, the default) each pod is an OS
// process on this machine, with its state and logs under
// --state-dir/replicas; run one replicas service per machine and state
// directory. See docs/platform-local.md.
//
// On Kubernetes (--platform kube) each revision is a ReplicaSet in the
// cluster of --kubeconfig (or the pod's service account), and the service
// also turns Rollout objects in the cluster into requested events and
// writes their status back (--watch-rollouts). See docs/platform-kube.md.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/kubeconfig"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
	"github.com/sluicehq/sluice/services/replicas/local"
)

// platforms are the values --platform accepts.
var platforms = []string{"local", "kube"}

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
		kubeFlags  kubeconfig.Flags
		namespace  string
		watch      bool
	)
	return daemon.Spec{
		Name: "sluice-replicas",
		Flags: func(fs *pflag.FlagSet) {
			fs.Var(&platform, "platform", "where workloads run: "+strings.Join(platforms, ", ")+" (local: OS processes on this machine)")
			fs.StringVar(&stateDir, "state-dir", ".sluice", "directory for the local platform's state files and process logs (under replicas/)")
			fs.BoolVar(&stopOnExit, "stop-on-exit", false, "local platform: stop every process when the service exits, instead of leaving them for the next start to adopt")
			fs.StringVar(&host, "advertise-host", local.DefaultHost, "local platform: host the processes are reached at, published in the endpoints bucket and probed (set it to this machine's name when the traffic service runs elsewhere, as in Docker Compose)")
			fs.DurationVar(&cfg.Wait, "scale-wait", replicas.DefaultWait, "how long a scale task waits for its revisions to become available before it fails")
			kubeFlags.Add(fs)
			fs.StringVar(&namespace, "namespace", "", "kube platform: manage only this namespace (default: every namespace)")
			fs.BoolVar(&watch, "watch-rollouts", true, "kube platform: publish a requested event when a Rollout object's spec changes in the cluster, publish AnalysisTemplates, and write rollout status back into Rollout objects")
		},
		Build: func(env daemon.Env) (daemon.Service, error) {
			cfg.Bus, cfg.Logger = env.Bus, env.Log
			if platform == "kube" {
				return newKube(env, cfg, kubeFlags, namespace, watch)
			}
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

// kubeService is the replicas service on Kubernetes, with the Rollout CRD
// controllers when enabled.
type kubeService struct {
	svc  *replicas.Service
	ctrl *crd.Controllers
}

func newKube(env daemon.Env, cfg replicas.Config, flags kubeconfig.Flags, namespace string, watch bool) (daemon.Service, error) {
	clients, err := flags.Connect("sluice-replicas")
	if err != nil {
		return nil, err
	}
	backend, err := kube.New(kube.Config{Client: clients.Typed, Dynamic: clients.Dynamic, Namespace: namespace, Logger: env.Log})
	if err != nil {
		return nil, err
	}
	svc, err := replicas.New(env.Client, backend, cfg)
	if err != nil {
		return nil, err
	}
	k := &kubeService{svc: svc}
	if watch {
		k.ctrl, err = crd.New(crd.Config{Client: clients.Typed, Dynamic: clients.Dynamic, Bus: env.Client, BusConfig: env.Bus, Namespace: namespace, Logger: env.Log})
	}
	return k, err
}

func (k *kubeService) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return k.svc.Run(ctx) })
	if k.ctrl != nil {
		g.Go(func() error { return k.ctrl.Run(ctx) })
	}
	return g.Wait()
}

func (k *kubeService) Ready() bool {
	return k.svc.Ready() && (k.ctrl == nil || k.ctrl.Ready())
}
