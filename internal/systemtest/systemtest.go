// Package systemtest runs a real rollout system inside a test: an
// embedded NATS server with the real orchestrator, replicas and traffic
// services (instant workers by default), for the tests of the services
// at the edge (the gateway, the notifier's chat commands) that must drive
// real rollouts.
package systemtest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/instant"
	"github.com/sluicehq/sluice/services/traffic"
)

// instantRouter puts every route in effect at once.
type instantRouter struct{}

func (instantRouter) Type() string { return "systemtest" }

func (instantRouter) Apply(_ context.Context, _ events.Ref, _ int64, r tasks.Route) (int32, error) {
	return r.CanaryWeight, nil
}

// Service is a service a test runs: the daemon's contract.
type Service interface {
	Run(context.Context) error
	Ready() bool
}

// Run runs svc until the test ends, when it must stop without an error,
// and waits until it is ready.
func Run(t *testing.T, svc Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service stopped with %v", err)
		}
	})
	poll.True(t, "service ready", svc.Ready)
}

// System is a real bus with a real orchestrator and instant workers.
type System struct {
	T *testing.T
	// URL is the embedded NATS server's client URL.
	URL string
	// Bus is a connection for the test itself.
	Bus *events.Client
}

// Start starts a System with the instant replicas backend.
func Start(t *testing.T) *System {
	t.Helper()
	return StartWith(t, func(*events.Client) replicas.Backend { return instant.New() })
}

// StartWith is Start with the replicas backend backend returns.
func StartWith(t *testing.T, backend func(*events.Client) replicas.Backend) *System {
	t.Helper()
	srv := eventstest.StartServer(t)
	s := &System{T: t, URL: srv.ClientURL(), Bus: eventstest.Connect(t, srv.ClientURL())}
	o, err := orchestrator.New(s.Connect(), orchestrator.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	work := s.Connect()
	rs, err := replicas.New(work, backend(work), replicas.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := traffic.New(work, instantRouter{}, traffic.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	Run(t, o)
	Run(t, rs)
	Run(t, ts)
	return s
}

// Connect returns a new connection to the system's bus, closed when the
// test ends.
func (s *System) Connect() *events.Client { return eventstest.Connect(s.T, s.URL) }

// RolloutYAML is a canary rollout of NAME in NS running IMAGE that pauses
// at its second step until promoted, then pauses a second.
const RolloutYAML = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: NAME, namespace: NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec: {containers: [{name: app, image: IMAGE}]}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {}
      - setWeight: 60
      - pause: {duration: 1}
`

// Manifest is the JSON of RolloutYAML for r and image.
func Manifest(r events.Ref, image string) []byte {
	y := strings.NewReplacer("NAME", r.Name, "NS", r.Namespace, "IMAGE", image).Replace(RolloutYAML)
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		panic(err)
	}
	return j
}

// Request publishes a rollout.requested of Manifest(r, image) on the bus,
// as the CLI does.
func (s *System) Request(r events.Ref, image string) events.Event {
	s.T.Helper()
	ev, err := events.New("/test", events.TypeRolloutRequested, r.String(), json.RawMessage(Manifest(r, image)))
	if err != nil {
		s.T.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	if _, err := s.Bus.Publish(ctx, events.CommandSubject(r), ev); err != nil {
		s.T.Fatal(err)
	}
	return ev
}
