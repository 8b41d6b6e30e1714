package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/kubeconfig"
	"github.com/sluicehq/sluice/internal/promserver"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
	"github.com/sluicehq/sluice/services/analyzer"
	promprovider "github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
	"github.com/sluicehq/sluice/services/analyzer/metrics/web"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
	"github.com/sluicehq/sluice/services/replicas/local"
	"github.com/sluicehq/sluice/services/traffic"
	traffickube "github.com/sluicehq/sluice/services/traffic/kube"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

// devConfig is `sluice dev`'s configuration.
type devConfig struct {
	// NATSListen is where the embedded NATS server listens.
	NATSListen string
	// PrometheusListen is where the embedded Prometheus serves its API.
	PrometheusListen string
	// HTTPListen serves sluice dev's own /metrics (the proxies' metrics
	// among them), /healthz and /readyz.
	HTTPListen string
	// StateDir keeps JetStream's files, Prometheus' data and the local
	// platform's process state and logs.
	StateDir string
	// Platform is "local" or "kube" (the cluster of Kube).
	Platform string
	// Kube is the cluster connection of --platform kube.
	Kube kubeconfig.Flags
	// SyncInterval is JetStream's fsync interval; 0 keeps the server's default.
	SyncInterval time.Duration
	// ScrapeInterval is how often Prometheus scrapes the proxies and apps.
	ScrapeInterval time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// Bus tunes the streams; development defaults to R1 on file storage.
	Bus events.BusConfig
}

func (c devConfig) validate() error {
	for flag, addr := range map[string]string{"--nats-listen": c.NATSListen, "--prometheus-listen": c.PrometheusListen, "--http-listen": c.HTTPListen} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("%s %q: want host:port: %v", flag, addr, err)
		}
		if _, err := strconv.Atoi(port); err != nil || host == "" {
			return fmt.Errorf("%s %q: want host:port with a numeric port", flag, addr)
		}
	}
	if c.StateDir == "" {
		return errors.New("--state-dir must not be empty")
	}
	switch c.Platform {
	case "local", "kube":
	default:
		return fmt.Errorf("no platform named %q; supported: local, kube", c.Platform)
	}
	if c.ScrapeInterval <= 0 {
		return fmt.Errorf("--scrape-interval %s must be positive", c.ScrapeInterval)
	}
	return nil
}

