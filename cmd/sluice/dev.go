package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/promserver"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// devConfig is `sluice dev`'s configuration: its own flags (the embedded
// NATS server and Prometheus), the flags every Sluice process shares, and
// the services' flags exactly as the service binaries take them.
type devConfig struct {
	// NATSListen is where the embedded NATS server listens.
	NATSListen string
	// PrometheusListen is where the embedded Prometheus serves its API.
	PrometheusListen string
	// SyncInterval is JetStream's fsync interval; 0 keeps the server's default.
	SyncInterval time.Duration
	// ScrapeInterval is how often Prometheus scrapes the proxies and apps.
	ScrapeInterval time.Duration
	// DashboardListen is where the gateway serves the dashboard and the
	// HTTP API; "" or "off" runs no gateway.
	DashboardListen string
	// DashboardAuth is the gateway's auth file. Without one the gateway
	// lets every caller in as an admin named after the user, which is
	// why it must then listen on loopback only.
	DashboardAuth string
	// Notifications is the notifier's configuration file; without one
	// sluice dev runs no notifier.
	Notifications string
	// NotificationsListen is where the notifier serves the chat
	// endpoints.
	NotificationsListen string
	// Process holds --http-listen (sluice dev's own /metrics, the proxies'
	// metrics among them, /healthz and /readyz), the log flags,
	// --stop-timeout and the bus flags (development defaults to R1 on
	// file storage).
	Process daemon.Flags
	// Services are the services' flags; Services.StateDir keeps JetStream's
	// files, Prometheus' data and the local platform's process state and
	// logs, and Services.Platform is "local" or "kube" (the cluster of
	// Services.Kube).
	Services *assembly.Options
}

// devRefused are the service binaries' flags that sluice dev refuses, with
// why. Every other flag of a service binary, sluice dev takes as the binary
// does (TestDevHonoursOrRefusesEveryServiceFlag).
var devRefused = map[string]string{
	"router":       "sluice dev routes traffic on the platform of --platform",
	"stop-on-exit": "sluice dev always stops the processes it started when it exits",
	"listen":       "sluice dev serves the gateway on --dashboard-listen and the notifier's chat endpoints on --notifications-listen",
	"config":       "sluice dev takes the notifier's configuration file as --notifications",
	"auth-config":  "sluice dev takes the gateway's auth file as --dashboard-auth",
}

// devRefusedConn is why sluice dev refuses the NATS connection flags.
const devRefusedConn = "sluice dev runs its own NATS server (see --nats-listen)"

// newDevConfig returns the configuration with every flag at its default.
func newDevConfig() devConfig {
	var cfg devConfig
	cfg.addFlags(pflag.NewFlagSet("dev", pflag.ContinueOnError))
	return cfg
}

// addFlags registers sluice dev's flags on f: its own, then each service's
// through the composition root the binaries use, so a service flag exists
// once. The refused ones are registered hidden and fail when given.
func (c *devConfig) addFlags(f *pflag.FlagSet) {
	c.Services = assembly.NewOptions(os.Getenv)
	f.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "address of the embedded NATS server")
	f.StringVar(&c.PrometheusListen, "prometheus-listen", promserver.DefaultListen, "address of the embedded Prometheus API")
	c.Process.AddFlags(f, "127.0.0.1:9091", nil)
	f.StringVar(&c.Services.StateDir, "state-dir", ".sluice", "directory for all state: JetStream, Prometheus, processes and their logs")
	f.Var(&c.Services.Platform, "platform", "where workloads run: local (processes and a built-in proxy) or kube (ReplicaSets and the routers of the cluster in --kubeconfig)")
	f.DurationVar(&c.SyncInterval, "sync-interval", 0, "JetStream fsync interval (0: the server's default of 2m; see docs/events.md)")
	f.DurationVar(&c.ScrapeInterval, "scrape-interval", promserver.DefaultScrapeInterval, "how often the embedded Prometheus scrapes")
	f.StringVar(&c.DashboardListen, "dashboard-listen", DefaultDashboardListen, `address of the dashboard and the HTTP API (the gateway); "off" runs no gateway. Without --dashboard-auth it must be a loopback address`)
	f.StringVar(&c.DashboardAuth, "dashboard-auth", "", "the gateway's auth file (docs/gateway.md); without it every caller is an admin named user:$USER, with no sign-in")
	f.StringVar(&c.Notifications, "notifications", "", "run the notifier with this configuration: a file holding Argo Rollouts' argo-rollouts-notification-configmap manifest, optionally with its Secret (docs/notifications.md); reloaded on change")
	f.StringVar(&c.NotificationsListen, "notifications-listen", DefaultNotificationsListen, "address of the notifier's chat endpoints (POST /slack/commands, /slack/interactions, /teams/messages)")
	for _, name := range assembly.Names {
		c.Services.AddFlags(name, f)
	}
	for name := range devRefused {
		_ = f.MarkHidden(name)
	}
}

