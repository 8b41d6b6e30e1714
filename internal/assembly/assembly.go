// Package assembly is Sluice's one composition root: how the orchestrator,
// analyzer, replicas, traffic, gateway and notifier services are configured by flags
// and built from them. The service binaries and `sluice dev` all compose the
// services here, so a flag exists once and means the same everywhere, and
// the NATS permissions of each identity derive from what its services
// declare they need.
package assembly

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/kubeconfig"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
	"github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
	"github.com/sluicehq/sluice/services/gateway"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/gateway/kubepods"
	"github.com/sluicehq/sluice/services/notifier"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/local"
	"github.com/sluicehq/sluice/services/traffic"
)

// Service names, as sluice dev calls them and as the binaries are named
// after them ("sluice-" + name).
const (
	Orchestrator = "orchestrator"
	Analyzer     = "analyzer"
	Replicas     = "replicas"
	Traffic      = "traffic"
	Gateway      = "gateway"
	Notifier     = "notifier"
)

// Names lists the services in the order they start in sluice dev.
var Names = []string{Orchestrator, Analyzer, Replicas, Traffic, Gateway, Notifier}

// Platforms are the values of --platform (replicas) and --router
// (traffic): where workloads run and how their traffic is routed.
var Platforms = []string{"local", "kube"}

// Options are the flags of every service. Each service's flags are
// registered by AddFlags into the fields here; flags two services share
// (the cluster connection, --state-dir) are registered once.
type Options struct {
	Orchestrator orchestrator.Config
	Analyzer     analyzer.Config
	Replicas     replicas.Config
	Traffic      traffic.Config
	// Gateway is the HTTP edge; sluice dev sets its Listen, Auth.File and
	// anonymous access from its own flags.
	Gateway gateway.Config
	// Notifier sends notifications and takes chat commands; sluice dev
	// sets its Listen from --notifications-listen.
	Notifier notifier.Config
	// NotifierConfig is the notifier's configuration file (--config;
	// sluice dev: --notifications) and NotifierSecretsDir its secrets.
	NotifierConfig, NotifierSecretsDir string
	// NotifierNamespace is where the notifier reads Argo's ConfigMap and
	// Secret on the kube platform.
	NotifierNamespace string

	// Prometheus is the analyzer's own Prometheus and its credentials.
	Prometheus prometheus.Config
	// MetricPlugins is the analyzer's file of Argo Rollouts metric plugins
	// (--metric-plugins).
	MetricPlugins string
	// Getenv supplies the defaults that come from the environment
	// (default os.Getenv).
	Getenv func(string) string

	// Platform is where workloads run (replicas' --platform); Router is
	// the traffic router (traffic's --router). sluice dev sets Router from
	// Platform.
	Platform, Router choice
	// StateDir keeps the local platform's state.
	StateDir string
	// StopOnExit stops the local processes when the service exits.
	StopOnExit bool
	// AdvertiseHost is the host the local processes are reached at.
	AdvertiseHost string
	// Kube is the cluster of the kube platform and router.
	Kube kubeconfig.Flags
	// Namespace limits the kube platform to one namespace.
	Namespace string
	// WatchRollouts runs the Rollout controllers on the kube platform.
	WatchRollouts bool
	// DrainTimeout bounds a local proxy's drain.
	DrainTimeout time.Duration
	// SessionKeyFile holds the gateway's session key.
	SessionKeyFile string
	// IstioAPIVersion and SMIAPIVersion are the kube router's mesh APIs.
	IstioAPIVersion, SMIAPIVersion string
	// ClockMaxUncertainty is the largest uncertainty of the bus's time
	// the orchestrator, the analyzer and the replicas service accept
	// (--clock-max-uncertainty).
	ClockMaxUncertainty time.Duration
}

// NewOptions returns options with their defaults.
func NewOptions(getenv func(string) string) *Options {
	if getenv == nil {
		getenv = os.Getenv
	}
	return &Options{Getenv: getenv, Platform: choice{"local", Platforms, "platform"}, Router: choice{"local", Platforms, "router"}}
}

