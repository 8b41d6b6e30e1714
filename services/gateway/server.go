package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/gateway/dashboard"
)

// Service is the gateway: a daemon.Service serving Config.Listen.
type Service struct {
	client *events.Client
	cfg    Config
	auth   *auth.Auth
	ready  atomic.Bool
	addr   atomic.Value // net.Addr once listening
}

// New returns the gateway cfg describes, publishing and reading through
// client.
func New(client *events.Client, cfg Config) (*Service, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	a, err := auth.New(cfg.Auth, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return &Service{client: client, cfg: cfg, auth: a}, nil
}

// Handler serves the API, the auth routes and the dashboard.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/auth/", s.auth.Routes())
	mux.Handle("/", dashboard.Handler())
	return s.auth.Middleware(mux)
}

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	s.addr.Store(ln.Addr())
	srv := &http.Server{Handler: s.Handler()}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	s.ready.Store(true)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Ready reports whether the gateway is serving.
func (s *Service) Ready() bool { return s.ready.Load() }

// Addr is the address the gateway listens on, once Ready.
func (s *Service) Addr() net.Addr {
	a, _ := s.addr.Load().(net.Addr)
	return a
}
