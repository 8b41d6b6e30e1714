package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// Headers the suite marks its own messages with.
const (
	// headerCopy marks a second delivery made by the duplicator.
	headerCopy = "Chaos-Copy"
	// headerPoison marks a poison or malformed event.
	headerPoison = "Chaos-Poison"
)

// duplicator delivers every command, task and result event a second time,
// after a random delay up to maxDelay, so that the copy usually arrives
// after events published later: duplicates and reordering at once. The copy
// has no Nats-Msg-Id, so the stream stores it as a new message and the
// consumers see it as a second delivery of the same CloudEvent.
type duplicator struct {
	js       jetstream.JetStream
	maxDelay time.Duration
	copies   atomic.Int64
	wg       sync.WaitGroup
}

func startDuplicator(ctx context.Context, js jetstream.JetStream, maxDelay time.Duration) (*duplicator, error) {
	d := &duplicator{js: js, maxDelay: maxDelay}
	for _, stream := range []string{events.StreamCommands, events.StreamTasks, events.StreamResults} {
		cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
		if err != nil {
			return nil, fmt.Errorf("duplicator on %s: %w", stream, err)
		}
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			if msg.Headers().Get(headerCopy) != "" {
				return
			}
			d.copyLater(ctx, msg.Subject(), msg.Data(), msg.Headers())
		})
		if err != nil {
			return nil, fmt.Errorf("duplicator on %s: %w", stream, err)
		}
		d.wg.Go(func() { <-ctx.Done(); cc.Stop() })
	}
	return d, nil
}

func (d *duplicator) copyLater(ctx context.Context, subject string, data []byte, header nats.Header) {
	h := nats.Header{}
	for k, v := range header {
		if k != jetstream.MsgIDHeader {
			h[k] = v
		}
	}
	h.Set(headerCopy, "1")
	msg := &nats.Msg{Subject: subject, Data: data, Header: h}
	d.wg.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(rand.N(d.maxDelay)):
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := d.js.PublishMsg(pctx, msg); err == nil {
			d.copies.Add(1)
		}
	})
}

// poisoner publishes poison and malformed events at the services, each
// marked with headerPoison.
type poisoner struct {
	js    jetstream.JetStream
	refs  []events.Ref
	mu    sync.Mutex
	kinds map[string]int
}

// poisonKinds are the poison events, by name.
var poisonKinds = []string{"not-an-event", "unknown-type", "invalid-request", "foreign-report", "garbage-task", "unknown-rollout"}

func (p *poisoner) publishOne(ctx context.Context, i int) {
	kind := poisonKinds[i%len(poisonKinds)]
	r := p.refs[rand.N(len(p.refs))]
	var (
		msg *nats.Msg
		err error
	)
	event := func(subject, typ string, data any) (*nats.Msg, error) {
		about, err := events.RefFromSubject(subject)
		if err != nil {
			return nil, err
		}
		ev, err := events.New("/chaos/poison", typ, about.String(), data)
		if err != nil {
			return nil, err
		}
		return events.Encode(subject, ev)
	}
	switch kind {
	case "not-an-event":
		msg = &nats.Msg{Subject: events.CommandSubject(r), Data: []byte("\x00\xffnot a CloudEvent")}
	case "unknown-type":
		msg, err = event(events.CommandSubject(r), "io.sluice.rollout.explode.v1", map[string]string{"blast": "radius"})
	case "invalid-request":
		msg, err = event(events.CommandSubject(r), events.TypeRolloutRequested, map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
			"metadata": map[string]string{"name": r.Name, "namespace": r.Namespace},
			"spec":     map[string]any{"replicas": -3},
		})
	case "foreign-report":
		// A report about a task that does not exist, on a real rollout's
		// result subject.
		msg, err = event(events.ResultSubject(tasks.ServiceTraffic, r), tasks.TypeFinished, tasks.Finished{
			TaskID: fmt.Sprintf("%s/%s/r9/route/999", r.Namespace, r.Name), Attempt: 1, Kind: tasks.KindRoute, Outcome: tasks.OutcomeSucceeded, At: time.Now(),
		})
	case "garbage-task":
		msg = &nats.Msg{Subject: events.TaskSubject(tasks.ServiceTraffic, r), Data: []byte(`{"specversion": "1.0", "truncated`)}
	case "unknown-rollout":
		ghost := events.Ref{Namespace: r.Namespace, Name: fmt.Sprintf("ghost-%d", i)}
		msg, err = event(events.CommandSubject(ghost), events.TypeRolloutPromote, map[string]any{})
	}
	if err != nil {
		return
	}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	msg.Header.Set(headerPoison, kind)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := p.js.PublishMsg(pctx, msg); err == nil {
		p.mu.Lock()
		p.kinds[kind]++
		p.mu.Unlock()
	}
}

func (p *poisoner) counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.kinds {
		out[k] = v
	}
	return out
}
