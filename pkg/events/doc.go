// Package events is Sluice's event backbone: CloudEvents 1.0 carried on NATS
// JetStream.
//
// It holds the public event contract (subjects, event types and their data,
// see contract.go), the codec between CloudEvents and NATS messages (binary
// mode with ce-* headers on output; binary and structured mode on input), a
// Client that publishes with deduplication and consumes through durable pull
// consumers, and the provisioning of the streams, consumers and key-value
// buckets every service relies on.
//
// Delivery is at-least-once. A handler's result decides the message's fate:
//
//	nil                     -> Ack
//	any other error         -> Nak with exponential backoff (retried)
//	Permanent(err)          -> copied to the dead-letter stream, then Term
//	ErrMalformed, ErrUnknownType -> dead-lettered, then Term
//	retry past MaxDeliver   -> dead-lettered, then Term
//
// A Handler receives the event and its Delivery (subject, stream sequence,
// attempt) as arguments. Consume runs every message through one chain:
// Decode turns the message into a Delivery and an Event, the Trace and
// Recover middleware wrap the handler, and the chain's result is settled as
// above. Middleware is a func(Handler) Handler; Chain composes it.
// ConsumeBatches is Consume for a BatchHandler, which takes the messages of
// one rollout that were waiting for their worker together and returns one
// result per message, settled the same way.
//
// Nothing poisons a consumer: whatever cannot be handled lands, with its
// original bytes, headers and the reason, on the dead-letter stream
// (subjects sluice.dlq.>) and the consumer carries on.
//
// Start-up waits for the bus: Connect, and a service binary starting its
// service (internal/daemon), retry with backoff (Retry) every error that
// says the bus cannot answer yet (Unavailable: NATS down, a timeout, a
// JetStream cluster electing its leaders) and fail at once on the others,
// configuration errors above all.
//
// Every publish and every handled message is an OpenTelemetry span; the W3C
// trace context travels in the CloudEvents traceparent and tracestate
// extensions, so one rollout is one trace across all services.
package events
