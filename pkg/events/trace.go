package events

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
)

const tracerName = "github.com/sluicehq/sluice/pkg/events"

// propagator is W3C Trace Context. It is used directly rather than through
// otel's global so the trace crosses services even when a binary never set a
// global propagator.
var propagator = propagation.TraceContext{}

// extensionCarrier exposes an event's traceparent and tracestate extensions
// (CloudEvents' distributed tracing extension) as a propagation carrier.
type extensionCarrier struct{ ev *Event }

func (c extensionCarrier) Get(key string) string {
	v, ok := c.ev.Extensions()[key]
	if !ok {
		return ""
	}
	s, _ := v.(string)
	return s
}

func (c extensionCarrier) Set(key, value string) {
	// Only traceparent and tracestate are set, both valid extension names.
	_ = c.ev.Context.SetExtension(key, value)
}

func (c extensionCarrier) Keys() []string {
	var keys []string
	for k := range c.ev.Extensions() {
		if k == "traceparent" || k == "tracestate" {
			keys = append(keys, k)
		}
	}
	return keys
}

// InjectTrace writes the span context of ctx into ev's traceparent and
// tracestate extensions.
func InjectTrace(ctx context.Context, ev *Event) {
	propagator.Inject(ctx, extensionCarrier{ev})
}

// ExtractTrace returns ctx carrying the remote span context found in ev's
// traceparent extension, if any.
func ExtractTrace(ctx context.Context, ev *Event) context.Context {
	return propagator.Extract(ctx, extensionCarrier{ev})
}

func eventAttributes(subject string, ev *Event) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", subject),
		attribute.String("messaging.message.id", ev.ID()),
		attribute.String("cloudevents.event_id", ev.ID()),
		attribute.String("cloudevents.event_type", ev.Type()),
		attribute.String("cloudevents.event_source", ev.Source()),
		attribute.String("cloudevents.event_subject", ev.Subject()),
	}
}