// AddFlags registers the flags of service (one of Names) on fs. A flag fs
// already has (registered for another service, or by sluice dev with its
// own help) is not registered again: the first registration's field is the
// one both read.
func (o *Options) AddFlags(service string, fs *pflag.FlagSet) {
	add := func(name string, register func()) {
		if fs.Lookup(name) == nil {
			register()
		}
	}
	kube := func() { add("kubeconfig", func() { o.Kube.Add(fs) }) }
	busClock := func() {
		add(FlagClockMaxUncertainty, func() {
			fs.Var(daemon.PositiveDuration(&o.ClockMaxUncertainty, clock.DefaultMaxUncertainty), FlagClockMaxUncertainty,
				"the largest uncertainty of the bus's time (half the round trip of the best of 5 readings) the service accepts before it decides anything; it stays not ready until a reading is within it. Raise it for a bus far away (over a 500ms round trip): a timed wait may then end early by up to twice it")
		})
	}
	switch service {
	case Orchestrator:
		c := &o.Orchestrator
		fs.Var(daemon.NonNegativeDuration(&c.Machine.TaskStartTimeout, 0), "task-start-timeout", "how long a task may wait for a worker before it is sent again (default 30s)")
		fs.Var(daemon.NonNegativeInt(&c.Machine.TaskMaxAttempts, 0), "task-max-attempts", "attempts of a task before its step fails (default 3)")
		fs.Var(stateCache{&c.StateCache}, "state-cache", "how many rollouts' decoded states to keep in memory (0: none); a busy rollout's state is then not decoded again for each report")
		fs.BoolVar(&c.InlineState, "inline-state", false, "write rollout records with their spec and templates inline, as releases before the split records did, and rewrite the split ones so at start: for a rolling upgrade from such a release, or before rolling back to one")
		fs.Var(daemon.NonNegativeInt(&c.Partitions, 0), "partitions", "give each rollout one owner at a time: commands and results are copied into this many partitions (by namespace and name), each consumed by one orchestrator replica at a time, which decides on the records it holds; 0: every replica takes any message from shared consumers. Fixed for a bus once set (docs/orchestrator.md, One owner per rollout)")
		fs.Var(daemon.PositiveDuration(&c.OwnerTTL, orchestrator.DefaultOwnerTTL), "owner-ttl", "with --partitions: how long a partition stays with a replica that stopped pulling it (killed, cut off) before another takes it over; at least 2s")
		busClock()
	case Analyzer:
		env := prometheus.ConfigFromEnv(o.Getenv)
		p, c := &o.Prometheus, &o.Analyzer
		fs.StringVar(&p.Address, "prometheus-address", env.Address, "the Prometheus the analyzer's own credentials are for (env "+prometheus.EnvAddress+")")
		fs.StringVar(&p.Username, "prometheus-username", env.Username, "basic-auth user for --prometheus-address (env "+prometheus.EnvUsername+")")
		// Secrets default to empty so that --help never prints them;
		// the environment fills them in at build.
		fs.StringVar(&p.BearerToken, "prometheus-token", "", "bearer token for --prometheus-address (env "+prometheus.EnvToken+")")
		fs.StringVar(&p.Password, "prometheus-password", "", "basic-auth password for --prometheus-address (env "+prometheus.EnvPassword+")")
		fs.DurationVar(&c.LeaseMargin, "lease-margin", 0, "added to a provider's timeout to form a measurement lease (default 10s)")
		fs.DurationVar(&c.Retention, "run-retention", 0, "how long a finished run's record is kept (default 24h)")
		fs.IntVar(&c.MaxConcurrentRuns, "max-concurrent-runs", 0, "runs this replica measures at once (default 64)")
		fs.StringVar(&o.MetricPlugins, "metric-plugins", "", "file listing the Argo Rollouts metric plugins metrics may name (metricProviderPlugins, as in the argo-rollouts-config ConfigMap; file:// locations only, nothing is downloaded; docs/providers/plugin.md)")
		busClock()
		add("platform", func() {
			fs.Var(&o.Platform, "platform", "where secretKeyRef arguments are read and job metrics run: "+strings.Join(Platforms, ", ")+" (local: the analyzer's environment, "+analyzer.SecretEnvPrefix+"<NAME>_<KEY>, and a Job's first container as a process; kube: the Secret and Jobs in the rollout's namespace)")
		})
		kube()
	case Replicas:
		add("platform", func() {
			fs.Var(&o.Platform, "platform", "where workloads run: "+strings.Join(Platforms, ", ")+" (local: OS processes on this machine)")
		})
		add("state-dir", func() {
			fs.StringVar(&o.StateDir, "state-dir", ".sluice", "directory for the local platform's state files and process logs (under replicas/)")
		})
		fs.BoolVar(&o.StopOnExit, "stop-on-exit", false, "local platform: stop every process when the service exits, instead of leaving them for the next start to adopt")
		fs.StringVar(&o.AdvertiseHost, "advertise-host", local.DefaultHost, "local platform: host the processes are reached at, published in the endpoints bucket and probed (set it to this machine's name when the traffic service runs elsewhere, as in Docker Compose)")
		fs.DurationVar(&o.Replicas.Wait, "scale-wait", replicas.DefaultWait, "how long a scale task waits for its revisions to become available before it fails")
		busClock()
		kube()
		add("namespace", func() {
			fs.StringVar(&o.Namespace, "namespace", "", "kube platform: manage only this namespace (default: every namespace)")
		})
		fs.BoolVar(&o.WatchRollouts, "watch-rollouts", true, "kube platform: publish a requested event when a Rollout object's spec changes in the cluster, publish AnalysisTemplates, and write rollout status back into Rollout objects")
	case Traffic:
		fs.Var(&o.Router, "router", "traffic router: "+strings.Join(slices.Sorted(slices.Values(Platforms)), ", ")+" (local: the local platform's built-in proxy; kube: Kubernetes Services and the routers each rollout's trafficRouting names)")
		fs.DurationVar(&o.DrainTimeout, "drain-timeout", 30*time.Second, "how long a stopping proxy waits for requests in flight")
		fs.DurationVar(&o.Traffic.ApplyTimeout, "apply-timeout", 30*time.Second, "how long one route may take to apply before it is retried")
		kube()
		fs.StringVar(&o.IstioAPIVersion, "istio-api-version", "v1alpha3", "kube router: networking.istio.io version to write (v1alpha3, v1beta1 or v1)")
		fs.StringVar(&o.SMIAPIVersion, "smi-api-version", "v1alpha3", "kube router: split.smi-spec.io version of TrafficSplits (v1alpha1, v1alpha2 or v1alpha3, as the mesh serves)")
		add("namespace", func() {
			fs.StringVar(&o.Namespace, "namespace", "", "kube router: watch the Ingresses of this namespace only (the informer NGINX's stable Ingresses are read from needs list and watch on them; default: every namespace)")
		})
	case Gateway:
		c := &o.Gateway
		fs.StringVar(&c.Listen, "listen", o.env(EnvGatewayListen, gateway.DefaultListen), "address of the HTTP API, the CloudEvents endpoint and the dashboard (env "+EnvGatewayListen+")")
		fs.StringVar(&c.Auth.File, "auth-config", o.env(EnvGatewayAuthConfig, ""), "auth file (docs/gateway.md): local users, bearer tokens, OIDC and the roles per namespace (env "+EnvGatewayAuthConfig+")")
		fs.BoolVar(&c.Auth.ReadOnly, "read-only", false, "refuse every command, whatever the caller's role")
		fs.Var(daemon.NonNegativeDuration(&c.CommandTimeout, gateway.DefaultCommandTimeout), "command-timeout", "how long a command waits for its answer before the caller gets 504")
		fs.Var(daemon.NonNegativeDuration(&c.MaxWait, gateway.DefaultMaxWait), "max-wait", "the longest ?wait=completed may hold a CloudEvents request")
		fs.Var(nonNegativeFloat(&c.Auth.RatePerSecond, DefaultRateLimit), "rate-limit", "requests per second each caller may make on average; more get 429")
		fs.Var(daemon.NonNegativeInt(&c.Auth.Burst, DefaultRateBurst), "rate-burst", "requests a caller may make at once above --rate-limit")
		fs.StringVar(&o.SessionKeyFile, "session-key-file", o.env(EnvGatewaySessionKeyFile, ""), "file holding the key (at least 32 bytes) that signs sign-in sessions; replicas that share it share sessions (default: a random key per process, so a restart signs everyone out) (env "+EnvGatewaySessionKeyFile+")")
		add("platform", func() {
			fs.Var(&o.Platform, "platform", "where the rollouts' pods run, for the dashboard: "+strings.Join(Platforms, ", ")+" (local: processes in --state-dir, when the replicas service runs on this machine; kube: pods in the cluster)")
		})
		add("state-dir", func() {
			fs.StringVar(&o.StateDir, "state-dir", "", "local platform: the replicas service's state directory, when it runs on this machine, to show each revision's processes")
		})
		kube()
	case Notifier:
		c := &o.Notifier
		add("config", func() {
			fs.StringVar(&o.NotifierConfig, "config", o.env(EnvNotifierConfig, ""), "the notifications configuration: a file holding Argo Rollouts' argo-rollouts-notification-configmap manifest (and optionally its Secret), reloaded on change; without it, on --platform kube, the notifier reads that ConfigMap and Secret from --namespace (env "+EnvNotifierConfig+")")
		})
		fs.StringVar(&o.NotifierSecretsDir, "secrets-dir", o.env(EnvNotifierSecretsDir, ""), "directory with a file per secret the configuration names as $name (a mounted Secret); secrets are also read from SLUICE_SECRET_<NAME> (env "+EnvNotifierSecretsDir+")")
		add("listen", func() {
			fs.StringVar(&c.Listen, "listen", o.env(EnvNotifierListen, notifier.DefaultListen), `address of the chat endpoints (POST /slack/commands, /slack/interactions, /teams/messages); "off" serves none (env `+EnvNotifierListen+")")
		})
		fs.StringVar(&c.DashboardURL, "dashboard-url", o.env(EnvNotifierDashboardURL, ""), "the dashboard's base URL (e.g. https://sluice.example.com), for links in notifications (sluice.dashboardURL in templates) (env "+EnvNotifierDashboardURL+")")
		fs.Var(daemon.NonNegativeInt(&c.MaxAttempts, notifier.DefaultMaxAttempts), "max-attempts", "attempts to send one notification before it is dead-lettered")
		add("platform", func() {
			fs.Var(&o.Platform, "platform", "where the configuration is when --config is not given: "+strings.Join(Platforms, ", ")+" (kube: the ConfigMap argo-rollouts-notification-configmap and Secret argo-rollouts-notification-secret in --namespace)")
		})
		add("namespace", func() {
			fs.StringVar(&o.NotifierNamespace, "namespace", o.env("POD_NAMESPACE", ""), "kube platform: the namespace of the notifications ConfigMap and Secret (env POD_NAMESPACE)")
		})
		kube()
	default:
		panic("assembly: no service named " + service)
	}
}

