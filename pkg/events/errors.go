package events

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Callers test them with errors.Is; every returned error wraps
// one of them with the context that produced it.
var (
	// ErrMalformed means bytes and headers do not form a valid CloudEvent of
	// this contract (not a CloudEvent, invalid attributes, data that is not
	// JSON). Such a message is dead-lettered, never retried.
	ErrMalformed = errors.New("malformed event")

	// ErrUnknownType means the event is well formed but no handler accepts its
	// type (or that version of it). Such a message is dead-lettered.
	ErrUnknownType = errors.New("unknown event type")

	// ErrInvalidName means a namespace or rollout name is not a DNS-1123 label.
	ErrInvalidName = errors.New("invalid name")

	// ErrInvalidConfig means a configuration struct failed Validate.
	ErrInvalidConfig = errors.New("invalid configuration")

	// ErrJetStreamNotEnabled means the NATS server answered but has no
	// JetStream for this account.
	ErrJetStreamNotEnabled = errors.New("JetStream is not enabled")

	// ErrPublish means a publish was not acknowledged by a stream before the
	// context ended or the attempts ran out.
	ErrPublish = errors.New("publish not acknowledged")

	// ErrJetStreamUnavailable means a NATS server answered but its
	// JetStream API did not, or answered that it is unavailable: a
	// cluster without a JetStream leader (its quorum lost, or an election
	// under way). It is Unavailable: the same call may succeed later.
	ErrJetStreamUnavailable = errors.New("JetStream unavailable")

	// ErrNotStored comes with ErrPublish when the bus certainly stored
	// nothing: no stream leader took any attempt (NoLeader), as while a
	// JetStream cluster has lost its quorum, the server refused the
	// publish for the user's permissions (ErrNotPermitted), or the stream
	// answered with a refusal (ErrRefused). Without it, a failed publish
	// may still have been stored (an attempt timed out), and may act
	// later; publishing the same event again is safe either way.
	ErrNotStored = errors.New("not stored")

	// ErrNotPermitted comes with ErrPublish and ErrNotStored when the
	// server refused a publish outside the user's NATS permissions:
	// nothing was stored, and sending it again cannot help.
	ErrNotPermitted = errors.New("not permitted")

	// ErrRefused comes with ErrPublish and ErrNotStored when the stream's
	// leader answered the publish with a refusal (a JetStream API error:
	// the stream full with its discard policy set to new, a message over
	// its size limit, a sealed stream), or the client would not send it
	// (over the server's maximum payload): nothing was stored, and sending
	// the same event again fails the same way until the stream changes.
	ErrRefused = errors.New("refused by the bus")
)

// permanentError marks an error as not worth retrying.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as final: the consumer dead-letters the message with
// err's text as the reason and terminates its delivery. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err must not be retried: it was marked with
// Permanent, or it wraps ErrMalformed or ErrUnknownType.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnknownType)
}

// retryAfterError asks for redelivery after a fixed delay.
type retryAfterError struct {
	err   error
	delay time.Duration
}

func (r retryAfterError) Error() string { return r.err.Error() }
func (r retryAfterError) Unwrap() error { return r.err }

// RetryAfter asks for the message to be redelivered after d instead of the
// consumer's exponential backoff. RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfterError{err: err, delay: d}
}

// retryDelay returns the delay asked for with RetryAfter, if any.
func retryDelay(err error) (time.Duration, bool) {
	var r retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// RetryDelay returns the delay asked for with RetryAfter, if any: for a
// handler's tests, and for code that passes a delay on.
func RetryDelay(err error) (time.Duration, bool) { return retryDelay(err) }
