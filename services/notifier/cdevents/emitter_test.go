package cdevents

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

var web = events.Ref{Namespace: "shop", Name: "web"}

// sink is a CDEvents consumer: an HTTP server reading each request with
// the CloudEvents SDK.
type sink struct {
	*httptest.Server
	mu       sync.Mutex
	got      []cloudevents.Event
	binary   []bool
	auth     []string
	failWith func() (int, http.Header) // nil accepts
}

func startSink(t *testing.T) *sink {
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		fail := s.failWith
		s.mu.Unlock()
		if fail != nil {
			code, h := fail()
			for k, v := range h {
				w.Header()[k] = v
			}
			http.Error(w, "no", code)
			return
		}
		ev, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.got = append(s.got, *ev)
		s.binary = append(s.binary, r.Header.Get("Ce-Id") != "")
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(s.Close)
	return s
}

// wait waits for the n-th event (from 0).
func (s *sink) wait(t *testing.T, n int) cloudevents.Event {
	t.Helper()
	return systemtest.Nth(t, "CDEvent at the sink", &s.mu, &s.got, n)
}

// consume runs e on the status stream as the notifier does (durable
// notifier-cdevents).
func consume(t *testing.T, sys *systemtest.System, e *Emitter) {
	t.Helper()
	sub, err := sys.Connect().Consume(t.Context(), events.ConsumerConfig{
		Stream: events.StreamStatus, Durable: "notifier-cdevents", BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}, e.Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
		defer cancel()
		_ = sub.Stop(ctx)
	})
}

// command sends typ for web and waits for its answer.
func command(t *testing.T, sys *systemtest.System, typ string, data any) {
	t.Helper()
	ev, err := events.New("/test", typ, web.String(), data)
	if err != nil {
		t.Fatal(err)
	}
	a, err := follow.Send(t.Context(), sys.Bus, ev, eventstest.Wait)
	if err != nil || a.Refused() {
		t.Fatalf("%s: %v %+v", typ, err, a)
	}
}

func waitPhase(t *testing.T, sys *systemtest.System, rev int64, phase string) {
	t.Helper()
	f, err := follow.After(t.Context(), sys.Bus, 0, events.StatusSubject(web))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	poll.Until(t, fmt.Sprintf("revision %d %s", rev, phase), func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		for {
			d, err := f.Next(ctx)
			if err != nil {
				return err
			}
			var data events.StatusData
			if events.DecodeData(d.Event, &data) == nil && data.Status.Revision == rev && data.Status.Phase == phase {
				return nil
			}
		}
	})
}

