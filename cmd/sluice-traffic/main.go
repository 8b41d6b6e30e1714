// Command sluice-traffic runs the traffic service: it carries out the
// orchestrator's traffic.route tasks on the router named by --router.
//
// With --router local it is the local platform's ingress: one reverse
// proxy per rollout on the Rollout's local.sluice.io/listen address, whose
// request metrics are served on /metrics. Run one such process per local
// platform. With --router kube it edits Services, Ingresses and mesh objects
// in the cluster of --kubeconfig (or the pod's service account), as each
// rollout's trafficRouting asks. See docs/routers.md.
package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/kubeconfig"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/kube"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

func main() {
	os.Exit(daemon.Main(newSpec(), os.Args[1:], os.Stderr))
}

// options are the binary's own flags.
type options struct {
	router       routerName
	drainTimeout time.Duration
	traffic      traffic.Config
	kube         kubeconfig.Flags
	istioVersion string
	smiVersion   string
}

// routers are the routers this binary offers, by --router name. Each
// builds the whole service around its router.
var routers = map[string]func(env daemon.Env, o options) (daemon.Service, error){
	"local": newLocal,
	"kube":  newKube,
}

func routerNames() string {
	names := make([]string, 0, len(routers))
	for n := range routers {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// routerName is the --router flag: a name from routers, checked when the
// flag is parsed so that an unknown one is a usage error.
type routerName string

func (n *routerName) String() string { return string(*n) }
func (n *routerName) Type() string   { return "name" }
func (n *routerName) Set(s string) error {
	if _, ok := routers[s]; !ok {
		return fmt.Errorf("no traffic router named %q (supported: %s)", s, routerNames())
	}
	*n = routerName(s)
	return nil
}

func newSpec() daemon.Spec {
	o := options{router: "local"}
	return daemon.Spec{
		Name: "sluice-traffic",
		Flags: func(fs *pflag.FlagSet) {
			fs.Var(&o.router, "router", "traffic router: "+routerNames()+" (local: the local platform's built-in proxy; kube: Kubernetes Services and the routers each rollout's trafficRouting names)")
			fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long a stopping proxy waits for requests in flight")
			fs.DurationVar(&o.traffic.ApplyTimeout, "apply-timeout", 30*time.Second, "how long one route may take to apply before it is retried")
			o.kube.Add(fs)
			fs.StringVar(&o.istioVersion, "istio-api-version", "v1alpha3", "kube router: networking.istio.io version to write (v1alpha3, v1beta1 or v1)")
			fs.StringVar(&o.smiVersion, "smi-api-version", "v1alpha3", "kube router: split.smi-spec.io version of TrafficSplits (v1alpha1, v1alpha2 or v1alpha3, as the mesh serves)")
		},
		Build: func(env daemon.Env) (daemon.Service, error) {
			o.traffic.Bus, o.traffic.Logger = env.Bus, env.Log
			return routers[string(o.router)](env, o)
		},
	}
}

// localService runs the local proxy and the traffic service that applies
// routes to it.
type localService struct {
	proxy *localproxy.Router
	svc   *traffic.Service
	drain time.Duration
}

func newLocal(env daemon.Env, o options) (daemon.Service, error) {
	proxy, err := localproxy.New(localproxy.Config{
		JetStream:    env.Client.JetStream(),
		Bus:          env.Bus,
		DrainTimeout: o.drainTimeout,
		Logger:       env.Log,
	})
	if err != nil {
		return nil, err
	}
	svc, err := traffic.New(env.Client, proxy, o.traffic)
	if err != nil {
		return nil, err
	}
	return &localService{proxy: proxy, svc: svc, drain: o.drainTimeout}, nil
}

// Run starts the proxies before taking tasks, and drains them after the
// tasks in progress are done.
func (s *localService) Run(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := s.proxy.Start(sctx)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), s.drain+5*time.Second)
		defer cancel()
		_ = s.proxy.Close(cctx)
	}()
	return s.svc.Run(ctx)
}

func (s *localService) Ready() bool { return s.proxy.Ready() && s.svc.Ready() }

// newKube runs the traffic service on Kubernetes.
func newKube(env daemon.Env, o options) (daemon.Service, error) {
	clients, err := o.kube.Connect("sluice-traffic")
	if err != nil {
		return nil, err
	}
	router, err := kube.New(kube.Config{
		Client: clients.Typed, Dynamic: clients.Dynamic,
		IstioAPIVersion: o.istioVersion, SMIAPIVersion: o.smiVersion, Logger: env.Log,
	})
	if err != nil {
		return nil, err
	}
	return traffic.New(env.Client, router, o.traffic)
}
