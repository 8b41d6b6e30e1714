package analyzer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/internal/worker"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/cloudwatch"
	"github.com/sluicehq/sluice/services/analyzer/metrics/datadog"
	"github.com/sluicehq/sluice/services/analyzer/metrics/graphite"
	"github.com/sluicehq/sluice/services/analyzer/metrics/influxdb"
	"github.com/sluicehq/sluice/services/analyzer/metrics/job"
	"github.com/sluicehq/sluice/services/analyzer/metrics/judge"
	"github.com/sluicehq/sluice/services/analyzer/metrics/newrelic"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
	"github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
	"github.com/sluicehq/sluice/services/analyzer/metrics/web"
)

// Source is the CloudEvents source of everything the analyzer publishes.
const Source = "/sluice/analyzer"

// DurableTemplates is the consumer of applied templates on the commands
// stream, shared by all analyzer replicas.
const DurableTemplates = "analyzer-templates"

// Defaults of Config.
const (
	DefaultLeaseMargin       = 10 * time.Second
	DefaultRetention         = 24 * time.Hour
	DefaultMaxConcurrentRuns = 64
)

// Config configures the analyzer service. The zero value plus Defaults is a
// working configuration.
type Config struct {
	// Bus is the stream and bucket configuration to provision.
	Bus events.BusConfig
	// Templates tunes the consumer of applied templates; Stream, Durable
	// and FilterSubjects are set by the service.
	Templates events.ConsumerConfig
	// Tasks tunes the consumer of analysis tasks (worker-analyzer); Stream,
	// Durable and FilterSubjects are set by the worker.
	Tasks events.ConsumerConfig
	// Providers measure the metrics. Nil means DefaultProviders with the
	// Prometheus settings of the environment (prometheus.ConfigFromEnv
	// through Getenv).
	Providers *metrics.Registry
	// ID names this replica in leases and reports (default
	// hostname:pid:random, unique per Service).
	ID string
	// StartedAfter is how long a task runs before it is reported started
	// (default worker.DefaultStartedAfter; negative: at once). See
	// worker.Config.
	StartedAfter time.Duration
	// LeaseMargin is added to the provider timeout of the metrics a replica
	// claims to form its lease: how long a dead replica's claim holds up a
	// measurement, and how long a replica that wrote results has to publish
	// them before another does (default 10s).
	LeaseMargin time.Duration
	// Retention keeps a finished run's record, for debugging and to
	// recognise late redeliveries of its task (default 24h).
	Retention time.Duration
	// MaxConcurrentRuns bounds the runs this replica measures at once
	// (default 64); others wait for a slot.
	MaxConcurrentRuns int
	// Getenv reads the default Prometheus settings and, when Secrets is
	// nil, the values of secret arguments (default os.Getenv).
	Getenv func(string) string
	// Secrets reads the values of secret arguments: KubeSecrets on the
	// kube platform (the Secret in the rollout's namespace). Default
	// EnvSecrets{Getenv} (SecretEnv variables), the local platform's.
	Secrets Secrets
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics records measurements, verdicts and task outcomes (default
	// telemetry.Default()).
	Metrics *telemetry.Metrics
	// Now is the clock of runs and leases (default Clock's Now, or
	// time.Now without a Clock); tests replace it.
	Now func() time.Time
	// Clock is the bus's time (package clock), which the service binary
	// sets: a run's measurement times and a lease's expiry are compared
	// by every replica, so they must all tell the same time whatever
	// their hosts' clocks say. Run syncs it before measuring.
	Clock *clock.Bus
	// StopTimeout bounds how long a stopping replica waits for its
	// consumers to finish the work in progress (default
	// daemon.DefaultStopTimeout).
	StopTimeout time.Duration
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Bus.Defaults()
	if c.LeaseMargin == 0 {
		c.LeaseMargin = DefaultLeaseMargin
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxConcurrentRuns == 0 {
		c.MaxConcurrentRuns = DefaultMaxConcurrentRuns
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.Secrets == nil {
		c.Secrets = EnvSecrets{Getenv: c.Getenv}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
		if c.Clock != nil {
			c.Now = c.Clock.Now
		}
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Default()
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = daemon.DefaultStopTimeout
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), uuid.NewString()[:8])
	}
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: analyzer: %s", events.ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if err := c.Bus.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.LeaseMargin <= 0 {
		bad("LeaseMargin %s must be positive", c.LeaseMargin)
	}
	if c.Retention <= 0 {
		bad("Retention %s must be positive", c.Retention)
	}
	if c.MaxConcurrentRuns < 1 {
		bad("MaxConcurrentRuns %d must be at least 1", c.MaxConcurrentRuns)
	}
	if c.StopTimeout < 0 {
		bad("StopTimeout %s must not be negative", c.StopTimeout)
	}
	return errors.Join(errs...)
}

// ProviderConfig configures the metric providers DefaultProviders builds.
// The zero value is a working configuration: the analyzer's environment
// supplies what each provider needs (docs/providers).
type ProviderConfig struct {
	// Prometheus is the analyzer's own Prometheus address and credentials.
	Prometheus prometheus.Config
	Web        web.Config
	Datadog    datadog.Config
	NewRelic   newrelic.Config
	CloudWatch cloudwatch.Config
	Graphite   graphite.Config
	Influxdb   influxdb.Config
	Job        job.Config
	Plugin     plugin.Config
}

