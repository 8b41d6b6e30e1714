package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// PublishResult is the stream's acknowledgement of a publish.
type PublishResult struct {
	Stream   string
	Sequence uint64
	// Duplicate is true when the stream already held an event with this id
	// within its duplicate window, so nothing new was stored.
	Duplicate bool
}

// Publish stores ev on subject in binary content mode and waits for the
// stream's acknowledgement. The event id is the JetStream message id, so a
// repeated publish of the same event within the stream's duplicate window is
// stored once. Ambiguous failures (timeouts, no stream reachable during a
// reconnect or leader election) are retried with the same id until ctx ends.
// The span context of ctx is written into the event's traceparent extension.
// Errors wrap ErrMalformed for an invalid event and ErrPublish otherwise;
// ErrPublish comes with ErrNotStored when no stream leader took any attempt
// (the stream has no leader, as in a cluster that lost its quorum), the
// user may not publish to subject (ErrNotPermitted) or the stream refused
// the event (ErrRefused), so nothing was stored.
func (c *Client) Publish(ctx context.Context, subject string, ev Event) (PublishResult, error) {
	ctx, span := c.tracer.Start(ctx, "send "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(eventAttributes(subject, &ev)...))
	defer span.End()
	InjectTrace(ctx, &ev)
	msg, err := Encode(subject, ev)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return PublishResult{}, err
	}
	res, err := c.publishMsg(ctx, msg, ev.ID())
	c.observePublish(ev.Type(), res, err)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return res, fmt.Errorf("publish %s %s to %s: %w", ev.Type(), ev.ID(), subject, err)
	}
	return res, nil
}

func (c *Client) observePublish(eventType string, res PublishResult, err error) {
	if c.obs == nil {
		return
	}
	switch {
	case err != nil:
		c.obs.Published(eventType, PublishFailed)
	case res.Duplicate:
		c.obs.Published(eventType, PublishDuplicate)
	default:
		c.obs.Published(eventType, PublishStored)
	}
}

// publishMsg publishes msg with the given message id, retrying ambiguous
// failures with the same id until ctx ends.
func (c *Client) publishMsg(ctx context.Context, msg *nats.Msg, msgID string) (PublishResult, error) {
	var lastErr error
	// mayBeStored is set once an attempt failed in a way that leaves
	// open whether the stream stored it (a timeout, a lost connection).
	mayBeStored := false
	start := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.publishTimeout)
		// Retries are this loop's alone: jetstream's own retry of "no
		// responders" waits inside the attempt's timeout, which then ends
		// it as a timeout, and a publish that no leader took would read
		// as one that may have been stored.
		ack, err := c.js.PublishMsg(actx, msg, jetstream.WithMsgID(msgID), jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil {
			return PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
		}
		lastErr = err
		if !ambiguous(err) {
			if refused(err) {
				return PublishResult{}, fmt.Errorf("%w, %w, %w: %v", ErrPublish, ErrNotStored, ErrRefused, err)
			}
			return PublishResult{}, fmt.Errorf("%w: %v", ErrPublish, err)
		}
		// The server refuses a publish outside the user's permissions
		// asynchronously, so the request only times out; retrying cannot
		// help.
		if perr := c.permissionViolation(msg.Subject); perr != nil {
			return PublishResult{}, fmt.Errorf("%w, %w: %w", ErrPublish, ErrNotStored, perr)
		}
		mayBeStored = mayBeStored || !NoLeader(err)
		select {
		case <-ctx.Done():
			return PublishResult{}, giveUp(ctx, attempt, time.Since(start), mayBeStored, lastErr)
		case <-time.After(backoffDelay(attempt, 50*time.Millisecond, 2*time.Second)):
		}
	}
}

