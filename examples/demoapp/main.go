// Command demoapp is the small HTTP service the Sluice demo rolls out. Its
// version, error rate and latency are flags (or environment variables), so
// one binary plays a good and a bad release.
//
//	demoapp --version v2 --error-rate 0.5 --latency 20ms
//
// It listens on $PORT (the local platform sets it), answers / with its
// version, /healthz for readiness, and /metrics for Prometheus.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// config is the app's behaviour.
type config struct {
	Addr      string
	Version   string
	ErrorRate float64
	Latency   time.Duration
}

func (c config) validate() error {
	if c.ErrorRate < 0 || c.ErrorRate > 1 {
		return fmt.Errorf("--error-rate %v must be between 0 and 1", c.ErrorRate)
	}
	if c.Latency < 0 {
		return fmt.Errorf("--latency %s must not be negative", c.Latency)
	}
	return nil
}

func main() {
	cfg, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg); err != nil {
		log.Fatal(err)
	}
}

func parse(args []string) (config, error) {
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	port := envOr("PORT", "8080")
	var cfg config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:"+port, "listen address (default from $PORT)")
	fs.StringVar(&cfg.Version, "version", envOr("VERSION", "v1"), "version to report (env VERSION)")
	rate, _ := strconv.ParseFloat(envOr("ERROR_RATE", "0"), 64)
	fs.Float64Var(&cfg.ErrorRate, "error-rate", rate, "share of requests answered 500, 0..1 (env ERROR_RATE)")
	lat, _ := time.ParseDuration(envOr("LATENCY", "0s"))
	fs.DurationVar(&cfg.Latency, "latency", lat, "added latency per request (env LATENCY)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// handler serves the app on its own registry.
func handler(cfg config, reg *prometheus.Registry) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "demoapp_requests_total", Help: "Requests served, by status code.",
		ConstLabels: prometheus.Labels{"version": cfg.Version},
	}, []string{"code"})
	reg.MustRegister(requests)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Latency > 0 {
			time.Sleep(cfg.Latency)
		}
		code := http.StatusOK
		if cfg.ErrorRate > 0 && rand.Float64() < cfg.ErrorRate {
			code = http.StatusInternalServerError
		}
		requests.WithLabelValues(strconv.Itoa(code)).Inc()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Version", cfg.Version)
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"version": cfg.Version, "ok": code == http.StatusOK})
	})
	return mux
}

func serve(ctx context.Context, cfg config) error {
	srv := &http.Server{Addr: cfg.Addr, Handler: handler(cfg, prometheus.NewRegistry()), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("demoapp %s listening on %s (error rate %.2f, latency %s)", cfg.Version, cfg.Addr, cfg.ErrorRate, cfg.Latency)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
