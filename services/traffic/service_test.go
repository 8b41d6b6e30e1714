package traffic_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

var web = events.Ref{Namespace: "prod", Name: "web"}

// bus is a real bus with the service running on it and the results
// collected.
type bus struct {
	t      *testing.T
	client *events.Client
	mu     sync.Mutex
	got    map[string][]events.Event // by task id
}

func startService(t *testing.T, router func(c *events.Client) traffic.Router) *bus {
	t.Helper()
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	b := &bus{t: t, client: c, got: map[string][]events.Event{}}
	sub, err := c.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamResults, Durable: "test"}, func(_ context.Context, _ events.Delivery, ev events.Event) error {
		var d struct {
			TaskID string `json:"taskId"`
		}
		if err := events.DecodeData(ev, &d); err != nil {
			return err
		}
		b.mu.Lock()
		b.got[d.TaskID] = append(b.got[d.TaskID], ev)
		b.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Stop(context.Background()) })

	svc, err := traffic.New(c, router(c), traffic.Config{
		Logger:   eventstest.Quiet(),
		Consumer: events.ConsumerConfig{BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
		// These tests check the whole protocol, started report included.
		StartedAfter: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	poll.True(t, "the traffic service to be ready", svc.Ready, poll.Timeout(eventstest.Wait))
	return b
}

// send publishes a route task as the orchestrator does.
func (b *bus) send(id string, ref events.Ref, seq int64, route tasks.Route) {
	b.t.Helper()
	task := tasks.Task{ID: id, Attempt: 1, Kind: tasks.KindRoute, Ref: ref, Seq: seq, Revision: 1, Route: &route}
	ev, err := events.New("/test", tasks.TypeTriggered, ref.String(), task)
	if err != nil {
		b.t.Fatal(err)
	}
	ev.SetID(task.EventID())
	if _, err := b.client.Publish(context.Background(), events.TaskSubject(tasks.ServiceTraffic, ref), ev); err != nil {
		b.t.Fatal(err)
	}
}

// finished waits for the task's started and finished reports and returns
// the latter.
func (b *bus) finished(id string) tasks.Finished {
	b.t.Helper()
	var evs []events.Event
	poll.Until(b.t, fmt.Sprintf("task %s's started and finished reports", id), func() error {
		b.mu.Lock()
		evs = b.got[id]
		b.mu.Unlock()
		if len(evs) < 2 {
			return fmt.Errorf("%d reports", len(evs))
		}
		return nil
	}, poll.Timeout(eventstest.Wait))
	if evs[0].Type() != tasks.TypeStarted || evs[1].Type() != tasks.TypeFinished {
		b.t.Fatalf("task %s reported %s then %s", id, evs[0].Type(), evs[1].Type())
	}
	var fin tasks.Finished
	if err := events.DecodeData(evs[1], &fin); err != nil {
		b.t.Fatal(err)
	}
	return fin
}

func TestServiceAppliesRoutesWithTheLocalProxy(t *testing.T) {
	var proxy *localproxy.Router
	b := startService(t, func(c *events.Client) traffic.Router {
		var err error
		proxy, err = localproxy.New(localproxy.Config{JetStream: c.JetStream(), Registerer: prometheus.NewRegistry(), Logger: eventstest.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
		defer cancel()
		if err := proxy.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proxy.Close(context.Background()) })
		return proxy
	})
	eps, err := endpoints.Open(context.Background(), b.client.JetStream(), events.BusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, hash := range []string{"stable", "canary"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, hash) }))
		t.Cleanup(srv.Close)
		if err := eps.Put(context.Background(), endpoints.Revision{Ref: web, PodHash: hash, Ready: []string{srv.Listener.Addr().String()}}); err != nil {
			t.Fatal(err)
		}
	}
	route := tasks.Route{
		Strategy: "canary", CanaryService: "web-canary", StableService: "web-stable",
		TrafficRouting: &spec.TrafficRouting{SMI: &spec.SMITrafficRouting{}},
		StableHash:     "stable", CanaryHash: "canary", CanaryWeight: 20,
		Annotations: map[string]string{localproxy.AnnotationListen: "127.0.0.1:0"},
	}
	b.send("prod/web/r2/route/2", web, 2, route)
	fin := b.finished("prod/web/r2/route/2")
	if fin.Outcome != tasks.OutcomeSucceeded || fin.CanaryWeight == nil || *fin.CanaryWeight != 20 {
		t.Fatalf("finished %+v, want Succeeded with weight 20", fin)
	}
	addr, _ := proxy.Addrs(web)
	resp, err := http.Get("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("proxy answered %s", resp.Status)
	}

	route.CanaryWeight = 0
	b.send("prod/web/r2/route/1", web, 1, route)
	if fin := b.finished("prod/web/r2/route/1"); fin.Outcome != tasks.OutcomeStale || fin.CanaryWeight != nil {
		t.Errorf("a lower seq: %+v, want Stale", fin)
	}

	delete(route.Annotations, localproxy.AnnotationListen)
	shop := events.Ref{Namespace: "prod", Name: "shop"}
	b.send("prod/shop/r1/route/1", shop, 1, route)
	fin = b.finished("prod/shop/r1/route/1")
	if fin.Outcome != tasks.OutcomeFailed || !strings.Contains(fin.Message, "add the annotation local.sluice.io/listen") {
		t.Errorf("no listen annotation: %+v, want Failed saying what to add", fin)
	}
}

