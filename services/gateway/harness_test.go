package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/instant"
	"github.com/sluicehq/sluice/services/traffic"
)

// instantRouter puts every route in effect at once.
type instantRouter struct{}

func (instantRouter) Type() string { return "gateway_test" }

func (instantRouter) Apply(_ context.Context, _ events.Ref, _ int64, r tasks.Route) (int32, error) {
	return r.CanaryWeight, nil
}

type service interface {
	Run(context.Context) error
	Ready() bool
}

func run(t *testing.T, svc service) {
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

// system is a real bus with a real orchestrator and instant workers.
type system struct {
	t   *testing.T
	url string
	bus *events.Client
}

func startSystem(t *testing.T) *system {
	t.Helper()
	return startSystemWith(t, func(*events.Client) replicas.Backend { return instant.New() })
}

// startSystemWith is startSystem with the replicas backend backend
// returns.
func startSystemWith(t *testing.T, backend func(*events.Client) replicas.Backend) *system {
	t.Helper()
	srv := eventstest.StartServer(t)
	s := &system{t: t, url: srv.ClientURL(), bus: eventstest.Connect(t, srv.ClientURL())}
	o, err := orchestrator.New(eventstest.Connect(t, s.url), orchestrator.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	work := eventstest.Connect(t, s.url)
	rs, err := replicas.New(work, backend(work), replicas.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := traffic.New(work, instantRouter{}, traffic.Config{Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, o)
	run(t, rs)
	run(t, ts)
	return s
}

// gateway starts a gateway on the system's bus whose anonymous callers
// have role as actor ("" and RoleNone: no anonymous access).
func (s *system) gateway(role auth.Role, actor string, mod ...func(*Config)) *api {
	s.t.Helper()
	cfg := Config{
		Listen: "127.0.0.1:0",
		Auth:   auth.Config{Anonymous: role, AnonymousActor: actor, RatePerSecond: 10000, Burst: 10000},
		Logger: eventstest.Quiet(),
	}
	for _, m := range mod {
		m(&cfg)
	}
	g, err := New(eventstest.Connect(s.t, s.url), cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	run(s.t, g)
	return &api{t: s.t, base: "http://" + g.Addr().String()}
}

const rolloutYAML = `apiVersion: argoproj.io/v1alpha1
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

// manifest is the JSON of a canary rollout r of image that pauses at its
// second step until promoted.
func manifest(r events.Ref, image string) []byte {
	y := strings.NewReplacer("NAME", r.Name, "NS", r.Namespace, "IMAGE", image).Replace(rolloutYAML)
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		panic(err)
	}
	return j
}

// request publishes a rollout.requested for r on the bus, as the CLI does.
func (s *system) request(r events.Ref, image string) events.Event {
	s.t.Helper()
	ev, err := events.New("/test", events.TypeRolloutRequested, r.String(), json.RawMessage(manifest(r, image)))
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	if _, err := s.bus.Publish(ctx, events.CommandSubject(r), ev); err != nil {
		s.t.Fatal(err)
	}
	return ev
}

// api calls a gateway over real HTTP, with a bearer token when it has
// one.
type api struct {
	t     *testing.T
	base  string
	token string
}

// as is a, calling with token.
func (a *api) as(token string) *api {
	c := *a
	c.token = token
	return &c
}

// response is an answer: its code and its body, decoded when JSON.
type response struct {
	code int
	body []byte
	json map[string]any
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.code, r.body) }

func (a *api) do(req *http.Request) response {
	a.t.Helper()
	res, err := a.send(req)
	if err != nil {
		a.t.Fatal(err)
	}
	return res
}

// send is do for another goroutine than the test's: it returns the error.
func (a *api) send(req *http.Request) (response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), time.Minute)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	out := response{code: res.StatusCode, body: b}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out.json); err != nil {
			return out, fmt.Errorf("%s %s: %d with invalid JSON %q: %v", req.Method, req.URL, res.StatusCode, b, err)
		}
	}
	return out, nil
}

func (a *api) call(method, path, body string) response {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	return a.do(req)
}

func (a *api) get(path string) response { a.t.Helper(); return a.call("GET", path, "") }

// decode decodes r's body into v.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(bytes.NewReader(r.body)).Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
	return v
}

// waitPhase waits until the API shows r in phase at revision rev.
func (a *api) waitPhase(r events.Ref, rev int64, phase string) Detail {
	a.t.Helper()
	var d Detail
	poll.Until(a.t, fmt.Sprintf("%s revision %d %s", r, rev, phase), func() error {
		res := a.get("/api/v1/namespaces/" + r.Namespace + "/rollouts/" + r.Name)
		if res.code != http.StatusOK {
			return fmt.Errorf("%s", res)
		}
		d = decode[Detail](a.t, res)
		if d.Status.Revision != rev || d.Status.Phase != phase {
			return fmt.Errorf("revision %d %s", d.Status.Revision, d.Status.Phase)
		}
		return nil
	})
	return d
}

// consumers counts the consumers of the commands and status streams.
func (s *system) consumers() int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	n := 0
	for _, name := range []string{events.StreamCommands, events.StreamStatus} {
		st, err := s.bus.JetStream().Stream(ctx, name)
		if err != nil {
			s.t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			s.t.Fatal(err)
		}
		n += info.State.Consumers
	}
	return n
}

// leavesNoConsumer checks, at the end of the test, that the gateway's
// reads, commands and streams left no consumer behind: the server would
// keep each for minutes, and a busy dashboard reads many times a minute.
func (s *system) leavesNoConsumer() {
	s.t.Helper()
	base := s.consumers()
	s.t.Cleanup(func() {
		if s.t.Failed() {
			return
		}
		poll.Until(s.t, "the consumers the gateway made deleted", func() error {
			if n := s.consumers(); n != base {
				return fmt.Errorf("%d consumers, %d before", n, base)
			}
			return nil
		})
	})
}