// Binary describes the service binary "sluice-" + service for daemon.Main;
// getenv supplies the defaults that come from the environment.
func Binary(service string, getenv func(string) string) daemon.Spec {
	o := NewOptions(getenv)
	name := "sluice-" + service
	return daemon.Spec{
		Name:  name,
		Flags: func(fs *pflag.FlagSet) { o.AddFlags(service, fs) },
		Build: func(env daemon.Env) (daemon.Service, error) { return o.Build(service, name, env) },
	}
}

// Build builds service from the options; agent names the process to the
// Kubernetes API server.
func (o *Options) Build(service, agent string, env daemon.Env) (daemon.Service, error) {
	switch service {
	case Orchestrator:
		cfg := o.Orchestrator
		cfg.Bus, cfg.Logger, cfg.Metrics, cfg.StopTimeout = env.Bus, env.Log, env.Metrics, env.StopTimeout
		cfg.Clock = o.busClock(Orchestrator, env)
		return orchestrator.New(env.Client, cfg)
	case Analyzer:
		prom := o.Prometheus
		fromEnv := prometheus.ConfigFromEnv(o.Getenv)
		if prom.BearerToken == "" {
			prom.BearerToken = fromEnv.BearerToken
		}
		if prom.Password == "" {
			prom.Password = fromEnv.Password
		}
		// The analyzer knows its plugins, even none: a metric naming
		// another fails its run before it starts.
		plugins := plugin.Config{CheckNames: true, Source: "--metric-plugins"}
		if o.MetricPlugins != "" {
			ps, err := plugin.LoadFile(o.MetricPlugins)
			if err != nil {
				return nil, fmt.Errorf("--metric-plugins: %w", err)
			}
			plugins.Plugins, plugins.Source = ps, "--metric-plugins "+o.MetricPlugins
		}
		cfg := o.Analyzer
		pc := analyzer.ProviderConfig{Prometheus: prom, Plugin: plugins}
		if o.Platform.value == "kube" {
			clients, err := o.Kube.Connect(agent)
			if err != nil {
				return nil, err
			}
			cfg.Secrets = analyzer.KubeSecrets{Client: clients.Typed}
			// The job provider runs Jobs in the cluster, owned by their
			// Rollout object; without a client it runs their first
			// container as a local process.
			pc.Job.Kube, pc.Job.Dynamic = clients.Typed, clients.Dynamic
		}
		reg, err := analyzer.DefaultProviders(pc)
		if err != nil {
			return nil, err
		}
		cfg.Providers, cfg.Getenv = reg, o.Getenv
		cfg.Bus, cfg.Logger, cfg.Metrics, cfg.StopTimeout = env.Bus, env.Log, env.Metrics, env.StopTimeout
		cfg.Clock = o.busClock(Analyzer, env)
		svc, err := analyzer.New(env.Client, cfg)
		if err != nil {
			_ = reg.Close()
			return nil, err
		}
		return closing{Service: svc, close: reg.Close}, nil
	case Replicas:
		if o.Platform.value == "kube" {
			return o.kubeReplicas(agent, env)
		}
		return o.localReplicas(env)
	case Traffic:
		if o.Router.value == "kube" {
			return o.kubeTraffic(agent, env)
		}
		return o.localTraffic(env)
	case Gateway:
		cfg := o.Gateway
		if cfg.Auth.File == "" && cfg.Auth.Anonymous == auth.RoleNone {
			return nil, fmt.Errorf("--auth-config: the gateway needs an auth file that says who may call it (docs/gateway.md, \"Who may do what\")")
		}
		if o.SessionKeyFile != "" {
			key, err := os.ReadFile(o.SessionKeyFile)
			if err != nil {
				return nil, fmt.Errorf("--session-key-file: %w", err)
			}
			if cfg.Auth.SessionKey = bytes.TrimSpace(key); len(cfg.Auth.SessionKey) < 32 {
				return nil, fmt.Errorf("--session-key-file %s holds %d bytes; want at least 32 (e.g. head -c 32 /dev/urandom | base64)", o.SessionKeyFile, len(cfg.Auth.SessionKey))
			}
		}
		if o.Platform.value == "kube" {
			clients, err := o.Kube.Connect(agent)
			if err != nil {
				return nil, err
			}
			cfg.Pods = kubepods.Pods{Client: clients.Typed}
		} else if cfg.StateDir == "" {
			cfg.StateDir = o.StateDir
		}
		cfg.Bus, cfg.Logger, cfg.Metrics, cfg.StopTimeout = env.Bus, env.Log, env.Metrics, env.StopTimeout
		svc, err := gateway.New(env.Client, cfg)
		if err != nil {
			return nil, err
		}
		return svc, nil
	case Notifier:
		return o.notifier(agent, env)
	}
	return nil, fmt.Errorf("assembly: no service named %q", service)
}