func (c devConfig) validate() error {
	for flag, addr := range map[string]string{"--nats-listen": c.NATSListen, "--prometheus-listen": c.PrometheusListen, "--http-listen": c.Process.HTTPListen} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%s %q: want host:port: %v", flag, addr, err)
		}
		if _, err := strconv.Atoi(port); err != nil || host == "" {
			return fmt.Errorf("%s %q: want host:port with a numeric port", flag, addr)
		}
	}
	if err := c.validateDashboard(); err != nil {
		return err
	}
	if c.Services.StateDir == "" {
		return errors.New("--state-dir must not be empty")
	}
	if c.ScrapeInterval <= 0 {
		return fmt.Errorf("--scrape-interval %s must be positive", c.ScrapeInterval)
	}
	return nil
}

// DefaultNotificationsListen is --notifications-listen's default.
const DefaultNotificationsListen = "127.0.0.1:3101"

// DefaultDashboardListen is --dashboard-listen's default: loopback, on the
// port Argo Rollouts' dashboard uses.
const DefaultDashboardListen = "127.0.0.1:3100"

// dashboardOn reports whether sluice dev runs the gateway.
func (c devConfig) dashboardOn() bool {
	return c.DashboardListen != "" && c.DashboardListen != "off"
}

// validateDashboard refuses a gateway without sign-in on an address others
// can reach: every caller of it would be an admin.
func (c devConfig) validateDashboard() error {
	if !c.dashboardOn() {
		return nil
	}
	host, port, err := net.SplitHostPort(c.DashboardListen)
	if err != nil {
		return fmt.Errorf(`--dashboard-listen %q: want host:port, or "off": %v`, c.DashboardListen, err)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return fmt.Errorf("--dashboard-listen %q: want host:port with a numeric port", c.DashboardListen)
	}
	if c.DashboardAuth != "" || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("--dashboard-listen %q is not a loopback address, and without --dashboard-auth everyone who reaches it would be an admin: listen on 127.0.0.1, or give --dashboard-auth FILE (docs/gateway.md)", c.DashboardListen)
}

// isLoopback reports whether host names this machine only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// devActor is who the callers of a gateway without sign-in are: the user
// who started sluice dev ($USER, else the account's name), so that the
// history says who pressed a button.
func devActor(getenv func(string) string) string {
	if u := getenv("USER"); u != "" {
		return "user:" + u
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "user:" + u.Username
	}
	return "user:dev"
}

// refused returns the error of the first refused flag given on f.
func refused(f *pflag.FlagSet) error {
	var conn events.ConnConfig
	connFlags := pflag.NewFlagSet("conn", pflag.ContinueOnError)
	conn.AddFlags(connFlags)
	var err error
	f.Visit(func(fl *pflag.Flag) {
		if err != nil {
			return
		}
		if why, ok := devRefused[fl.Name]; ok {
			err = fmt.Errorf("--%s: %s", fl.Name, why)
		} else if connFlags.Lookup(fl.Name) != nil {
			err = fmt.Errorf("--%s: %s", fl.Name, devRefusedConn)
		}
	})
	return err
}