// giveUp is the error of a publish whose context ended after attempts
// that failed for a passing reason, the last with last. It says whether
// the stream may have stored the event, since that decides what its
// caller may tell a person: no leader taking any attempt means nothing was
// stored (ErrNotStored).
func giveUp(ctx context.Context, attempts int, took time.Duration, mayBeStored bool, last error) error {
	took = took.Round(time.Millisecond)
	if !mayBeStored {
		return fmt.Errorf("%w, %w: no leader of its stream took any of %d attempts in %s (last error: %v): the stream has no JetStream leader, "+
			"as when a NATS cluster has lost its quorum (most of its nodes down, cut off or out of disk space), or no stream takes this subject (%v)",
			ErrPublish, ErrNotStored, attempts, took, last, ctx.Err())
	}
	return fmt.Errorf("%w after %d attempts in %s: %v (last error: %v): it may still be stored, since an attempt was not answered: "+
		"publishing the same event again (its id) within the stream's duplicate window stores it at most once", ErrPublish, attempts, took, ctx.Err(), last)
}

// errDuplicateInProcess is JetStream's "duplicate message id is in
// process": a publish with the same id is being replicated by the
// stream's raft group at this moment (an earlier attempt, sent while the
// leader changed), so whether it will be stored is not known yet.
const errDuplicateInProcess = 10158

// ambiguous reports whether a failed publish may or may not have been stored,
// or failed for a passing reason, so that retrying with the same id is right:
// no leader took it, or the leader refused it for lack of room and stepped
// down (NoLeader).
func ambiguous(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.ErrorCode == errDuplicateInProcess {
		return true
	}
	return NoLeader(err) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected)
}

// refused reports whether err, a failure that is not ambiguous, is the
// stream's answer refusing a publish or the client's refusal to send it:
// either way nothing was stored.
func refused(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) || errors.Is(err, nats.ErrMaxPayload)
}

// permissionViolation returns the connection's last error when it is the
// server refusing a publish to subject.
func (c *Client) permissionViolation(subject string) error {
	err := c.nc.LastError()
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
		return nil
	}
	if !strings.Contains(err.Error(), `"`+subject+`"`) {
		return nil
	}
	return fmt.Errorf("%w to publish to %s (check this user's NATS permissions): %w", ErrNotPermitted, subject, err)
}

// Outgoing is an event to publish on a subject.
type Outgoing struct {
	Subject string
	Event   Event
}

// PublishAll publishes the events, in order, and waits for the stream's
// acknowledgements of all of them at once: the events leave back to back
// on the one connection, so the server stores them in the order given, and
// the batch costs about one round trip instead of one per event. An event
// whose acknowledgement does not come in time (or that could not be sent)
// is published again with Publish, with the same id, so it is never stored
// twice; it may then be stored after events behind it. It returns the
// first error.
func (c *Client) PublishAll(ctx context.Context, out []Outgoing) error {
	if len(out) == 1 {
		_, err := c.Publish(ctx, out[0].Subject, out[0].Event)
		return err
	}
	type pending struct {
		future jetstream.PubAckFuture
		span   trace.Span
	}
	sent := make([]pending, len(out))
	for i := range out {
		o := &out[i]
		sctx, span := c.tracer.Start(ctx, "send "+o.Subject,
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(eventAttributes(o.Subject, &o.Event)...))
		sent[i].span = span
		InjectTrace(sctx, &o.Event)
		msg, err := Encode(o.Subject, o.Event)
		if err != nil {
			for _, p := range sent[:i+1] {
				p.span.End()
			}
			return err
		}
		sent[i].future, _ = c.js.PublishMsgAsync(msg, jetstream.WithMsgID(o.Event.ID())) // nil: published again below
	}
	timeout := time.NewTimer(c.publishTimeout)
	defer timeout.Stop()
	var again []int
	for i, p := range sent {
		if p.future == nil {
			again = append(again, i)
			continue
		}
		select {
		case ack := <-p.future.Ok():
			c.observePublish(out[i].Event.Type(), PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil)
			p.span.End()
			continue
		case <-p.future.Err():
		case <-timeout.C:
			timeout.Reset(0) // the rest have waited as long
		case <-ctx.Done():
		}
		p.span.End()
		again = append(again, i)
	}
	for _, i := range again {
		if _, err := c.Publish(ctx, out[i].Subject, out[i].Event); err != nil {
			return err
		}
	}
	return nil
}
