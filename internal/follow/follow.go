// Package follow is the one way to send a command and wait for its
// answer, and to follow an update until it completes or fails: the CLI
// (sluice promote, apply --wait) and the gateway (its commands and
// ?wait=completed) both use it. Reading the bus is at the edges (Status,
// Next, Send); what an event means for an update is decided by Update,
// which is pure.
package follow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// ErrNoAnswer means no status event answered a command in time.
var ErrNoAnswer = errors.New("no answer")

// Status follows the status events of refs published from now on
// (FromNow).
func Status(ctx context.Context, client *events.Client, refs ...events.Ref) (*Follower, error) {
	subjects := make([]string, len(refs))
	for i, r := range refs {
		subjects[i] = events.StatusSubject(r)
	}
	f, err := FromNow(ctx, client, subjects...)
	if err != nil {
		return nil, fmt.Errorf("follow the status of %v: %w", refs, err)
	}
	return f, nil
}

// FromNow follows the status events on subjects (wildcards allowed)
// published from now on. It starts right after the stream's current end:
// a DeliverNew ordered consumer is recreated "at new" until its first
// message, and would skip events published in between.
func FromNow(ctx context.Context, client *events.Client, subjects ...string) (*Follower, error) {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	return After(ctx, client, info.State.LastSeq, subjects...)
}

// After follows the status events on subjects (wildcards allowed) stored
// after stream sequence seq: 0 reads every event the stream keeps.
func After(ctx context.Context, client *events.Client, seq uint64, subjects ...string) (*Follower, error) {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return nil, err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    seq + 1,
	})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	return &Follower{it: it, stream: s, cons: cons}, nil
}

// Follower reads the status events an ordered consumer delivers, in
// order. It keeps one consumer on the server for as long as it follows
// (fetching message by message would create one per fetch); Stop ends it.
type Follower struct {
	it     jetstream.MessagesContext
	stream jetstream.Stream
	cons   jetstream.Consumer
}

// Delivered is a status event with where the stream stored it.
type Delivered struct {
	Event events.Event
	// Seq is the status stream's sequence of the event.
	Seq    uint64
	Stored time.Time
}

// Next returns the next event, skipping messages that are not valid
// events. It waits until ctx ends and then returns ctx's error; after Stop
// it returns jetstream.ErrMsgIteratorClosed.
func (f *Follower) Next(ctx context.Context) (Delivered, error) {
	for {
		msg, err := f.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return Delivered{}, ctx.Err()
			}
			return Delivered{}, err
		}
		ev, err := events.Decode(msg.Data(), msg.Headers())
		if err != nil {
			continue
		}
		d := Delivered{Event: ev}
		if meta, err := msg.Metadata(); err == nil {
			d.Seq, d.Stored = meta.Sequence.Stream, meta.Timestamp
		}
		return d, nil
	}
}

// Stop stops following and deletes the consumer, rather than leave it to
// the server's inactivity threshold (minutes): a busy gateway follows many
// times a minute.
func (f *Follower) Stop() {
	f.it.Stop()
	if info := f.cons.CachedInfo(); info != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.stream.DeleteConsumer(ctx, info.Name)
	}
}

// Answer is the first status event that carries a command's id in its
// causationid.
type Answer struct {
	Type  string
	Event events.Event
	Data  events.StatusData
}

// Refused reports whether the command changed nothing
// (io.sluice.rollout.command.refused.v1, or
// io.sluice.experiment.command.refused.v1 for an experiment's command);
// Code and Reason say why.
func (a *Answer) Refused() bool {
	return a.Type == events.TypeRolloutRefused || a.Type == events.TypeExperimentRefused
}

// Code is a refusal's code (events.Refused*); "" for another answer.
func (a *Answer) Code() string {
	if c := a.Data.Command; c != nil {
		return c.Code
	}
	return ""
}

// Reason says why a command was refused, or why the rollout did what the
// answer says.
func (a *Answer) Reason() string {
	if c := a.Data.Command; c != nil && c.Reason != "" {
		return c.Reason
	}
	return a.Data.Reason
}

// Send publishes command ev on its rollout's command subject (ev's subject
// is "<namespace>/<name>") and, unless timeout is 0, waits up to timeout
// for the stream to store it, then up to timeout for its answer. It
// follows the status from before publishing, so no answer can come first.
// With timeout 0 it returns a nil Answer once ev is stored, and ctx bounds
// the publish. It returns an error wrapping ErrNoAnswer when no answer
// came in time, and one wrapping events.ErrNotStored when the command was
// certainly not stored: the status could not be followed (nothing was
// sent), or no stream leader took it (see events.Client.Publish).
func Send(ctx context.Context, client *events.Client, ev events.Event, timeout time.Duration) (*Answer, error) {
	r, err := events.ParseRef(ev.Subject())
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		_, err := client.Publish(ctx, events.CommandSubject(r), ev)
		return nil, err
	}
	f, err := Status(ctx, client, r)
	if err != nil {
		why := ""
		if events.Unavailable(err) {
			why = " (JetStream did not answer: its streams may have no JetStream leader, as when a NATS cluster has lost its quorum)"
		}
		return nil, fmt.Errorf("%w: %s %s was not sent, as its answer could not be awaited: %w%s", events.ErrNotStored, ev.Type(), ev.ID(), err, why)
	}
	defer f.Stop()
	// A bus that stores nothing (a cluster without a quorum) would keep
	// the publish retrying for as long as ctx lasts.
	pctx, cancel := context.WithTimeout(ctx, timeout)
	_, err = client.Publish(pctx, events.CommandSubject(r), ev)
	cancel()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		d, err := f.Next(wctx)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("%s %s: %w within %s", ev.Type(), ev.ID(), ErrNoAnswer, timeout)
		case err != nil:
			return nil, fmt.Errorf("wait for the answer to %s: %w", ev.ID(), err)
		}
		if events.Extension(d.Event, events.ExtCausationID) != ev.ID() {
			continue
		}
		a := &Answer{Type: d.Event.Type(), Event: d.Event}
		if err := events.DecodeData(d.Event, &a.Data); err != nil {
			return nil, fmt.Errorf("read the answer to %s: %w", ev.ID(), err)
		}
		return a, nil
	}
}

// Refusal returns the command.refused status event that answers command
// cmd with code and reason (of type events.RefusedType(cmd.Type())),
// published by source: its id derives from the
// command's (so it is published once however often it is sent), it
// carries the command's id as causationid and its actor, and snap is the
// rollout's status (or only its namespace and name). It is the answer an
// edge (the gateway) gives to a command it does not forward.
func Refusal(source string, cmd events.Event, snap events.Snapshot, code, reason string) (events.Event, error) {
	ev, err := events.New(source, events.RefusedType(cmd.Type()), cmd.Subject(), events.StatusData{
		Status:  snap,
		Reason:  reason,
		Command: &events.CommandAnswer{Type: cmd.Type(), ID: cmd.ID(), Code: code, Reason: reason},
	})
	if err != nil {
		return ev, err
	}
	ev.SetID("refused/" + cmd.ID())
	ev.SetExtension(events.ExtCausationID, cmd.ID())
	if actor := events.Extension(cmd, events.ExtActor); actor != "" {
		ev.SetExtension(events.ExtActor, actor)
	}
	return ev, nil
}
