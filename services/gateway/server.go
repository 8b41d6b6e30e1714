package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/gateway/dashboard"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Source is the CloudEvents source of the events the gateway publishes
// itself: the commands of its API and the refusals it answers.
const Source = "/sluice/gateway"

// Service is the gateway: a daemon.Service serving Config.Listen.
type Service struct {
	client *events.Client
	cfg    Config
	auth   *auth.Auth
	// providers checks an AnalysisTemplate posted to the ingress as the
	// analyzer will (analyzer.CheckTemplate).
	providers *metrics.Registry
	ready     atomic.Bool
	addr      atomic.Value // net.Addr once listening

	// The buckets are opened on first use: they may come after the
	// gateway starts.
	mu     sync.Mutex
	reader *orchestrator.Reader
	runs   *analyzer.RunReader
}

// New returns the gateway cfg describes, publishing and reading through
// client.
func New(client *events.Client, cfg Config) (*Service, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, fmt.Errorf("%w: the gateway needs a bus client", events.ErrInvalidConfig)
	}
	a, err := auth.New(cfg.Auth, cfg.Logger)
	if err != nil {
		return nil, err
	}
	providers, err := analyzer.DefaultProviders(analyzer.ProviderConfig{})
	if err != nil {
		return nil, err
	}
	return &Service{client: client, cfg: cfg, auth: a, providers: providers}, nil
}

// route is one operation of the API.
type route struct {
	method, path string
	handle       http.HandlerFunc
}

// routes lists every operation the API serves, as the OpenAPI document
// (openapi.json) describes them.
func (s *Service) routes() []route {
	return []route{
		{"GET", "/api/v1/whoami", s.whoami},
		{"GET", "/api/v1/rollouts", s.list(rolloutList)},
		{"GET", "/api/v1/namespaces/{namespace}/rollouts/{name}", s.get},
		{"GET", "/api/v1/namespaces/{namespace}/rollouts/{name}/history", s.history},
		{"POST", "/api/v1/namespaces/{namespace}/rollouts/{name}/{command}", s.command(Commands)},
		{"GET", "/api/v1/experiments", s.list(experimentList)},
		{"GET", "/api/v1/namespaces/{namespace}/experiments/{name}", s.getExperiment},
		{"POST", "/api/v1/namespaces/{namespace}/experiments/{name}/{command}", s.command(ExperimentCommands)},
		{"GET", "/api/v1/stream", s.stream},
		{"POST", "/api/v1/events", s.ingress},
		{"GET", "/api/v1/openapi.json", serveOpenAPI},
	}
}

// apiMux routes the API's operations.
func (s *Service) apiMux() *http.ServeMux {
	api := http.NewServeMux()
	for _, rt := range s.routes() {
		pattern := rt.method + " " + rt.path
		api.Handle(pattern, s.counted(pattern, rt.handle))
	}
	return api
}

// counted counts each answer of h by route and status code.
func (s *Service) counted(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(cw, r)
		s.cfg.Metrics.GatewayRequest(route, cw.code)
	})
}

// codeWriter remembers the status code of an answer. Unwrap lets
// http.ResponseController flush an event stream through it.
type codeWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (c *codeWriter) WriteHeader(code int) {
	if !c.wrote {
		c.code, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeWriter) Write(b []byte) (int, error) {
	c.wrote = true
	return c.ResponseWriter.Write(b)
}

func (c *codeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Handler serves the API, the auth routes and the dashboard.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/", s.jsonMisses(s.apiMux()))
	mux.Handle("/auth/", s.auth.Routes())
	mux.Handle("/", dashboard.Handler())
	return s.auth.Middleware(mux)
}

// jsonMisses answers a request no route of mux serves with a JSON error
// (404, or 405 with Allow), as every other API error, counted as route
// "other".
func (s *Service) jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusOnly{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+allow)
			s.cfg.Metrics.GatewayRequest("other", http.StatusMethodNotAllowed)
			return
		}
		writeError(w, http.StatusNotFound, "no such API route: "+r.Method+" "+r.URL.Path+" (GET /api/v1/openapi.json lists them)")
		s.cfg.Metrics.GatewayRequest("other", http.StatusNotFound)
	})
}

// statusOnly records what the mux would answer to a request it does not
// route, to answer it in JSON instead.
type statusOnly struct {
	header http.Header
	code   int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.code = code }

// rollouts returns the orchestrator's reader, opening it on first use. It
// returns an error wrapping jetstream.ErrBucketNotFound while no
// orchestrator ever ran on the bus.
func (s *Service) rollouts(ctx context.Context) (*orchestrator.Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reader != nil {
		return s.reader, nil
	}
	rd, err := orchestrator.NewReader(ctx, s.client)
	if err != nil {
		return nil, err
	}
	s.reader = rd
	return rd, nil
}

// analysisRuns returns the analyzer's run reader, opening it on first use.
func (s *Service) analysisRuns(ctx context.Context) (*analyzer.RunReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs != nil {
		return s.runs, nil
	}
	rr, err := analyzer.NewRunReader(ctx, s.client)
	if err != nil {
		return nil, err
	}
	s.runs = rr
	return rr, nil
}

// Run serves until ctx ends; requests in flight (event streams, waits)
// get StopTimeout to finish.
func (s *Service) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	s.addr.Store(ln.Addr())
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		cancel() // ends event streams and waits
		sctx, scancel := context.WithTimeout(context.Background(), max(s.cfg.StopTimeout, time.Second))
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}()
	s.ready.Store(true)
	err = srv.Serve(ln)
	s.ready.Store(false)
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-done
	return nil
}

// Ready reports whether the gateway is serving.
func (s *Service) Ready() bool { return s.ready.Load() }

// Addr is the address the gateway listens on, once Ready.
func (s *Service) Addr() net.Addr {
	a, _ := s.addr.Load().(net.Addr)
	return a
}
