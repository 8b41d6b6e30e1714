// Package daemon is the service runtime every Sluice process shares, the
// service binaries and sluice dev alike: the NATS and bus flags, structured
// logs carrying trace ids, the /metrics, /healthz and /readyz endpoints on
// --http-listen (the sluice_* metrics of package telemetry among them), OTLP
// trace export configured by the OTEL_* environment (Process), a clean
// shutdown on SIGINT or SIGTERM, and each service's provisioning,
// readiness and stop within --stop-timeout (Lifecycle). Package
// internal/assembly composes the services on it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/buildinfo"
	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
)

// Service is one Sluice service: Run blocks until ctx ends; Ready reports
// whether it is connected with its consumers in place. Services run their
// start, readiness and stop through a Lifecycle.
type Service interface {
	Run(ctx context.Context) error
	Ready() bool
}

// Env is what a service is built from.
type Env struct {
	Client *events.Client
	Bus    events.BusConfig
	Log    *slog.Logger
	// Metrics records the sluice_* metrics; Registerer takes a service's
	// own (a proxy's). Both serve on the process's /metrics.
	Metrics    *telemetry.Metrics
	Registerer prometheus.Registerer
	// StopTimeout is --stop-timeout: how long a stopping service waits for
	// its work in progress.
	StopTimeout time.Duration
	// waiting tells the process's /readyz what it waits for.
	waiting func(string)
}

// BusClock returns a clock of the bus's time (read from the leader of the
// results stream), for a service whose records hold deadlines that other
// replicas compare (see package clock), configured by cfg with its Server
// and Logger defaulting to the process's. Until it is synced the
// process's /readyz says why not ("sync the clock to the bus: ..."), and
// its estimate is the process's sluice_clock_* gauges labelled service.
func (e Env) BusClock(service string, cfg clock.BusConfig) *clock.Bus {
	if cfg.Server == nil {
		cfg.Server = clock.StreamTime(e.Client.JetStream(), events.StreamResults)
	}
	if cfg.Logger == nil {
		cfg.Logger = e.Log
	}
	if e.waiting != nil {
		cfg.Waiting = func(err error) { e.waiting("sync the clock to the bus: " + err.Error()) }
	}
	cfg.Observe = func(offset, uncertainty time.Duration) { e.Metrics.Clock(service, offset, uncertainty) }
	cfg.Defaults()
	e.Metrics.ClockBound(service, cfg.MaxUncertainty)
	return clock.NewBus(cfg)
}

// Spec describes a service binary.
type Spec struct {
	// Name is the binary's name, e.g. "sluice-orchestrator".
	Name string
	// Flags registers the service's own flags.
	Flags func(fs *pflag.FlagSet)
	// Build makes the service once flags are parsed and NATS is connected.
	Build func(env Env) (Service, error)
	// Stdout is where --version prints; nil means os.Stdout. (--help
	// prints to stderr, as pflag does.)
	Stdout io.Writer
}

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Flags are the flags every Sluice process shares, service binaries and
// sluice dev alike (the NATS connection flags aside: sluice dev runs its
// own server).
type Flags struct {
	HTTPListen  string
	LogFormat   string
	LogLevel    string
	StopTimeout time.Duration
	Bus         events.BusConfig
}

// AddFlags registers f on fs with httpListen as --http-listen's default.
// With getenv, the defaults come from the environment (HTTP_LISTEN,
// LOG_FORMAT, LOG_LEVEL) as the help says; sluice dev passes nil.
func (f *Flags) AddFlags(fs *pflag.FlagSet, httpListen string, getenv func(string) string) {
	env := func(name, def string) (string, string) {
		if getenv == nil {
			return def, ""
		}
		if v := getenv(name); v != "" {
			return v, " (env " + name + ")"
		}
		return def, " (env " + name + ")"
	}
	def, note := env("HTTP_LISTEN", httpListen)
	fs.StringVar(&f.HTTPListen, "http-listen", def, "address for /metrics, /healthz and /readyz"+note)
	def, note = env("LOG_FORMAT", "text")
	fs.StringVar(&f.LogFormat, "log-format", def, "log format: text or json"+note)
	def, note = env("LOG_LEVEL", "info")
	fs.StringVar(&f.LogLevel, "log-level", def, "log level: debug, info, warn or error"+note)
	fs.Var(NonNegativeDuration(&f.StopTimeout, DefaultStopTimeout), "stop-timeout", "how long a stopping service waits for the work in progress (tasks, decisions, measurements, a proxy's requests)")
	f.Bus.AddFlags(fs)
}