// FlagClockMaxUncertainty is the flag of the services that keep the bus's
// time (the orchestrator, the analyzer and the replicas service) that
// bounds their clock's uncertainty.
const FlagClockMaxUncertainty = "clock-max-uncertainty"

// busClock is service's clock of the bus's time, bounded by
// --clock-max-uncertainty.
func (o *Options) busClock(service string, env daemon.Env) *clock.Bus {
	return env.BusClock(service, clock.BusConfig{MaxUncertainty: o.ClockMaxUncertainty, BoundName: "--" + FlagClockMaxUncertainty})
}

// The gateway's environment defaults.
const (
	EnvGatewayListen     = "GATEWAY_LISTEN"
	EnvGatewayAuthConfig = "GATEWAY_AUTH_CONFIG"
	// EnvGatewaySessionKeyFile is --session-key-file's default.
	EnvGatewaySessionKeyFile = "GATEWAY_SESSION_KEY_FILE"
)

// The notifier's environment defaults.
const (
	EnvNotifierConfig       = "NOTIFIER_CONFIG"
	EnvNotifierSecretsDir   = "NOTIFIER_SECRETS_DIR"
	EnvNotifierListen       = "NOTIFIER_LISTEN"
	EnvNotifierDashboardURL = "NOTIFIER_DASHBOARD_URL"
)

