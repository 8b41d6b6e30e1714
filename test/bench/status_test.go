package bench

import (
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// outgoing is a message to publish with its message id.
type outgoing struct {
	msg *nats.Msg
	id  string
}

// statusEvent is a status event encoded once, as the orchestrator encodes
// it (binary mode, ce-* headers).
type statusEvent struct{ msg *nats.Msg }

// with is the event with id as its CloudEvents id and message id.
func (e statusEvent) with(id string) outgoing {
	m := &nats.Msg{Subject: e.msg.Subject, Data: e.msg.Data, Header: maps.Clone(e.msg.Header)}
	m.Header.Set("ce-id", id)
	return outgoing{m, id}
}

// statusPair is the two status events every canary step publishes.
type statusPair struct{ started, completed statusEvent }

// newStatusPair builds r's step.started and step.completed events with
// the snapshot the orchestrator publishes for a setWeight step of
// tenSteps halfway through (TestContractEventsAreSluiceSized compares
// their size with the real ones).
func newStatusPair(tb testing.TB, r events.Ref) statusPair {
	tb.Helper()
	index := int32(4)
	correlation := uuid.NewString()
	data := events.StatusData{
		Status: events.Snapshot{
			Namespace: r.Namespace, Name: r.Name, Strategy: "canary", Phase: "Progressing",
			Message:  "updating to revision 2: step 5/10 (setWeight 50)",
			Revision: 2, StableRevision: 1, PodHash: "6ff4cd9669", StablePodHash: "74486ff788",
			StepIndex: &index, StepCount: 10, CanaryWeight: 40, StableWeight: 60,
			Replicas:  events.Replicas{Desired: 2, Current: 3, Updated: 1, Ready: 3, Available: 3},
			UpdatedAt: time.Now().UTC(),
		},
		Step: &events.StepInfo{Index: index, Action: "setWeight", Detail: "setWeight 50"},
	}
	event := func(typ string) statusEvent {
		ev, err := events.New(orchestrator.Source, typ, r.String(), data)
		if err != nil {
			tb.Fatal(err)
		}
		ev.SetExtension(events.ExtCorrelationID, correlation)
		msg, err := events.Encode(events.StatusSubject(r), ev)
		if err != nil {
			tb.Fatal(err)
		}
		return statusEvent{msg}
	}
	return statusPair{started: event(events.TypeRolloutStepStarted), completed: event(events.TypeRolloutStepCompleted)}
}

// statusStream is the status stream as pkg/events provisions it.
func statusStream() jetstream.StreamConfig {
	var bus events.BusConfig
	bus.Defaults()
	for _, s := range bus.Streams() {
		if s.Name == events.StreamStatus {
			return s
		}
	}
	panic("pkg/events provisions no " + events.StreamStatus)
}

// storedSize is the bytes of a message's subject, headers (as NATS
// encodes them) and body.
func storedSize(subject string, h nats.Header, data []byte) int {
	n := len(subject) + len("NATS/1.0\r\n\r\n") + len(data)
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}

// TestContractStepPublishesTheStatusEvents runs the bare step loop with and
// without the contract: with it, every step's task goes with its
// step.started event and every step after a rollout's first with the step
// before's step.completed, on the status stream; without it, only tasks.
func TestContractStepPublishesTheStatusEvents(t *testing.T) {
	const n, total = 3, 30
	for _, contract := range []bool{false, true} {
		run := runLimit(t, n, total, contract)
		if got := len(run.lat.d); got != total {
			t.Errorf("contract %t: %d steps measured, want %d", contract, got, total)
		}
		want := uint64(0)
		if contract {
			want = 2*total - n
		}
		if run.statusEvents != want {
			t.Errorf("contract %t: %d status events stored, want %d", contract, run.statusEvents, want)
		}
	}
}

// TestContractEventsAreSluiceSized compares the status events of the
// contract's bare step (newStatusPair) with the step.started and
// step.completed events the real orchestrator publishes during an update
// of tenSteps: the contract's minimum is only that if its events are as
// large as Sluice's. It fails when the orchestrator's step events grow
// or shrink by more than a tenth, and newStatusPair must follow.
func TestContractEventsAreSluiceSized(t *testing.T) {
	st := startStack(t, instantRouter{}, 1, 0)
	var (
		mu    sync.Mutex
		sizes []int
	)
	completed := make(chan struct{}, 2)
	cons, err := st.admin.JetStream().OrderedConsumer(st.ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		switch m.Headers().Get("ce-type") {
		case events.TypeRolloutStepStarted, events.TypeRolloutStepCompleted:
			mu.Lock()
			sizes = append(sizes, storedSize(m.Subject(), m.Headers(), m.Data()))
			mu.Unlock()
		case events.TypeRolloutCompleted:
			completed <- struct{}{}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	for _, version := range []string{"v1", "v2"} {
		st.request(t, []string{"r0"}, func(name string) string { return tenSteps(name, "web:"+version) })
		select {
		case <-completed:
		case <-time.After(time.Minute):
			t.Fatalf("rollout.completed of web:%s not published within a minute", version)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 20 {
		t.Fatalf("%d step events in the update of ten steps, want 20", len(sizes))
	}
	real := 0
	for _, s := range sizes {
		real += s
	}
	realMean := float64(real) / float64(len(sizes))

	pair := newStatusPair(t, events.Ref{Namespace: "bench", Name: "r0"})
	bare := 0.0
	for _, e := range []statusEvent{pair.started, pair.completed} {
		o := e.with("bench/r0/v7/0") // the orchestrator's ids are this long
		o.msg.Header.Set(jetstream.MsgIDHeader, o.id)
		bare += float64(storedSize(o.msg.Subject, o.msg.Header, o.msg.Data)) / 2
	}
	t.Logf("step events: the orchestrator's %.0f bytes on average, the contract step's %.0f", realMean, bare)
	if bare < 0.9*realMean || bare > 1.1*realMean {
		t.Errorf("the contract step's status events are %.0f bytes, the orchestrator's %.0f: make newStatusPair's snapshot like the orchestrator's", bare, realMean)
	}
}