// Logger returns the logger the flags ask for; its error names the flag.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) {
	return NewLogger(w, f.LogFormat, f.LogLevel)
}

// FlagSet returns the binary's flags: the NATS connection, the flags every
// Sluice process shares, and the service's own.
func (s Spec) FlagSet() *pflag.FlagSet {
	fs, _, _ := s.flagSet()
	return fs
}

func (s Spec) flagSet() (*pflag.FlagSet, *events.ConnConfig, *Flags) {
	fs := pflag.NewFlagSet(s.Name, pflag.ContinueOnError)
	var conn events.ConnConfig
	var flags Flags
	conn.AddFlags(fs)
	flags.AddFlags(fs, ":8080", os.Getenv)
	if s.Flags != nil {
		s.Flags(fs)
	}
	fs.Bool("version", false, "print the version and exit")
	return fs, &conn, &flags
}

// usage is a binary's --help: what it is called with, where its flags are
// explained, and the flags.
func (s Spec) usage(w io.Writer, fs *pflag.FlagSet) func() {
	return func() {
		fmt.Fprintf(w, "Usage: %s [flags]\n\n", s.Name)
		fmt.Fprintf(w, "%s is a Sluice service (version %s). Every flag and environment\n", s.Name, buildinfo.Version())
		fmt.Fprintf(w, "variable is explained in docs/configuration.md.\n\nFlags:\n%s", fs.FlagUsages())
	}
}

// Main runs the service binary described by s with args (without the
// program name) until SIGINT or SIGTERM and returns its exit code.
func Main(s Spec, args []string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, s, args, stderr)
}

// Run is Main until ctx ends instead of a signal.
func Run(ctx context.Context, s Spec, args []string, stderr io.Writer) int {
	fs, conn, flags := s.flagSet()
	stdout := s.Stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	fs.SetOutput(stderr)
	fs.Usage = s.usage(stderr, fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "%s: %v (see --help)\n", s.Name, err)
		return ExitUsage
	}
	if v, _ := fs.GetBool("version"); v {
		fmt.Fprintln(stdout, s.Name, buildinfo.Version())
		return ExitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", s.Name, fs.Args())
		return ExitUsage
	}
	log, err := flags.Logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return ExitUsage
	}
	log = log.With("service", s.Name)
	switch skew, err := clock.TestSkew(); {
	case err != nil && clock.TestBuild:
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return ExitUsage
	case err != nil:
		log.Warn("clock skew ignored", "error", err)
	case skew != 0:
		log.Warn("the local clock is skewed for a test", "skew", skew.String(), "env", clock.EnvTestSkew)
	}
	conn.Name = s.Name
	if err := run(ctx, s, *conn, *flags, log); err != nil {
		log.Error("exiting", "error", err)
		return ExitFail
	}
	return ExitOK
}

func run(ctx context.Context, s Spec, conn events.ConnConfig, flags Flags, log *slog.Logger) error {
	bus := flags.Bus
	bus.Defaults()
	if err := bus.Validate(); err != nil {
		return err
	}
	p, err := Start(ctx, ProcessConfig{Name: s.Name, HTTPListen: flags.HTTPListen, Log: log})
	if err != nil {
		return err
	}
	defer p.Close()
	p.setWaiting("connecting to NATS at " + conn.Address())
	client, err := events.Connect(ctx, conn, events.WithLogger(log), events.WithObserver(p.Metrics(), 0), events.WithAckWait(bus.AckWait),
		events.WithWaitReport(p.WaitReport(conn.Address())))
	if err != nil {
		return err
	}
	defer client.Close()
	env := p.Env(client, bus, log, flags.StopTimeout)
	go p.watchBus(ctx, client.CheckJetStream)
	return runService(ctx, p, s.Name, func() (Service, error) { return s.Build(env) }, client)
}

// runService builds a service with build and runs it in p until ctx ends.
// A service whose run fails because the bus did not answer
// (events.Unavailable: a JetStream cluster still electing its leaders,
// a request that timed out while every service provisioned at once) is
// not the end of the process: it has stopped what it started, so it is
// built and run again after a backoff (events.DefaultBackoff), as a
// supervisor would restart the process, while /readyz says what it waits
// for and the log says why. Any other error ends it: a configuration
// error (see events.Unavailable), or permissions the server refuses
// (client.DeniedJetStream, asked after an Unavailable error since a
// refused request times out).
func runService(ctx context.Context, p *Process, name string, build func() (Service, error), client *events.Client) error {
	attempt := func(ctx context.Context) error {
		svc, err := build()
		if err != nil {
			return err
		}
		err = p.Run(ctx, nil, Named{Name: name, Service: svc})
		if events.Unavailable(err) {
			if denied := client.DeniedJetStream(); denied != nil {
				return denied
			}
		}
		return err
	}
	return p.WaitForBus(ctx, attempt)
}