func newDevCmd() *cobra.Command {
	cfg := devConfig{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run all of Sluice in one process for development",
		Long: `Run all of Sluice in one process: an embedded NATS server with JetStream on
disk, the orchestrator, analyzer, replicas, traffic and gateway services
(and the notifier, given --notifications FILE) connected to it over real NATS client connections, the local platform (apps
as processes, a weighted proxy per rollout), an embedded Prometheus that
scrapes the proxies and the apps and serves the query API the analyzer
uses, and the dashboard and HTTP API on http://127.0.0.1:3100.

The dashboard needs no sign-in: it listens on loopback and every caller is
an admin named after $USER, as Argo's kubectl argo rollouts dashboard does.
With --dashboard-auth FILE callers sign in as the file says, and only then
may --dashboard-listen be an address others can reach.

The services take the flags of their binaries (sluice-orchestrator,
sluice-analyzer, sluice-replicas, sluice-traffic, sluice-gateway,
sluice-notifier), but for the NATS connection, --router (it follows
--platform), --stop-on-exit (always), the gateway's --listen and
--auth-config (--dashboard-listen and --dashboard-auth), and the
notifier's --config and --listen (--notifications and
--notifications-listen).

State lives under --state-dir. Ctrl-C stops everything cleanly (apps
included); starting again resumes the rollouts in progress.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := refused(cmd.Flags()); err != nil {
				return usageError{err}
			}
			if err := cfg.validate(); err != nil {
				return usageError{err}
			}
			return runDev(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cfg.addFlags(cmd.Flags())
	return cmd
}

func runDev(ctx context.Context, cfg devConfig, out, errOut io.Writer) error {
	log, err := cfg.Process.Logger(errOut)
	if err != nil {
		return usageError{err}
	}
	bus := cfg.Process.Bus
	bus.Defaults()
	if err := bus.Validate(); err != nil {
		return err
	}
	// sluice dev's own metrics endpoint carries the services' and the
	// proxies' metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	proc, err := daemon.Start(ctx, daemon.ProcessConfig{Name: "sluice-dev", HTTPListen: cfg.Process.HTTPListen, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	defer proc.Close()

	// The bus.
	host, portStr, _ := net.SplitHostPort(cfg.NATSListen)
	port, _ := strconv.Atoi(portStr)
	storeDir := filepath.Join(cfg.Services.StateDir, "nats")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	srv, err := embedded.Start(embedded.Options{Host: host, Port: port, StoreDir: storeDir, SyncInterval: cfg.SyncInterval})
	if err != nil {
		return err
	}
	defer srv.Shutdown()

	var clients []*events.Client
	defer func() {
		for i := len(clients) - 1; i >= 0; i-- {
			_ = clients[i].Close()
		}
	}()
	// Its own server may answer late (a busy machine, a large store to
	// recover): like every service binary, sluice dev waits for the bus,
	// saying so on /readyz and in its log, instead of giving up after a
	// fixed time (issue 21).
	client := func(name string) (*events.Client, error) {
		c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{srv.ClientURL()}, Name: "sluice-dev-" + name},
			events.WithLogger(log.With("service", name)), events.WithObserver(proc.Metrics(), 0), events.WithAckWait(bus.AckWait),
			events.WithWaitReport(proc.WaitReport(srv.ClientURL())))
		if err == nil {
			clients = append(clients, c)
		}
		return c, err
	}
	admin, err := client("admin")
	if err != nil {
		return err
	}
	if err := proc.WaitForBus(ctx, func(ctx context.Context) error { return admin.Provision(ctx, bus) }); err != nil {
		return err
	}
	metricsURL := "http://" + proc.Addr() + "/metrics"

	// Prometheus scrapes sluice dev (the proxies) and every ready app process.
	apps := &appTargets{byKey: map[string]endpoints.Revision{}}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	err = proc.WaitForBus(ctx, func(ctx context.Context) error {
		eps, err := endpoints.Open(ctx, admin.JetStream(), bus)
		if err != nil {
			return err
		}
		return eps.Watch(wctx, apps.update)
	})
	if err != nil {
		return err
	}
	prom, err := promserver.Start(ctx, promserver.Config{
		Listen:         cfg.PrometheusListen,
		DataDir:        filepath.Join(cfg.Services.StateDir, "prometheus"),
		ScrapeInterval: cfg.ScrapeInterval,
		Logger:         log.With("service", "prometheus"),
		Targets: func() []promserver.Target {
			return append([]promserver.Target{{URL: metricsURL, Labels: map[string]string{"job": "sluice"}}}, apps.targets()...)
		},
	})
	if err != nil {
		return err
	}
	defer prom.Close()

	// The services, each on its own connection, composed as their binaries
	// compose them.
	o := cfg.Services
	o.Router = o.Platform
	o.StopOnExit = true
	if o.Prometheus.Address == "" {
		o.Prometheus.Address = prom.URL()
	}
	o.Gateway.Listen, o.Gateway.Auth.File, o.Gateway.StateDir = cfg.DashboardListen, cfg.DashboardAuth, o.StateDir
	if cfg.DashboardAuth == "" {
		o.Gateway.Auth.Anonymous, o.Gateway.Auth.AnonymousActor = auth.RoleAdmin, devActor(os.Getenv)
	}
	o.NotifierConfig, o.Notifier.Listen = cfg.Notifications, cfg.NotificationsListen
	if o.Notifier.DashboardURL == "" && cfg.dashboardOn() {
		o.Notifier.DashboardURL = "http://" + cfg.DashboardListen
	}
	names := []string{}
	conns := map[string]*events.Client{}
	for _, name := range assembly.Names {
		if name == assembly.Gateway && !cfg.dashboardOn() || name == assembly.Notifier && cfg.Notifications == "" {
			continue
		}
		c, err := client(name)
		if err != nil {
			return err
		}
		names, conns[name] = append(names, name), c
	}
	var dashboard, chat interface{ Addr() net.Addr }
	build := func() ([]daemon.Named, error) {
		var services []daemon.Named
		for _, name := range names {
			svc, err := o.Build(name, "sluice-dev", proc.Env(conns[name], bus, log.With("service", name), cfg.Process.StopTimeout))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			services = append(services, daemon.Named{Name: name, Service: svc})
			if a, ok := svc.(interface{ Addr() net.Addr }); ok && name == assembly.Gateway {
				dashboard = a
			}
			if a, ok := svc.(interface{ Addr() net.Addr }); ok && name == assembly.Notifier {
				chat = a
			}
		}
		return services, nil
	}
	var banner sync.Once
	ready := func() {
		if dashboard != nil {
			fmt.Fprintf(out, "sluice dev: dashboard and HTTP API  %s\n", dashboardURL(dashboard.Addr()))
		}
		if chat != nil && chat.Addr() != nil {
			fmt.Fprintf(out, "sluice dev: notifier chat endpoints %s (notifications from %s)\n", dashboardURL(chat.Addr()), cfg.Notifications)
		}
		fmt.Fprintf(out, "sluice dev: NATS with JetStream   %s (state in %s)\n", srv.ClientURL(), o.StateDir)
		fmt.Fprintf(out, "sluice dev: Prometheus API        %s\n", prom.URL())
		fmt.Fprintf(out, "sluice dev: metrics and health    %s\n", metricsURL)
		if o.Platform.Value() == "kube" {
			fmt.Fprintln(out, "sluice dev: orchestrator, analyzer, replicas (Kubernetes ReplicaSets, Rollout objects watched) and traffic (Kubernetes routers) running")
		} else {
			fmt.Fprintln(out, "sluice dev: orchestrator, analyzer, replicas (local processes) and traffic (local proxy) running")
			fmt.Fprintln(out, "sluice dev: each rollout's proxy listens on its local.sluice.io/listen annotation (logged as 'proxy listening')")
		}
		fmt.Fprintln(out, "sluice dev: press Ctrl-C to stop")
	}
	// A run the bus failed (a start that timed out while the services
	// provision their buckets, say) is built and run again, as a service
	// binary's is (daemon.WaitForBus).
	err = proc.WaitForBus(ctx, func(ctx context.Context) error {
		services, err := build()
		if err != nil {
			return err
		}
		return proc.Run(ctx, func() { banner.Do(ready) }, services...)
	})
	if ctx.Err() != nil {
		fmt.Fprintln(out, "sluice dev: stopped")
	}
	return err
}

// dashboardURL is the address a browser on this machine opens: the
// loopback address when the gateway listens on every interface.
func dashboardURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// appTargets turns the endpoints bucket into Prometheus scrape targets.
type appTargets struct {
	mu    sync.Mutex
	byKey map[string]endpoints.Revision
}

func (a *appTargets) update(r endpoints.Revision) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := r.Key()
	if len(r.Ready) == 0 {
		delete(a.byKey, key)
		return
	}
	a.byKey[key] = r
}

func (a *appTargets) targets() []promserver.Target {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []promserver.Target
	for _, r := range a.byKey {
		path := r.MetricsPath
		if path == "" {
			path = "/metrics"
		}
		for _, addr := range r.Ready {
			labels := map[string]string{"job": "apps", "namespace": r.Ref.Namespace, "rollout": r.Ref.Name, "pod_hash": r.PodHash, "instance": addr}
			if r.Template != "" {
				// An experiment's processes may share the stable's pod
				// hash: the template tells them apart.
				labels["experiment"], labels["template"] = r.Experiment, r.Template
			}
			out = append(out, promserver.Target{URL: "http://" + addr + path, Labels: labels})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL < out[j].URL })
	return out
}
