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

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/replicas"
)

// system is a real bus with a real orchestrator and instant workers.
type system struct{ *systemtest.System }

func startSystem(t *testing.T) *system {
	t.Helper()
	return &system{systemtest.Start(t)}
}

// startSystemWith is startSystem with the replicas backend backend
// returns.
func startSystemWith(t *testing.T, backend func(*events.Client) replicas.Backend) *system {
	t.Helper()
	return &system{systemtest.StartWith(t, backend)}
}

func run(t *testing.T, svc systemtest.Service) {
	t.Helper()
	systemtest.Run(t, svc)
}

// gateway starts a gateway on the system's bus whose anonymous callers
// have role as actor ("" and RoleNone: no anonymous access).
func (s *system) gateway(role auth.Role, actor string, mod ...func(*Config)) *api {
	s.T.Helper()
	cfg := Config{
		Listen: "127.0.0.1:0",
		Auth:   auth.Config{Anonymous: role, AnonymousActor: actor, RatePerSecond: 10000, Burst: 10000},
		Logger: eventstest.Quiet(),
	}
	for _, m := range mod {
		m(&cfg)
	}
	g, err := New(eventstest.Connect(s.T, s.URL), cfg)
	if err != nil {
		s.T.Fatal(err)
	}
	run(s.T, g)
	return &api{t: s.T, base: "http://" + g.Addr().String()}
}

// manifest is the JSON of a canary rollout r of image that pauses at its
// second step until promoted.
func manifest(r events.Ref, image string) []byte { return systemtest.Manifest(r, image) }

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
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	n := 0
	for _, name := range []string{events.StreamCommands, events.StreamStatus} {
		st, err := s.Bus.JetStream().Stream(ctx, name)
		if err != nil {
			s.T.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			s.T.Fatal(err)
		}
		n += info.State.Consumers
	}
	return n
}

// leavesNoConsumer checks, at the end of the test, that the gateway's
// reads, commands and streams left no consumer behind: the server would
// keep each for minutes, and a busy dashboard reads many times a minute.
func (s *system) leavesNoConsumer() {
	s.T.Helper()
	base := s.consumers()
	s.T.Cleanup(func() {
		if s.T.Failed() {
			return
		}
		poll.Until(s.T, "the consumers the gateway made deleted", func() error {
			if n := s.consumers(); n != base {
				return fmt.Errorf("%d consumers, %d before", n, base)
			}
			return nil
		})
	})
}