// notifier builds the notifier: its configuration from --config, else on
// --platform kube from Argo's ConfigMap and Secret in --namespace.
func (o *Options) notifier(agent string, env daemon.Env) (daemon.Service, error) {
	cfg := o.Notifier
	sc := notifier.SourceConfig{
		File: o.NotifierConfig, SecretsDir: o.NotifierSecretsDir, Getenv: o.Getenv,
		DashboardURL: cfg.DashboardURL, Client: env.Client, Logger: env.Log, Metrics: env.Metrics, Registerer: env.Registerer,
	}
	if sc.File == "" && o.Platform.value == "kube" {
		clients, err := o.Kube.Connect(agent)
		if err != nil {
			return nil, err
		}
		sc.Kube = clients.Typed
		if sc.Namespace = o.NotifierNamespace; sc.Namespace == "" {
			sc.Namespace = o.Namespace
		}
	}
	src, err := notifier.NewSource(sc)
	if err != nil {
		return nil, err
	}
	cfg.Config = src
	cfg.Bus, cfg.Logger, cfg.Metrics, cfg.StopTimeout = env.Bus, env.Log, env.Metrics, env.StopTimeout
	return notifier.New(env.Client, cfg)
}

// The gateway's rate limits per caller.
const (
	DefaultRateLimit = 20
	DefaultRateBurst = 40
)

