package events

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/internal/poll"
)

// Two services with their own tracer providers, as separate processes have:
// the consumer's span must continue the producer's trace through the event's
// traceparent extension.
func TestTraceCrossesServicesInTheEvent(t *testing.T) {
	srv := startServer(t)
	cliSpans, svcSpans := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	cli := provisioned(t, srv.ClientURL(), WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(cliSpans))))
	svc := connect(t, srv.ClientURL(), WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(svcSpans))))

	handled := make(chan trace.SpanContext, 1)
	consume(t, svc, ConsumerConfig{Stream: StreamCommands, Durable: "traced"}, func(ctx context.Context, _ Delivery, ev Event) error {
		handled <- trace.SpanContextFromContext(ctx)
		return nil
	})

	// The CLI's own root span, as `sluice apply` would start.
	root, rootSpan := sdktrace.NewTracerProvider().Tracer("cli").Start(context.Background(), "apply")
	ev := mustEvent(t, TypeRolloutRequested, "default/web", map[string]string{"kind": "Rollout"})
	if _, err := cli.Publish(root, cmdSubject("web"), ev); err != nil {
		t.Fatal(err)
	}
	rootSpan.End()
	inHandler := recv(t, handled, "handled event")

	if inHandler.TraceID() != rootSpan.SpanContext().TraceID() {
		t.Fatalf("handler runs in trace %s, want the publisher's %s", inHandler.TraceID(), rootSpan.SpanContext().TraceID())
	}
	pub := cliSpans.Ended()
	if len(pub) != 1 || pub[0].SpanKind() != trace.SpanKindProducer || pub[0].Parent().SpanID() != rootSpan.SpanContext().SpanID() {
		t.Fatalf("publish spans: %v", pub)
	}
	poll.True(t, "the consumer span ends", func() bool { return len(svcSpans.Ended()) == 1 })
	proc := svcSpans.Ended()[0]
	if proc.SpanKind() != trace.SpanKindConsumer || proc.Parent().SpanID() != pub[0].SpanContext().SpanID() || !proc.Parent().IsRemote() {
		t.Errorf("consumer span %q kind %v parent %v; want a consumer span whose remote parent is the publish span %v",
			proc.Name(), proc.SpanKind(), proc.Parent(), pub[0].SpanContext())
	}
}
