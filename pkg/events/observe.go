package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Handling outcomes reported to an Observer.
const (
	OutcomeAcked        = "acked"
	OutcomeRetried      = "retried"
	OutcomeDeadLettered = "dead_lettered"
)

// Publish outcomes reported to an Observer.
const (
	PublishStored    = "stored"
	PublishDuplicate = "duplicate"
	PublishFailed    = "failed"
)

// Dead-letter reason classes reported to an Observer: a bounded summary of
// the free-text reason carried in the dead letter itself.
const (
	// DeadLetterMalformed: the bytes were not a valid event (ErrMalformed).
	DeadLetterMalformed = "malformed"
	// DeadLetterUnknownType: no handler for the event's type (ErrUnknownType).
	DeadLetterUnknownType = "unknown_type"
	// DeadLetterPermanent: the handler returned a Permanent error.
	DeadLetterPermanent = "permanent"
	// DeadLetterRetriesExhausted: the handler failed on every delivery up
	// to MaxDeliver.
	DeadLetterRetriesExhausted = "retries_exhausted"
	// DeadLetterUnacknowledged: MaxDeliver was reached without any
	// delivery being settled (the handler's process crashed or hung).
	DeadLetterUnacknowledged = "unacknowledged"
)

// UnknownEventType stands for the type of an event that could not be decoded
// or that no handler accepts, so that what a publisher puts in the type
// attribute cannot grow an Observer's label sets.
const UnknownEventType = "unknown"

// Observer is told what a Client publishes and consumes, for metrics. Its
// methods are called synchronously on the publishing or handling goroutine:
// they must be fast and safe for concurrent use.
type Observer interface {
	// Published reports one Publish: its event type and one of
	// PublishStored, PublishDuplicate or PublishFailed.
	Published(eventType, outcome string)
	// Handled reports one delivery handled by consumer: the event type (or
	// UnknownEventType), one of OutcomeAcked, OutcomeRetried or
	// OutcomeDeadLettered, the delivery attempt (1 on first delivery) and
	// how long the handler ran.
	Handled(consumer, eventType, outcome string, attempt uint64, took time.Duration)
	// DeadLettered reports a message consumer gave up, with one of the
	// DeadLetter* reason classes.
	DeadLettered(consumer, class string)
	// ConsumerLag reports a sample of a durable consumer's info: messages
	// not yet delivered (num_pending) and delivered but not acknowledged
	// (num_ack_pending).
	ConsumerLag(stream, consumer string, pending, ackPending uint64)
}

// WithObserver reports publishes, deliveries, dead letters and, every
// lagEvery (default 15s when zero), each running consumer's lag to o.
func WithObserver(o Observer, lagEvery time.Duration) Option {
	return func(c *Client) error {
		if o == nil {
			return fmt.Errorf("%w: nil observer", ErrInvalidConfig)
		}
		if lagEvery < 0 {
			return fmt.Errorf("%w: lag sampling interval %s must not be negative", ErrInvalidConfig, lagEvery)
		}
		if lagEvery == 0 {
			lagEvery = 15 * time.Second
		}
		c.obs, c.lagEvery = o, lagEvery
		return nil
	}
}

// deadLetterClass sorts a handler's error into a DeadLetter* class.
func deadLetterClass(err error, exhausted bool) string {
	switch {
	case errors.Is(err, ErrMalformed):
		return DeadLetterMalformed
	case errors.Is(err, ErrUnknownType):
		return DeadLetterUnknownType
	case exhausted:
		return DeadLetterRetriesExhausted
	}
	return DeadLetterPermanent
}

// sampleLag reports cons's lag to the observer every c.lagEvery until done
// is closed.
func (c *Client) sampleLag(cons jetstream.Consumer, cfg ConsumerConfig, done <-chan struct{}) {
	sample := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := cons.Info(ctx)
		if err != nil {
			c.log.Debug("consumer info for lag sampling failed", "consumer", cfg.Durable, "error", err)
			return
		}
		c.obs.ConsumerLag(cfg.Stream, cfg.Durable, info.NumPending, uint64(info.NumAckPending))
	}
	sample()
	t := time.NewTicker(c.lagEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			sample()
		}
	}
}
