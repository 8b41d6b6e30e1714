// Package promserver is the Prometheus that `sluice dev` embeds: the real
// Prometheus engine (packages promql, tsdb and scrape of
// github.com/prometheus/prometheus) scraping the targets it is given and
// answering the query endpoints of Prometheus' HTTP API, so that the
// analyzer's Prometheus provider, promtool-style scripts and Grafana work
// against it unchanged.
//
// What it serves (Prometheus' parameters, status codes and JSON):
//
//	GET, POST /api/v1/query             query, time, timeout, limit, lookback_delta
//	GET, POST /api/v1/query_range       query, start, end, step, timeout, limit, lookback_delta
//	GET, POST /api/v1/labels            match[], start, end, limit
//	GET       /api/v1/label/NAME/values match[], start, end, limit
//	GET, POST /api/v1/series            match[], start, end, limit
//	GET       /-/ready, /-/healthy
//	GET       /metrics                  the embedded Prometheus' own metrics
//
// Samples live in a tsdb under Config.DataDir (head, write-ahead log and
// 2h blocks, as in Prometheus), so a Server started again on the same
// directory answers for what the previous one scraped. Scraping is
// Prometheus' scrape manager with one scrape pool (job DefaultJob unless
// a target's labels name another) whose targets are re-read from
// Config.Targets every scrape interval.
//
// Deliberately left out: the rest of web/api/v1 (which would bring in the
// Alertmanager client, OpenAPI and OpenTelemetry collector modules), rules
// and alerts, remote read and write, exemplars, query stats, and the UI.
package promserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/tsdb"
)

// Query engine limits: Prometheus' defaults.
const (
	queryTimeout    = 2 * time.Minute
	queryMaxSamples = 50_000_000
	lookbackDelta   = 5 * time.Minute
)

// shutdownGrace is how long Close lets running API requests finish.
const shutdownGrace = 5 * time.Second

// Server is a running embedded Prometheus. Its methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	db      *tsdb.DB
	engine  *promql.Engine
	scraper *scrape.Manager
	http    *http.Server
	addr    string

	stopFeed context.CancelFunc
	wg       sync.WaitGroup // the feeder, the scrape manager and the HTTP server
	closing  chan struct{}
	once     sync.Once
	err      error
}

// Start opens (or creates) the tsdb in cfg.DataDir, starts scraping
// cfg.Targets and serves the HTTP API on cfg.Listen. The Server runs until
// Close or until ctx ends, whichever comes first; Close must still be
// called to learn whether the tsdb closed cleanly. Start returns an error
// wrapping ErrInvalidConfig for a bad cfg.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("component", "prometheus")
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("prometheus data directory: %w", err)
	}

	// A registry per Server: several may run in one process (tests), and
	// /metrics shows this one's tsdb, engine and scrape metrics.
	reg := prometheus.NewRegistry()
	opts := tsdb.DefaultOptions()
	opts.RetentionDuration = cfg.Retention.Milliseconds()
	db, err := tsdb.Open(cfg.DataDir, logger.With("subsystem", "tsdb"), reg, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("open prometheus tsdb in %s: %w", cfg.DataDir, err)
	}
	s := &Server{cfg: cfg, db: db, closing: make(chan struct{})}
	// From here on, a failure must undo what is started: s.shutdown does
	// for whatever is set.
	fail := func(err error) (*Server, error) {
		_ = s.shutdown()
		return nil, err
	}

	promParser := parser.NewParser(parser.Options{})
	interval := cfg.ScrapeInterval.Milliseconds()
	s.engine = promql.NewEngine(promql.EngineOpts{
		Logger:        logger.With("subsystem", "query"),
		Reg:           reg,
		MaxSamples:    queryMaxSamples,
		Timeout:       queryTimeout,
		LookbackDelta: lookbackDelta,
		// A subquery without a step ([5m:]) steps by the scrape interval;
		// Prometheus uses its rule evaluation interval, which dev lacks.
		NoStepSubqueryIntervalFn: func(int64) int64 { return interval },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   promParser,
	})

	scrapeCfg, err := config.Load(scrapeConfig(cfg.ScrapeInterval), logger)
	if err != nil {
		return fail(fmt.Errorf("prometheus scrape configuration: %w", err))
	}
	s.scraper, err = scrape.NewManager(&scrape.Options{
		// Target changes apply within an interval, starting with the first.
		DiscoveryReloadInterval:  model.Duration(cfg.ScrapeInterval),
		DiscoveryReloadOnStartup: true,
	}, logger.With("subsystem", "scrape"), nil, nil, db, reg)
	if err != nil {
		return fail(fmt.Errorf("prometheus scrape manager: %w", err))
	}
	if err := s.scraper.ApplyConfig(scrapeCfg); err != nil {
		return fail(fmt.Errorf("prometheus scrape configuration: %w", err))
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(fmt.Errorf("prometheus listen: %w", err))
	}
	s.addr = ln.Addr().String()
	mux := http.NewServeMux()
	(&api{engine: s.engine, queryable: db, parser: promParser, logger: logger, now: time.Now}).register(mux)
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprint(w, "Prometheus Server is Ready.\n")
	})
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprint(w, "Prometheus Server is Healthy.\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	tsets := make(chan map[string][]*targetgroup.Group)
	feedCtx, stopFeed := context.WithCancel(context.Background())
	s.stopFeed = stopFeed
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		_ = s.scraper.Run(tsets)
	}()
	go func() {
		defer s.wg.Done()
		s.feed(feedCtx, tsets)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("prometheus api stopped", "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.closing:
		}
	}()
	logger.Info("prometheus serving", "addr", s.addr, "data", cfg.DataDir, "scrape_interval", cfg.ScrapeInterval, "retention", cfg.Retention)
	return s, nil
}

