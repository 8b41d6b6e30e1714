package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Service is the notifier: a daemon.Service.
type Service struct {
	client *events.Client
	cfg    Config
	log    *slog.Logger
	now    func() time.Time

	lc      daemon.Lifecycle
	current atomic.Pointer[Setup]
	state   *state
	addr    atomic.Value // net.Addr once listening
}

var _ daemon.Service = (*Service)(nil)

// New checks cfg and returns the notifier, consuming and publishing
// through client. Call Run to start it.
func New(client *events.Client, cfg Config) (*Service, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, fmt.Errorf("%w: the notifier needs a bus client", events.ErrInvalidConfig)
	}
	return &Service{client: client, cfg: cfg, log: cfg.Logger, now: time.Now}, nil
}

// Ready reports whether the configuration is loaded and the consumers
// run. A configuration that later fails to reload leaves it ready, on the
// configuration it has.
func (s *Service) Ready() bool { return s.lc.Ready() }

// Addr is where the chat endpoints listen, nil before they do (or when
// Listen is "off").
func (s *Service) Addr() net.Addr {
	a, _ := s.addr.Load().(net.Addr)
	return a
}

// setup is the configuration in use.
func (s *Service) setup() *Setup { return s.current.Load() }

// apply makes setup the configuration in use and releases the one it
// replaces.
func (s *Service) apply(setup *Setup) {
	if setup.Senders == nil {
		setup.Senders = map[string]notify.Sender{}
	}
	if setup.Planner == nil {
		setup.Planner = PlannerFunc(func(context.Context, events.Event, events.StatusData, *events.Snapshot) ([]notify.Message, error) {
			return nil, nil
		})
	}
	s.current.Swap(setup).close()
}

// Run loads the configuration, provisions the bus and the state bucket,
// serves the chat endpoints, starts the consumers and follows the
// configuration's changes, until ctx ends. Then it stops taking work, lets
// deliveries in progress finish and returns nil.
func (s *Service) Run(ctx context.Context) error {
	return s.lc.Run(ctx, daemon.Plan{
		Name: "notifier", Client: s.client, Bus: s.cfg.Bus, Needs: Needs,
		StopTimeout: s.cfg.StopTimeout, Log: s.log, Start: s.start,
	})
}

func (s *Service) start(ctx context.Context, r *daemon.Running) error {
	setup, err := s.cfg.Config.Load(ctx)
	if err != nil {
		return err
	}
	s.apply(setup)
	s.state = newState(r.Bucket(BucketState), s.client.Conn())

	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.cfg.Config.Watch(wctx, func(setup *Setup) {
			s.apply(setup)
			s.log.Info("notifications configuration reloaded", "services", sortedKeys(setup.Senders))
		})
	}()
	r.OnStop(daemon.StopFunc(func(context.Context) error {
		stopWatch()
		<-watched
		s.setup().close()
		return nil
	}))

	if s.cfg.Listen != "off" {
		if err := s.serve(r); err != nil {
			return err
		}
	}

	// A notifier new to a bus starts at the status stream's end: the
	// days of history it keeps are not notified again.
	status := s.cfg.Status
	status.Stream, status.Durable, status.DeliverNew = events.StreamStatus, DurableStatus, true
	status.FilterSubjects = []string{events.StatusRoot + ".>"}
	if err := r.Consume(ctx, status, s.queue); err != nil {
		return err
	}
	delivery := s.cfg.Delivery
	delivery.Stream, delivery.Durable, delivery.MaxDeliver = events.StreamTasks, DurableDelivery, s.cfg.MaxAttempts
	delivery.FilterSubjects = []string{events.TaskRoot + "." + TaskService + ".>"}
	if err := r.Consume(ctx, delivery, s.deliver); err != nil {
		return err
	}
	cd := s.cfg.Status
	cd.Stream, cd.Durable, cd.DeliverNew = events.StreamStatus, DurableCDEvents, true
	cd.FilterSubjects = []string{events.StatusRoot + ".>"}
	return r.Consume(ctx, cd, s.cdevents)
}

// serve listens on Listen for the chat endpoints of the configuration in
// use.
func (s *Service) serve(r *daemon.Running) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("notifier: listen %s: %w", s.cfg.Listen, err)
	}
	s.addr.Store(ln.Addr())
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("chat endpoints stopped", "error", err)
		}
	}()
	r.OnStop(daemon.StopFunc(srv.Shutdown))
	s.log.Info("chat endpoints listening", "addr", ln.Addr().String())
	return nil
}

// Handler serves the chat endpoints of the configuration in use: 404
// when it configures no chat.
func (s *Service) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setup := s.setup()
		if setup == nil || setup.Chat == nil {
			http.Error(w, "no chat commands are configured (commands.slack, commands.teams)", http.StatusNotFound)
			return
		}
		setup.Chat.ServeHTTP(w, r)
	})
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
