// Package daemon is what every Sluice service binary shares: the NATS and bus
// flags, structured logs carrying trace ids, the /metrics, /healthz and
// /readyz endpoints on --http-listen (the sluice_* metrics of package
// telemetry among them), OTLP trace export configured by the OTEL_*
// environment, and a clean shutdown on SIGINT or SIGTERM.
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
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
)

// Service is one Sluice service: Run blocks until ctx ends; Ready reports
// whether it is connected with its consumers in place.
type Service interface {
	Run(ctx context.Context) error
	Ready() bool
}

// Env is what a service is built from.
type Env struct {
	Client *events.Client
	Bus    events.BusConfig
	Log    *slog.Logger
}

// Spec describes a service binary.
type Spec struct {
	// Name is the binary's name, e.g. "sluice-orchestrator".
	Name string
	// Flags registers the service's own flags.
	Flags func(fs *pflag.FlagSet)
	// Build makes the service once flags are parsed and NATS is connected.
	Build func(env Env) (Service, error)
}

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Main runs the service binary described by s with args (without the
// program name) until SIGINT or SIGTERM and returns its exit code.
func Main(s Spec, args []string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, s, args, stderr)
}

// Run is Main until ctx ends instead of a signal.
func Run(ctx context.Context, s Spec, args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet(s.Name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn events.ConnConfig
	var bus events.BusConfig
	conn.AddFlags(fs)
	bus.AddFlags(fs)
	httpListen := fs.String("http-listen", envOr("HTTP_LISTEN", ":8080"), "address for /metrics, /healthz and /readyz (env HTTP_LISTEN)")
	logFormat := fs.String("log-format", envOr("LOG_FORMAT", "text"), "log format: text or json (env LOG_FORMAT)")
	logLevel := fs.String("log-level", envOr("LOG_LEVEL", "info"), "log level: debug, info, warn or error (env LOG_LEVEL)")
	if s.Flags != nil {
		s.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "%s: %v (see --help)\n", s.Name, err)
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", s.Name, fs.Args())
		return ExitUsage
	}
	log, err := NewLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return ExitUsage
	}
	log = log.With("service", s.Name)
	conn.Name = s.Name
	if err := run(ctx, s, conn, bus, *httpListen, log); err != nil {
		log.Error("exiting", "error", err)
		return ExitFail
	}
	return ExitOK
}

func run(ctx context.Context, s Spec, conn events.ConnConfig, bus events.BusConfig, httpListen string, log *slog.Logger) error {
	bus.Defaults()
	if err := bus.Validate(); err != nil {
		return err
	}
	var svc Service
	readyFn := func() bool { return svc != nil && svc.Ready() }
	srv, err := serveHTTP(httpListen, readyFn, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	shutdownTracing, err := telemetry.SetupTracing(ctx, s.Name, os.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("spans not exported before exit", "error", err)
		}
	}()

	client, err := events.Connect(ctx, conn, events.WithLogger(log), events.WithObserver(telemetry.Default(), 0), events.WithAckWait(bus.AckWait))
	if err != nil {
		return err
	}
	defer client.Close()
	svc, err = s.Build(Env{Client: client, Bus: bus, Log: log})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

// serveHTTP serves the operational endpoints on addr.
func serveHTTP(addr string, ready func() bool, log *slog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: connecting to JetStream or starting consumers", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", "addr", l.Addr().String())
	return srv, nil
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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
