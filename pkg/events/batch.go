package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Message is one delivered event.
type Message struct {
	Delivery Delivery
	Event    Event
}

// BatchHandler handles messages about one rollout (one subject when the
// subject names none) that were waiting together, oldest first. It returns
// one error per message, in the same order, each with Handler's meaning:
// nil acks, a Permanent error dead-letters, any other error is retried.
// A result of another length fails every message of the batch.
type BatchHandler func(ctx context.Context, batch []Message) []error

// ConsumeBatches is Consume for a handler that decides on several messages
// at once: a worker that takes a message also takes the messages queued
// behind it for the same worker (up to cfg.Prefetch in all), and hands each
// rollout's messages to bh together, in order. Nothing waits for a batch
// to fill: a message alone is a batch of one, so batches form only when
// messages arrive faster than they are handled. Messages that do not
// decode are settled alone, as Consume settles them.
//
// Each message gets its consumer span, as with Consume; bh runs in the
// span of the batch's last message, so what it publishes continues that
// trace.
func (c *Client) ConsumeBatches(ctx context.Context, cfg ConsumerConfig, bh BatchHandler) (*Subscription, error) {
	return c.consume(ctx, cfg, func(ctx context.Context, s *Subscription, q <-chan queued) {
		for m := range q {
			ms := []queued{m}
		more:
			for len(ms) < s.cfg.Prefetch {
				select {
				case m, ok := <-q:
					if !ok {
						break more
					}
					ms = append(ms, m)
				default:
					break more
				}
			}
			s.handleBatches(ctx, ms, bh)
		}
	})
}

// batchItem is one message of a batch on its way to its handler.
type batchItem struct {
	queued
	Message
	ctx   context.Context
	span  trace.Span
	start time.Time
}

// handleBatches groups ms by rollout, keeping each rollout's messages in
// order, runs bh on each group and settles every message.
func (s *Subscription) handleBatches(ctx context.Context, ms []queued, bh BatchHandler) {
	var (
		groups [][]*batchItem
		index  = map[string]int{}
	)
	for _, m := range ms {
		it := &batchItem{queued: m, start: time.Now()}
		d, err := s.delivery(m.msg)
		if err != nil {
			m.stopBeat()
			s.c.log.Error("consumer received a message without JetStream metadata", "consumer", s.cfg.Durable, "subject", m.msg.Subject(), "error", err)
			continue
		}
		if s.stopping.Load() {
			_ = m.msg.Nak()
			m.stopBeat()
			continue
		}
		ev, err := Decode(m.msg.Data(), m.msg.Headers())
		if err != nil {
			s.observe(UnknownEventType, d, it.start, s.settle(ctx, m.msg, d, err))
			m.stopBeat()
			continue
		}
		it.Message = Message{Delivery: d, Event: ev}
		key := orderKey(d.Subject)
		i, ok := index[key]
		if !ok {
			i, index[key] = len(groups), len(groups)
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], it)
	}
	for _, g := range groups {
		s.handleBatch(ctx, g, bh)
	}
}

// handleBatch runs bh on one rollout's messages and settles each.
func (s *Subscription) handleBatch(ctx context.Context, items []*batchItem, bh BatchHandler) {
	batch := make([]Message, len(items))
	for i, it := range items {
		batch[i] = it.Message
		it.ctx = ExtractTrace(ctx, &it.Event)
		it.ctx, it.span = s.c.tracer.Start(it.ctx, "process "+it.Delivery.Subject,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(eventAttributes(it.Delivery.Subject, &it.Event)...),
			trace.WithAttributes(
				attribute.String("messaging.consumer.group.name", s.cfg.Durable),
				attribute.Int64("messaging.nats.delivery_count", int64(it.Delivery.Attempt)),
				attribute.Int("messaging.batch.message_count", len(items))))
	}
	errs := runBatch(items[len(items)-1].ctx, bh, batch)
	for i, it := range items {
		err := errs[i]
		if err != nil {
			it.span.RecordError(err)
			it.span.SetStatus(codes.Error, err.Error())
		}
		typ := it.Event.Type()
		if errors.Is(err, ErrUnknownType) || errors.Is(err, ErrMalformed) {
			typ = UnknownEventType
		}
		s.observe(typ, it.Delivery, it.start, s.settle(ctx, it.msg, it.Delivery, err))
		it.span.End()
		it.stopBeat()
	}
}

// runBatch calls bh, turning a panic or a result of the wrong length into
// an error for every message. A batch of several that panics is handed
// over again one message at a time, so one poison message is retried and
// dead-lettered alone: the others, retried with it, would reach
// MaxDeliver with it and be dead-lettered too.
func runBatch(ctx context.Context, bh BatchHandler, batch []Message) (errs []error) {
	defer func() {
		if r := recover(); r != nil {
			if len(batch) > 1 {
				errs = make([]error, len(batch))
				for i := range batch {
					errs[i] = runBatch(ctx, bh, batch[i:i+1])[0]
				}
				return
			}
			errs = []error{fmt.Errorf("handler panicked: %v", r)}
		}
	}()
	errs = bh(ctx, batch)
	if len(errs) != len(batch) {
		err := fmt.Errorf("batch handler returned %d results for %d messages", len(errs), len(batch))
		errs = make([]error, len(batch))
		for i := range errs {
			errs[i] = err
		}
	}
	return errs
}