// fakeRouter answers each seq with the error listed for it, once.
type fakeRouter struct {
	mu    sync.Mutex
	errs  map[int64]error
	calls atomic.Int32
}

func (f *fakeRouter) Type() string { return "fake" }

func (f *fakeRouter) Apply(_ context.Context, _ events.Ref, seq int64, route tasks.Route) (int32, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.errs[seq]
	delete(f.errs, seq)
	return route.CanaryWeight, err
}

func TestServiceMapsRouterErrorsOntoOutcomes(t *testing.T) {
	router := &fakeRouter{errs: map[int64]error{
		1: fmt.Errorf("%w: seq 1 is older than 9", tasks.ErrStale),
		2: fmt.Errorf("%w: ingress web has no rule for host shop.example", traffic.ErrRejected),
		3: errors.New("connection refused"), // retried, then applied
	}}
	b := startService(t, func(*events.Client) traffic.Router { return router })
	canary := tasks.Route{Strategy: "canary", StableHash: "a", CanaryHash: "b", CanaryWeight: 40}
	b.send("t1", web, 1, canary)
	b.send("t2", web, 2, canary)
	b.send("t3", web, 3, canary)
	b.send("t4", web, 4, tasks.Route{Strategy: "blueGreen", ActiveHash: "a", PreviewHash: "b"})
	for _, c := range []struct {
		id, outcome, message string
		weight               *int32
	}{
		{"t1", tasks.OutcomeStale, "seq 1 is older than 9", nil},
		{"t2", tasks.OutcomeFailed, "route rejected: ingress web has no rule for host shop.example", nil},
		{"t3", tasks.OutcomeSucceeded, "", ptr(int32(40))},
		{"t4", tasks.OutcomeSucceeded, "", nil},
	} {
		fin := b.finished(c.id)
		if fin.Outcome != c.outcome || !strings.Contains(fin.Message, c.message) || (fin.CanaryWeight == nil) != (c.weight == nil) || c.weight != nil && *fin.CanaryWeight != *c.weight {
			t.Errorf("%s: finished %+v, want %s %q weight %v", c.id, fin, c.outcome, c.message, c.weight)
		}
	}
	if n := router.calls.Load(); n != 5 {
		t.Errorf("router called %d times, want 5 (one retry)", n)
	}
}

func ptr[T any](v T) *T { return &v }

func TestNewChecksItsConfig(t *testing.T) {
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	if _, err := traffic.New(c, nil, traffic.Config{}); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("no router: %v", err)
	}
	if _, err := traffic.New(c, &fakeRouter{}, traffic.Config{Bus: events.BusConfig{Storage: "tape"}}); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("bad bus storage: %v", err)
	}
	if _, err := traffic.New(c, &fakeRouter{}, traffic.Config{Consumer: events.ConsumerConfig{Workers: -1}}); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("bad consumer: %v", err)
	}
}
