package events

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Middleware wraps a Handler with behaviour every event shares (tracing,
// recovery), so a handler holds only its own logic.
type Middleware func(Handler) Handler

// Chain returns h wrapped in mws, the first outermost: Chain(h, a, b) runs a,
// then b, then h.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Recover turns a panic in next into an error, so the message is settled
// (retried, then dead-lettered) rather than the process crashing.
func Recover(next Handler) Handler {
	return func(ctx context.Context, d Delivery, ev Event) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panicked: %v", r)
			}
		}()
		return next(ctx, d, ev)
	}
}

// Trace runs next in a consumer span named "process <subject>" that continues
// the trace the event carries in its traceparent extension, and records
// next's error on the span. durable names the consumer group.
func Trace(tracer trace.Tracer, durable string) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, d Delivery, ev Event) error {
			ctx = ExtractTrace(ctx, &ev)
			ctx, span := tracer.Start(ctx, "process "+d.Subject,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(eventAttributes(d.Subject, &ev)...),
				trace.WithAttributes(
					attribute.String("messaging.consumer.group.name", durable),
					attribute.Int64("messaging.nats.delivery_count", int64(d.Attempt))))
			defer span.End()
			err := next(ctx, d, ev)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
	}
}