// Addr is the address the HTTP API listens on, host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the base URL of the HTTP API, what a Prometheus client is given.
func (s *Server) URL() string { return "http://" + s.addr }

// Close stops the HTTP API (letting running requests finish for a few
// seconds), stops scraping and closes the tsdb, which keeps everything
// scraped so far for the next Start on the same DataDir. It is idempotent
// and returns the same error every time.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.closing)
		s.err = s.shutdown()
	})
	return s.err
}

// shutdown stops whatever Start got to, API first so that no query runs
// on a closed tsdb, then scraping so that no sample is appended to it.
func (s *Server) shutdown() error {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		if err := s.http.Shutdown(ctx); err != nil {
			_ = s.http.Close()
		}
		cancel()
	}
	if s.stopFeed != nil {
		s.stopFeed()
	}
	if s.scraper != nil {
		s.scraper.Stop()
	}
	s.wg.Wait()
	var errs []error
	if s.engine != nil {
		errs = append(errs, s.engine.Close())
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close prometheus tsdb: %w", err))
	}
	return errors.Join(errs...)
}

// scrapeConfig is the Prometheus configuration of the one scrape pool.
// Targets come from feed, not from the file. honor_labels keeps the labels
// a target exposes (the proxy's role, say) rather than renaming them
// exported_*; the fallback protocol accepts an app that serves the text
// format without a Content-Type.
func scrapeConfig(interval time.Duration) string {
	return fmt.Sprintf(`global:
  scrape_interval: %s
scrape_configs:
  - job_name: %s
    honor_labels: true
    fallback_scrape_protocol: PrometheusText0.0.4
`, model.Duration(interval), DefaultJob)
}

// feed hands the scrape manager the current targets at once and then
// every scrape interval, whenever they change, until ctx ends.
func (s *Server) feed(ctx context.Context, tsets chan<- map[string][]*targetgroup.Group) {
	logger := s.cfg.Logger.With("component", "prometheus")
	ticker := time.NewTicker(s.cfg.ScrapeInterval)
	defer ticker.Stop()
	var (
		last   string
		sent   bool
		warned = map[string]bool{} // problems logged, so each is logged once while it lasts
	)
	for {
		group, key, problems := s.targets()
		seen := map[string]bool{}
		for _, p := range problems {
			seen[p] = true
			if !warned[p] {
				logger.Error("prometheus: target not scraped", "err", p)
			}
		}
		warned = seen
		if !sent || key != last {
			select {
			case tsets <- map[string][]*targetgroup.Group{DefaultJob: {group}}:
				last, sent = key, true
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
	}
}

// targets asks Config.Targets for the targets, returning them as one
// target group, a key that changes when they do, and why any were left
// out.
func (s *Server) targets() (*targetgroup.Group, string, []string) {
	group := &targetgroup.Group{Source: "sluice"}
	if s.cfg.Targets == nil {
		return group, "", nil
	}
	var (
		keys     []string
		problems []string
	)
	for _, t := range s.cfg.Targets() {
		ls, err := t.labelSet()
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		group.Targets = append(group.Targets, ls)
		keys = append(keys, ls.String())
	}
	slices.Sort(keys)
	return group, strings.Join(keys, "\n"), problems
}