// WaitForBus calls op until it returns nil or an error other than the bus
// not answering (events.Unavailable), with events.DefaultBackoff between
// attempts and no limit but ctx, while /readyz says what the process waits
// for and the log says why (msg="waiting for the bus"). It is how a
// process waits for a bus that is not ready instead of exiting: a service
// binary's start (runService) and sluice dev's provisioning and services
// alike.
func (p *Process) WaitForBus(ctx context.Context, op func(context.Context) error) error {
	return events.Retry(ctx, events.DefaultBackoff, op, func(w events.Wait) {
		p.cfg.Log.Warn("waiting for the bus", "attempt", w.Attempt, "error", w.Err, "retry_in", w.Next.Round(time.Millisecond))
		p.setWaiting("waiting for the bus: " + w.String())
	})
}

// busCheckEvery is how often a service binary asks whether its bus's
// JetStream answers (watchBus).
const busCheckEvery = 2 * time.Second

// watchBus asks check (events.Client.CheckJetStream) every busCheckEvery,
// until ctx ends, whether JetStream answers: while it does not, the
// process is not ready and /readyz says why. A JetStream cluster that has
// lost its quorum answers nothing and stores nothing; the services keep
// running and wait for it, and this is how an operator sees that they do.
func (p *Process) watchBus(ctx context.Context, check func(context.Context) error) {
	tick := time.NewTicker(busCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*busCheckEvery)
		err := check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		down := ""
		if err != nil {
			down = err.Error()
		}
		p.mu.Lock()
		p.busDown = down
		p.mu.Unlock()
	}
}

// WaitReport is the events.WithWaitReport of a connection to the NATS
// servers at addr: /readyz says that the process waits for them, and why.
func (p *Process) WaitReport(addr string) func(events.Wait) {
	return func(w events.Wait) { p.setWaiting("waiting for NATS at " + addr + ": " + w.String()) }
}

// ProcessConfig configures a Process.
type ProcessConfig struct {
	// Name is the process's name in traces ("sluice-orchestrator").
	Name string
	// HTTPListen is where /metrics, /healthz and /readyz are served.
	HTTPListen string
	// Log receives the process's logs.
	Log *slog.Logger
	// Registry serves /metrics and takes the services' metrics (default:
	// prometheus' default registry, with telemetry.Default()).
	Registry *prometheus.Registry
}

// Named is a service with its name, for logs and errors.
type Named struct {
	Name    string
	Service Service
}

// Process is what every Sluice process runs its services in: trace export
// configured by the OTEL_* environment, the /metrics, /healthz and /readyz
// endpoints, and a run of its services that ends them all when one fails.
type Process struct {
	cfg     ProcessConfig
	metrics *telemetry.Metrics
	reg     prometheus.Registerer
	srv     *http.Server
	addr    net.Addr
	tracing func(context.Context) error
	mu      sync.Mutex
	// runs holds the services of each Run in progress, by its number.
	runs    map[int][]Named
	lastRun int
	// waiting says what the process waits for while it is not ready, for
	// /readyz; empty once its services are ready.
	waiting string
	// busDown is why the bus's JetStream did not answer the last check
	// (watchBus); empty while it answers.
	busDown string
}

// Start starts tracing and the HTTP endpoints; /readyz reports ready once
// every service given to Run is. Close ends both.
func Start(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	p := &Process{cfg: cfg, runs: map[int][]Named{}}
	var gatherer prometheus.Gatherer = prometheus.DefaultGatherer
	if cfg.Registry != nil {
		m, err := telemetry.New(cfg.Registry)
		if err != nil {
			return nil, err
		}
		p.metrics, p.reg, gatherer = m, cfg.Registry, cfg.Registry
	} else {
		p.metrics, p.reg = telemetry.Default(), prometheus.DefaultRegisterer
	}
	shutdown, err := telemetry.SetupTracing(ctx, cfg.Name, os.Getenv)
	if err != nil {
		return nil, err
	}
	p.tracing = shutdown
	if err := p.serveHTTP(gatherer); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Env returns the environment to build a service from.
func (p *Process) Env(client *events.Client, bus events.BusConfig, log *slog.Logger, stopTimeout time.Duration) Env {
	return Env{Client: client, Bus: bus, Log: log, Metrics: p.metrics, Registerer: p.reg, StopTimeout: stopTimeout, waiting: p.setWaiting}
}

// Metrics returns the metrics the process serves.
func (p *Process) Metrics() *telemetry.Metrics { return p.metrics }

// Addr is the address of the HTTP endpoints.
func (p *Process) Addr() string { return p.addr.String() }

// Ready reports whether there are services, every one is ready, and the
// bus answered its last check (a service binary's, watchBus).
func (p *Process) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busDown != "" {
		return false
	}
	n := 0
	for _, services := range p.runs {
		for _, s := range services {
			if !s.Service.Ready() {
				return false
			}
			n++
		}
	}
	return n > 0
}

