package assembly

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
	"github.com/sluicehq/sluice/services/replicas/local"
	"github.com/sluicehq/sluice/services/traffic"
	traffickube "github.com/sluicehq/sluice/services/traffic/kube"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

func (o *Options) replicasConfig(env daemon.Env) replicas.Config {
	cfg := o.Replicas
	cfg.Bus, cfg.Logger, cfg.Metrics, cfg.StopTimeout, cfg.Clock = env.Bus, env.Log, env.Metrics, env.StopTimeout, o.busClock(Replicas, env)
	return cfg
}

func (o *Options) trafficConfig(env daemon.Env) traffic.Config {
	cfg := o.Traffic
	cfg.Bus, cfg.Logger, cfg.Metrics, cfg.StopTimeout = env.Bus, env.Log, env.Metrics, env.StopTimeout
	return cfg
}

// localReplicas is the replicas service on the local platform: OS
// processes under StateDir.
func (o *Options) localReplicas(env daemon.Env) (daemon.Service, error) {
	backend, err := local.New(local.Config{
		StateDir:    o.StateDir,
		Host:        o.AdvertiseHost,
		JetStream:   env.Client.JetStream(),
		Bus:         env.Bus,
		StopOnClose: o.StopOnExit,
		Logger:      env.Log,
	})
	if err != nil {
		return nil, err
	}
	return replicas.New(env.Client, backend, o.replicasConfig(env))
}

// kubeReplicas is the replicas service on Kubernetes, with the Rollout
// controllers when WatchRollouts.
func (o *Options) kubeReplicas(agent string, env daemon.Env) (daemon.Service, error) {
	clients, err := o.Kube.Connect(agent)
	if err != nil {
		return nil, err
	}
	backend, err := kube.New(kube.Config{Client: clients.Typed, Dynamic: clients.Dynamic, Namespace: o.Namespace, Logger: env.Log})
	if err != nil {
		return nil, err
	}
	svc, err := replicas.New(env.Client, backend, o.replicasConfig(env))
	if err != nil {
		return nil, err
	}
	k := &withControllers{svc: svc}
	if o.WatchRollouts {
		k.ctrl, err = crd.New(crd.Config{Client: clients.Typed, Dynamic: clients.Dynamic, Bus: env.Client, BusConfig: env.Bus, Namespace: o.Namespace, Logger: env.Log})
	}
	return k, err
}

// withControllers is the replicas service on Kubernetes with the Rollout
// CRD controllers, when enabled.
type withControllers struct {
	svc  *replicas.Service
	ctrl *crd.Controllers
}

var _ daemon.Service = (*withControllers)(nil)

func (k *withControllers) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return k.svc.Run(ctx) })
	if k.ctrl != nil {
		g.Go(func() error { return k.ctrl.Run(ctx) })
	}
	return g.Wait()
}

func (k *withControllers) Ready() bool {
	return k.svc.Ready() && (k.ctrl == nil || k.ctrl.Ready())
}

// localTraffic is the traffic service with the local platform's proxy,
// whose metrics go to env.Registerer. The service starts and closes it.
func (o *Options) localTraffic(env daemon.Env) (daemon.Service, error) {
	proxy, err := localproxy.New(localproxy.Config{
		JetStream:    env.Client.JetStream(),
		Bus:          env.Bus,
		DrainTimeout: o.DrainTimeout,
		Registerer:   env.Registerer,
		Logger:       env.Log,
	})
	if err != nil {
		return nil, err
	}
	return traffic.New(env.Client, proxy, o.trafficConfig(env))
}

// kubeTraffic is the traffic service on Kubernetes.
func (o *Options) kubeTraffic(agent string, env daemon.Env) (daemon.Service, error) {
	clients, err := o.Kube.Connect(agent)
	if err != nil {
		return nil, err
	}
	router, err := traffickube.New(traffickube.Config{
		Client: clients.Typed, Dynamic: clients.Dynamic,
		IstioAPIVersion: o.IstioAPIVersion, SMIAPIVersion: o.SMIAPIVersion, Namespace: o.Namespace, Logger: env.Log,
	})
	if err != nil {
		return nil, err
	}
	return traffic.New(env.Client, router, o.trafficConfig(env))
}
