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
// Errors wrap ErrMalformed for an invalid event and ErrPublish otherwise.
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
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.publishTimeout)
		ack, err := c.js.PublishMsg(actx, msg, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil {
			return PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
		}
		lastErr = err
		if !ambiguous(err) {
			return PublishResult{}, fmt.Errorf("%w: %v", ErrPublish, err)
		}
		// The server refuses a publish outside the user's permissions
		// asynchronously, so the request only times out; retrying cannot
		// help.
		if perr := c.permissionViolation(msg.Subject); perr != nil {
			return PublishResult{}, fmt.Errorf("%w: %v", ErrPublish, perr)
		}
		select {
		case <-ctx.Done():
			return PublishResult{}, fmt.Errorf("%w after %d attempts: %v (last error: %v)", ErrPublish, attempt, ctx.Err(), lastErr)
		case <-time.After(backoffDelay(attempt, 50*time.Millisecond, 2*time.Second)):
		}
	}
}

// ambiguous reports whether a failed publish may or may not have been stored,
// or failed for a passing reason, so that retrying with the same id is right.
func ambiguous(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected)
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
	return fmt.Errorf("not permitted to publish to %s (check this user's NATS permissions): %w", subject, err)
}