// DefaultProviders registers the providers Sluice implements, each with its
// part of cfg. It returns an error wrapping events.ErrInvalidConfig for
// invalid settings.
func DefaultProviders(cfg ProviderConfig) (*metrics.Registry, error) {
	var ps []metrics.Provider
	var errs []error
	collect := func(name string, p metrics.Provider, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s provider: %v", events.ErrInvalidConfig, name, err))
			return
		}
		ps = append(ps, p)
	}
	p, err := prometheus.New(cfg.Prometheus)
	collect("prometheus", p, err)
	wp, err := web.New(cfg.Web)
	collect("web", wp, err)
	dd, err := datadog.New(cfg.Datadog)
	collect("datadog", dd, err)
	nr, err := newrelic.New(cfg.NewRelic)
	collect("newRelic", nr, err)
	cw, err := cloudwatch.New(cfg.CloudWatch)
	collect("cloudWatch", cw, err)
	gr, err := graphite.New(cfg.Graphite)
	collect("graphite", gr, err)
	ix, err := influxdb.New(cfg.Influxdb)
	collect("influxdb", ix, err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The judge measures with the providers that return numbers: those
	// registered so far.
	numeric, err := metrics.NewRegistry(ps...)
	if err != nil {
		return nil, err
	}
	jd, err := judge.New(judge.Config{Providers: numeric, Now: cfg.Prometheus.Now})
	if err != nil {
		return nil, err
	}
	jb, err := job.New(cfg.Job)
	collect("job", jb, err)
	pc := cfg.Plugin
	pc.Builtin = append(slices.Clip(pc.Builtin), jd)
	pl, err := plugin.New(pc)
	collect("plugin", pl, err)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return metrics.NewRegistry(ps...)
}

// Service is one analyzer replica.
type Service struct {
	client *events.Client
	cfg    Config
	log    *slog.Logger

	templates templateStore
	runs      runStore
	worker    *worker.Worker
	lc        daemon.Lifecycle
}

var _ daemon.Service = (*Service)(nil)

// New checks cfg and returns a service that uses client. Call Run to start
// it.
func New(client *events.Client, cfg Config) (*Service, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Providers == nil {
		reg, err := DefaultProviders(ProviderConfig{Prometheus: prometheus.ConfigFromEnv(cfg.Getenv)})
		if err != nil {
			return nil, err
		}
		cfg.Providers = reg
	}
	s := &Service{client: client, cfg: cfg, log: cfg.Logger.With("replica", cfg.ID)}
	w, err := worker.New(client, worker.Config{
		Service: tasks.ServiceAnalyzer,
		Source:  Source,
		Executors: map[string]worker.Executor{
			tasks.KindAnalysisRun:       s.startRun,
			tasks.KindAnalysisTerminate: s.terminateRun,
		},
		Consumer:     cfg.Tasks,
		StartedAfter: cfg.StartedAfter,
		ID:           cfg.ID,
		Logger:       cfg.Logger,
		Metrics:      cfg.Metrics,
	})
	if err != nil {
		return nil, err
	}
	s.worker = w
	return s, nil
}

// Needs is what the analyzer uses on the bus.
var Needs = events.Needs{
	Consumers: []events.Durable{{Stream: events.StreamCommands, Name: DurableTemplates}},
	Buckets: []events.Bucket{
		{Name: BucketTemplates, Description: "Sluice analysis templates applied on the bus", History: 1},
		{Name: BucketRuns, Description: "Sluice analysis runs, one entry per run", History: 1},
	},
}.Merge(worker.Needs(tasks.ServiceAnalyzer))

// Ready reports whether the service has its buckets, its view of the runs
// and its consumers in place.
func (s *Service) Ready() bool { return s.lc.Ready() }

// Run provisions the bus and the two buckets, starts following the runs
// bucket and consuming templates and tasks, and blocks until ctx ends. Then
// it stops consuming, gives up the measurements in progress (their leases
// are released so another replica takes them at once), and returns nil.
func (s *Service) Run(ctx context.Context) error {
	return s.lc.Run(ctx, daemon.Plan{
		Name: "analyzer", Client: s.client, Bus: s.cfg.Bus, Needs: Needs,
		StopTimeout: s.cfg.StopTimeout, Log: s.log, Start: s.start, Clock: s.cfg.Clock,
	})
}

// start follows the runs bucket and starts the consumers of templates and
// tasks.
func (s *Service) start(ctx context.Context, r *daemon.Running) error {
	rkv := r.Bucket(BucketRuns)
	s.templates = newTemplateStore(r.Bucket(BucketTemplates), s.client.Conn())
	s.runs = newRunStore(rkv, s.cfg.LeaseMargin, s.cfg.Retention, s.client.Conn())

	sched := newScheduler(s.log, s.cfg.Now, s.cfg.MaxConcurrentRuns, s.process)
	if err := sched.Watch(ctx, rkv); err != nil {
		return err
	}
	r.OnStop(daemon.StopFunc(func(context.Context) error { sched.Stop(); return nil }))

	cc := s.cfg.Templates
	cc.Stream, cc.Durable = events.StreamCommands, DurableTemplates
	cc.FilterSubjects = []string{events.CommandRoot + ".>"}
	if err := r.Consume(ctx, cc, s.handleCommand); err != nil {
		return err
	}
	if err := s.worker.Start(ctx); err != nil {
		return err
	}
	r.OnStop(s.worker)
	return nil
}