func newDevCmd() *cobra.Command {
	var cfg devConfig
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run all of Sluice in one process for development",
		Long: `Run all of Sluice in one process: an embedded NATS server with JetStream on
disk, the orchestrator, analyzer, replicas and traffic services connected to
it over real NATS client connections, the local platform (apps as processes,
a weighted proxy per rollout), and an embedded Prometheus that scrapes the
proxies and the apps and serves the query API the analyzer uses.

State lives under --state-dir. Ctrl-C stops everything cleanly (apps
included); starting again resumes the rollouts in progress.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.validate(); err != nil {
				return usageError{err}
			}
			return runDev(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "address of the embedded NATS server")
	f.StringVar(&cfg.PrometheusListen, "prometheus-listen", promserver.DefaultListen, "address of the embedded Prometheus API")
	f.StringVar(&cfg.HTTPListen, "http-listen", "127.0.0.1:9091", "address of sluice dev's /metrics, /healthz and /readyz")
	f.StringVar(&cfg.StateDir, "state-dir", ".sluice", "directory for all state: JetStream, Prometheus, processes and their logs")
	f.StringVar(&cfg.Platform, "platform", "local", "where workloads run: local (processes and a built-in proxy) or kube (ReplicaSets and the routers of the cluster in --kubeconfig)")
	cfg.Kube.Add(f)
	f.DurationVar(&cfg.SyncInterval, "sync-interval", 0, "JetStream fsync interval (0: the server's default of 2m; see docs/events.md)")
	f.DurationVar(&cfg.ScrapeInterval, "scrape-interval", promserver.DefaultScrapeInterval, "how often the embedded Prometheus scrapes")
	f.StringVar(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	cfg.Bus.AddFlags(f)
	return cmd
}

// devService is one of the services sluice dev runs.
type devService struct {
	name  string
	run   func(ctx context.Context) error
	ready func() bool
}

func runDev(ctx context.Context, cfg devConfig, out, errOut io.Writer) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", cfg.LogLevel)}
	}
	log := slog.New(telemetry.LogHandler(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: lv})))
	cfg.Bus.Defaults()
	if err := cfg.Bus.Validate(); err != nil {
		return err
	}

	shutdownTracing, err := telemetry.SetupTracing(ctx, "sluice-dev", os.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()
	// sluice dev's own metrics endpoint carries the services' and the
	// proxies' metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	metrics, err := telemetry.New(reg)
	if err != nil {
		return err
	}

	// The bus.
	host, portStr, _ := net.SplitHostPort(cfg.NATSListen)
	port, _ := strconv.Atoi(portStr)
	storeDir := filepath.Join(cfg.StateDir, "nats")
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	srv, err := embedded.Start(embedded.Options{Host: host, Port: port, StoreDir: storeDir, SyncInterval: cfg.SyncInterval})
	if err != nil {
		return err
	}
	defer srv.Shutdown()

	connectAs := func(name string) (*events.Client, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return events.Connect(cctx, events.ConnConfig{URLs: []string{srv.ClientURL()}, Name: "sluice-dev-" + name}, events.WithLogger(log.With("service", name)), events.WithObserver(metrics, 0), events.WithAckWait(cfg.Bus.AckWait))
	}
	var clients []*events.Client
	defer func() {
		for i := len(clients) - 1; i >= 0; i-- {
			_ = clients[i].Close()
		}
	}()
	client := func(name string) (*events.Client, error) {
		c, err := connectAs(name)
		if err == nil {
			clients = append(clients, c)
		}
		return c, err
	}
	admin, err := client("admin")
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = admin.Provision(pctx, cfg.Bus)
	cancel()
	if err != nil {
		return err
	}

	var services []devService
	allReady := func() bool {
		for _, s := range services {
			if !s.ready() {
				return false
			}
		}
		return len(services) > 0
	}
	httpLn, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("--http-listen %s: %w", cfg.HTTPListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !allReady() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = httpSrv.Serve(httpLn) }()
	defer httpSrv.Close()
	metricsURL := "http://" + httpLn.Addr().String() + "/metrics"

	// Prometheus scrapes sluice dev (the proxies) and every ready app process.
	apps := &appTargets{byKey: map[string]endpoints.Revision{}}
	eps, err := endpoints.Open(ctx, admin.JetStream(), cfg.Bus)
	if err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := eps.Watch(wctx, apps.update); err != nil {
		return err
	}
	prom, err := promserver.Start(ctx, promserver.Config{
		Listen:         cfg.PrometheusListen,
		DataDir:        filepath.Join(cfg.StateDir, "prometheus"),
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

	// The four services, each on its own connection.
	oc, err := client("orchestrator")
	if err != nil {
		return err
	}
	orch, err := orchestrator.New(oc, orchestrator.Config{Bus: cfg.Bus, Logger: log.With("service", "orchestrator"), Metrics: metrics})
	if err != nil {
		return err
	}
	ac, err := client("analyzer")
	if err != nil {
		return err
	}
	promCfg := promprovider.ConfigFromEnv(os.Getenv)
	if promCfg.Address == "" {
		promCfg.Address = prom.URL()
	}
	providers, err := analyzer.DefaultProviders(promCfg, web.Config{})
	if err != nil {
		return err
	}
	an, err := analyzer.New(ac, analyzer.Config{Bus: cfg.Bus, Providers: providers, Logger: log.With("service", "analyzer"), Metrics: metrics})
	if err != nil {
		return err
	}
	rc, err := client("replicas")
	if err != nil {
		return err
	}
	tc, err := client("traffic")
	if err != nil {
		return err
	}
	services = []devService{
		{"orchestrator", orch.Run, orch.Ready},
		{"analyzer", an.Run, an.Ready},
	}
	if cfg.Platform == "kube" {
		kube, err := devKube(cfg, rc, tc, log, metrics)
		if err != nil {
			return err
		}
		services = append(services, kube...)
	} else {
		local, err := devLocal(cfg, rc, tc, reg, log, metrics)
		if err != nil {
			return err
		}
		services = append(services, local...)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, len(services))
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func(s devService) {
			defer wg.Done()
			if err := s.run(runCtx); err != nil {
				errc <- fmt.Errorf("%s: %w", s.name, err)
				stop()
			}
		}(s)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !allReady() && runCtx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if allReady() {
		fmt.Fprintf(out, "sluice dev: NATS with JetStream   %s (state in %s)\n", srv.ClientURL(), cfg.StateDir)
		fmt.Fprintf(out, "sluice dev: Prometheus API        %s\n", prom.URL())
		fmt.Fprintf(out, "sluice dev: metrics and health    http://%s/metrics\n", httpLn.Addr())
		if cfg.Platform == "kube" {
			fmt.Fprintln(out, "sluice dev: orchestrator, analyzer, replicas (Kubernetes ReplicaSets, Rollout objects watched) and traffic (Kubernetes routers) running")
		} else {
			fmt.Fprintln(out, "sluice dev: orchestrator, analyzer, replicas (local processes) and traffic (local proxy) running")
			fmt.Fprintln(out, "sluice dev: each rollout's proxy listens on its local.sluice.io/listen annotation (logged as 'proxy listening')")
		}
		fmt.Fprintln(out, "sluice dev: press Ctrl-C to stop")
	}
	<-runCtx.Done()
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(out, "sluice dev: stopped")
	}
	return errors.Join(errs...)
}

// devLocal builds the replicas and traffic services of the local platform:
// processes, and a proxy per rollout whose metrics reg serves.
func devLocal(cfg devConfig, rc, tc *events.Client, reg prometheus.Registerer, log *slog.Logger, metrics *telemetry.Metrics) ([]devService, error) {
	backend, err := local.New(local.Config{StateDir: cfg.StateDir, JetStream: rc.JetStream(), Bus: cfg.Bus, StopOnClose: true, Logger: log.With("service", "replicas")})
	if err != nil {
		return nil, err
	}
	rs, err := replicas.New(rc, backend, replicas.Config{Bus: cfg.Bus, Logger: log.With("service", "replicas"), Metrics: metrics})
	if err != nil {
		return nil, err
	}
	proxy, err := localproxy.New(localproxy.Config{JetStream: tc.JetStream(), Bus: cfg.Bus, Registerer: reg, Logger: log.With("service", "traffic")})
	if err != nil {
		return nil, err
	}
	ts, err := traffic.New(tc, proxy, traffic.Config{Bus: cfg.Bus, Logger: log.With("service", "traffic"), Metrics: metrics})
	if err != nil {
		return nil, err
	}
	return []devService{
		{"replicas", rs.Run, rs.Ready},
		{"traffic", func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := proxy.Start(sctx)
			cancel()
			if err != nil {
				return err
			}
			defer func() {
				cctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
				defer cancel()
				_ = proxy.Close(cctx)
			}()
			return ts.Run(ctx)
		}, func() bool { return proxy.Ready() && ts.Ready() }},
	}, nil
}

// devKube builds the replicas and traffic services of the Kubernetes
// platform, with the Rollout watcher and status writers.
func devKube(cfg devConfig, rc, tc *events.Client, log *slog.Logger, metrics *telemetry.Metrics) ([]devService, error) {
	clients, err := cfg.Kube.Connect("sluice-dev")
	if err != nil {
		return nil, err
	}
	rlog := log.With("service", "replicas")
	backend, err := kube.New(kube.Config{Client: clients.Typed, Dynamic: clients.Dynamic, Logger: rlog})
	if err != nil {
		return nil, err
	}
	rs, err := replicas.New(rc, backend, replicas.Config{Bus: cfg.Bus, Logger: rlog, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	ctrl, err := crd.New(crd.Config{Client: clients.Typed, Dynamic: clients.Dynamic, Bus: rc, BusConfig: cfg.Bus, Logger: rlog})
	if err != nil {
		return nil, err
	}
	tlog := log.With("service", "traffic")
	router, err := traffickube.New(traffickube.Config{Client: clients.Typed, Dynamic: clients.Dynamic, Logger: tlog})
	if err != nil {
		return nil, err
	}
	ts, err := traffic.New(tc, router, traffic.Config{Bus: cfg.Bus, Logger: tlog, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	return []devService{
		{"replicas", rs.Run, rs.Ready},
		{"rollout controllers", ctrl.Run, ctrl.Ready},
		{"traffic", ts.Run, ts.Ready},
	}, nil
}

// appTargets turns the endpoints bucket into Prometheus scrape targets.
type appTargets struct {
	mu    sync.Mutex
	byKey map[string]endpoints.Revision
}

func (a *appTargets) update(r endpoints.Revision) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := endpoints.Key(r.Ref, r.PodHash)
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
			out = append(out, promserver.Target{URL: "http://" + addr + path, Labels: map[string]string{
				"job": "apps", "namespace": r.Ref.Namespace, "rollout": r.Ref.Name, "pod_hash": r.PodHash, "instance": addr,
			}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL < out[j].URL })
	return out
}