// setWaiting records what the process waits for, for /readyz.
func (p *Process) setWaiting(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waiting = what
}

// notReady is /readyz's reason while the process is not ready.
func (p *Process) notReady() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busDown != "" {
		return "waiting for the bus: " + p.busDown
	}
	if p.waiting != "" {
		return p.waiting
	}
	return "starting: provisioning streams and buckets, starting consumers"
}

// Run runs services until ctx ends or one of them fails, which stops the
// others; it returns once all have returned, with their errors, and they
// no longer count for Ready. onReady, when not nil, is called once every
// service is ready.
func (p *Process) Run(ctx context.Context, onReady func(), services ...Named) error {
	p.mu.Lock()
	p.lastRun++
	run := p.lastRun
	p.runs[run] = services
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.runs, run)
		p.waiting = "stopping"
	}()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, s := range services {
		wg.Go(func() {
			if err := s.Service.Run(ctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.Name, err)
				stop()
			}
		})
	}
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for !p.Ready() {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		p.setWaiting("")
		if onReady != nil {
			onReady()
		}
	})
	wg.Wait()
	if len(services) == 1 {
		// A lone service's error needs no name: the process has it.
		if err := errs[0]; err != nil {
			return errors.Unwrap(err)
		}
	}
	return errors.Join(errs...)
}

// Close stops the HTTP endpoints and exports the spans still buffered.
func (p *Process) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p.srv != nil {
		_ = p.srv.Shutdown(ctx)
	}
	if p.tracing != nil {
		if err := p.tracing(ctx); err != nil {
			p.cfg.Log.Warn("spans not exported before exit", "error", err)
		}
	}
}

// serveHTTP serves the operational endpoints.
func (p *Process) serveHTTP(metrics prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "not ready: "+p.notReady(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	l, err := net.Listen("tcp", p.cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("--http-listen %s: %w", p.cfg.HTTPListen, err)
	}
	p.addr = l.Addr()
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := p.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.cfg.Log.Error("http server stopped", "error", err)
		}
	}()
	p.cfg.Log.Info("serving /metrics, /healthz and /readyz", "addr", l.Addr().String())
	return nil
}

// NewLogger returns a text or JSON logger at level. Records logged with a
// context that carries a span get its trace_id and span_id.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// NonNegativeDuration is a duration flag whose value is refused when
// negative, so that a bad value is a usage error naming the flag, not a
// default put silently in its place.
func NonNegativeDuration(p *time.Duration, def time.Duration) pflag.Value {
	*p = def
	return (*nonNegativeDuration)(p)
}

type nonNegativeDuration time.Duration

func (d *nonNegativeDuration) String() string { return time.Duration(*d).String() }
func (d *nonNegativeDuration) Type() string   { return "duration" }
func (d *nonNegativeDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return errors.New("must not be negative")
	}
	*d = nonNegativeDuration(v)
	return nil
}

// PositiveDuration is a duration flag whose value is refused unless it is
// above zero: a bound that nothing could meet.
func PositiveDuration(p *time.Duration, def time.Duration) pflag.Value {
	*p = def
	return (*positiveDuration)(p)
}

type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }
func (d *positiveDuration) Type() string   { return "duration" }
func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return errors.New("must be positive")
	}
	*d = positiveDuration(v)
	return nil
}

// NonNegativeInt is an int flag whose value is refused when negative.
func NonNegativeInt(p *int, def int) pflag.Value {
	*p = def
	return (*nonNegativeInt)(p)
}

type nonNegativeInt int

func (n *nonNegativeInt) String() string { return strconv.Itoa(int(*n)) }
func (n *nonNegativeInt) Type() string   { return "int" }
func (n *nonNegativeInt) Set(s string) error {
	v, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return errors.New("must not be negative")
	}
	*n = nonNegativeInt(v)
	return nil
}