// env returns the environment's value of name, or def when it is unset.
func (o *Options) env(name, def string) string {
	if v := o.Getenv(name); v != "" {
		return v
	}
	return def
}

// choice is a flag whose value is one of a fixed list, checked when parsed
// so that an unknown one is a usage error.
type choice struct {
	value   string
	allowed []string
	what    string
}

func (c *choice) String() string { return c.value }
func (c *choice) Type() string   { return c.what }
func (c *choice) Set(v string) error {
	if !slices.Contains(c.allowed, v) {
		switch c.what {
		case "router":
			return fmt.Errorf("no traffic router named %q (supported: %s)", v, strings.Join(slices.Sorted(slices.Values(c.allowed)), ", "))
		default:
			return fmt.Errorf("unknown %s %q: supported %ss are %s", c.what, v, c.what, strings.Join(c.allowed, ", "))
		}
	}
	c.value = v
	return nil
}

// Value returns the chosen value.
func (c choice) Value() string { return c.value }

// stateCache is --state-cache: 0 on the command line means no cache, which
// orchestrator.Config spells StateCacheNone (its zero is the default); a
// negative value is refused.
type stateCache struct{ p *int }

func (s stateCache) String() string {
	if s.p == nil || *s.p == 0 {
		return fmt.Sprint(orchestrator.DefaultStateCache)
	}
	if *s.p < 0 {
		return "0"
	}
	return fmt.Sprint(*s.p)
}
func (s stateCache) Type() string { return "int" }
func (s stateCache) Set(v string) error {
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil || fmt.Sprint(n) != strings.TrimSpace(v) {
		return fmt.Errorf("want a number of rollouts")
	}
	switch {
	case n < 0:
		return fmt.Errorf("must not be negative")
	case n == 0:
		*s.p = orchestrator.StateCacheNone
	default:
		*s.p = n
	}
	return nil
}

// nonNegativeFloat is a float flag, set to def, whose value is refused
// when negative.
func nonNegativeFloat(p *float64, def float64) pflag.Value {
	*p = def
	return (*nonNegFloat)(p)
}

type nonNegFloat float64

func (f *nonNegFloat) String() string { return strconv.FormatFloat(float64(*f), 'g', -1, 64) }
func (f *nonNegFloat) Type() string   { return "float" }
func (f *nonNegFloat) Set(v string) error {
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		return errors.New("want a number")
	}
	if n < 0 {
		return errors.New("must not be negative")
	}
	*f = nonNegFloat(n)
	return nil
}

// closing is a service that releases what it was built with (the metric
// plugins' processes) once it has stopped.
type closing struct {
	daemon.Service
	close func() error
}

// Run runs the service, then closes.
func (c closing) Run(ctx context.Context) error {
	err := c.Service.Run(ctx)
	return errors.Join(err, c.close())
}