// A rollout's life as CDEvents at an HTTP sink: deployed, upgraded, rolled
// back by an abort, rolled back by an undo; each the CloudEvent of the
// status event, with the image of the revision that serves.
func TestEmitterToHTTPSink(t *testing.T) {
	sys := systemtest.Start(t)
	s := startSink(t)
	e, err := NewEmitter(Config{Sink: s.URL + "/events", Headers: map[string]string{"Authorization": "Bearer s3cret"}, Environment: Environment{ID: "prod"}},
		Deps{Client: sys.Connect(), Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	consume(t, sys, e)

	type want struct{ typ, tag string }
	check := func(n int, w want) {
		t.Helper()
		ev := s.wait(t, n)
		cd := decodeCD(t, ev)
		if ev.Type() != w.typ || cd.Context.Type != w.typ || cd.Subject.ID != "shop/web" || cd.Subject.Content.Environment.ID != "prod" ||
			cd.Subject.Content.ArtifactID != "pkg:oci/web?repository_url=registry.example/shop/web&tag="+w.tag {
			t.Errorf("CDEvent #%d: %s %+v, want %s of tag %s", n+1, ev.Type(), cd, w.typ, w.tag)
		}
		if !strings.HasPrefix(ev.ID(), "cdevents/") || cd.Context.ID != ev.ID() {
			t.Errorf("CDEvent #%d: ids %q and %q", n+1, ev.ID(), cd.Context.ID)
		}
	}

	sys.Request(web, "registry.example/shop/web:1")
	check(0, want{TypeServiceDeployed, "1"})

	sys.Request(web, "registry.example/shop/web:2")
	waitPhase(t, sys, 2, events.PhasePaused)
	command(t, sys, events.TypeRolloutPromote, events.PromoteData{Full: true})
	check(1, want{TypeServiceUpgraded, "2"})

	sys.Request(web, "registry.example/shop/web:3")
	waitPhase(t, sys, 3, events.PhasePaused)
	command(t, sys, events.TypeRolloutAbort, struct{}{})
	check(2, want{TypeServiceRolledBack, "2"})

	command(t, sys, events.TypeRolloutUndo, events.UndoData{})
	check(3, want{TypeServiceRolledBack, "2"})

	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) != 4 {
		t.Errorf("%d CDEvents, want 4", len(s.got))
	}
	for i := range s.got {
		if !s.binary[i] || s.auth[i] != "Bearer s3cret" {
			t.Errorf("request #%d: binary %v, Authorization %q", i+1, s.binary[i], s.auth[i])
		}
	}
}

// A sink's answers decide the status event's fate: 429 is retried after
// its Retry-After, another 4xx is final, a 5xx is retried.
func TestEmitterSinkErrors(t *testing.T) {
	sys := systemtest.Start(t)
	sys.Request(web, "registry.example/shop/web:1")
	waitPhase(t, sys, 1, events.PhaseHealthy)
	s := startSink(t)
	e, err := NewEmitter(Config{Sink: s.URL, Mode: ModeStructured}, Deps{Client: sys.Connect(), Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	completed := completedEvent(t, sys)

	for _, tc := range []struct {
		name  string
		code  int
		h     http.Header
		check func(error) bool
	}{
		{"429 with Retry-After", http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, func(err error) bool {
			d, ok := events.RetryDelay(err)
			return ok && d == 7*time.Second && !events.IsPermanent(err)
		}},
		{"400", http.StatusBadRequest, nil, events.IsPermanent},
		{"503", http.StatusServiceUnavailable, nil, func(err error) bool { return err != nil && !events.IsPermanent(err) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.mu.Lock()
			s.failWith = func() (int, http.Header) { return tc.code, tc.h }
			s.mu.Unlock()
			err := e.Handle(t.Context(), events.Delivery{}, completed)
			if !tc.check(err) {
				t.Errorf("Handle = %v", err)
			}
		})
	}
	s.mu.Lock()
	s.failWith = nil
	s.mu.Unlock()
	if err := e.Handle(t.Context(), events.Delivery{}, completed); err != nil {
		t.Fatal(err)
	}
	if ev := s.wait(t, 0); ev.Type() != TypeServiceDeployed || s.binary[0] {
		t.Errorf("structured: %s, binary %v", ev.Type(), s.binary[0])
	}
	// A rollout deleted since its event is skipped, not retried.
	gone := completed.Clone()
	gone.SetSubject("shop/gone")
	if err := e.Handle(t.Context(), events.Delivery{}, gone); err != nil {
		t.Errorf("a deleted rollout: %v", err)
	}
}

// completedEvent is web's first completed event from the status stream.
func completedEvent(t *testing.T, sys *systemtest.System) events.Event {
	t.Helper()
	hist, err := sys.Bus.History(t.Context(), web)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.Err == nil && h.Event.Type() == events.TypeRolloutCompleted {
			return h.Event
		}
	}
	t.Fatal("no completed event")
	return events.Event{}
}

// On a NATS subject each CDEvent is a structured CloudEvent.
func TestEmitterToSubject(t *testing.T) {
	sys := systemtest.Start(t)
	msgs := make(chan *nats.Msg, 16)
	sub, err := sys.Bus.Conn().ChanSubscribe("cd.events", msgs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := sys.Bus.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	e, err := NewEmitter(Config{Subject: "cd.events"}, Deps{Client: sys.Connect(), Logger: eventstest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	consume(t, sys, e)
	sys.Request(web, "registry.example/shop/web:1")
	select {
	case m := <-msgs:
		var ev cloudevents.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("%s: %v", m.Data, err)
		}
		if cd := decodeCD(t, ev); ev.Type() != TypeServiceDeployed || cd.Subject.Content.Environment.ID != "shop" {
			t.Errorf("%s %+v", ev.Type(), cd)
		}
	case <-time.After(eventstest.Wait):
		t.Fatal("no CDEvent on cd.events")
	}
}
