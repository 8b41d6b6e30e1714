package events

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Unavailable reports whether err means that the bus could not answer
// yet, so that the same call may succeed later: NATS not reachable or the
// connection lost, a request that timed out or found no responder, and
// JetStream still electing its leaders or placing a stream's replicas (a
// cluster that has just started, or that lost a node).
//
// Every other error is permanent, and above all a configuration error:
// one wrapping ErrInvalidConfig (a flag, a stream whose storage or
// retention cannot change in place), ErrJetStreamNotEnabled, credentials
// the server refuses (bad, expired or revoked), permissions the server
// refuses (reported as ErrInvalidConfig by Connect and
// Client.DeniedJetStream), a TLS certificate that does not verify, and
// JetStream API errors that say the request is wrong, such as
// --bus-replicas 3 on a server that is not clustered.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, ErrInvalidConfig) || errors.Is(err, ErrJetStreamNotEnabled) || badTLS(err) {
		return false
	}
	var starting startingError
	if errors.As(err, &starting) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return unavailableAPI(api)
	}
	for _, target := range []error{
		context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders, nats.ErrNoServers,
		nats.ErrDisconnected, nats.ErrConnectionReconnecting, nats.ErrStaleConnection,
		nats.ErrMaxConnectionsExceeded, jetstream.ErrBucketNotFound, jetstream.ErrNoHeartbeat, jetstream.ErrNoStreamResponse,
		io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	// A connection that failed or broke; not a listen address in use,
	// which is the service's own configuration.
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op == "dial" || op.Op == "read" || op.Op == "write"
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// NoLeader reports whether a write to a stream or a key-value bucket
// failed because no stream leader was there to take it: nobody answered
// (nats.ErrNoResponders, jetstream.ErrNoStreamResponse), as happens for a
// few seconds after the node leading the stream dies, while the others
// elect a new leader. Nothing was stored, so writing again is safe for any
// write, compare-and-swap included; a timeout is not such an error (the
// write may have been stored). A leader that refused the write for lack
// of room (JetStream error 10023, insufficient resources: its store is
// past its limit) is no leader either: it stored nothing, stepped down at
// once, and stands for no election until it has room, so the write goes
// to a new leader on a peer with room.
func NoLeader(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.ErrorCode == errInsufficientResources {
		return true
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// errInsufficientResources is JetStream's "insufficient resources": the
// server's store (or memory) is past its limit (max_file_store, by default
// 75% of the volume's free space when the server started).
const errInsufficientResources = 10023

// LeaderBackoff is the backoff of a write waiting for a stream's new
// leader (see NoLeader): short, since a JetStream cluster elects one within
// seconds and every pause past the election delays the rollout.
var LeaderBackoff = Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}

// unavailableAPI tells the JetStream API errors of a cluster that cannot
// answer yet from those that say the request is wrong.
func unavailableAPI(e *jetstream.APIError) bool {
	switch e.ErrorCode {
	case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount,
		10010, // JetStream clustering support required
		10035, // account not found
		10036: // not supported in clustered mode
		return false
	case 10005, // no suitable peers for placement: the cluster's peers are not all known yet
		10007,                               // cluster not assigned to this server
		10009,                               // cluster can not handle the request (no leader)
		10041,                               // raft error
		10048,                               // stream assignment error
		jetstream.JSErrCodeStreamNameInUse,  // a create racing another replica's
		jetstream.JSErrCodeStreamNotFound,   // a stream another replica is creating
		jetstream.JSErrCodeConsumerNotFound, // likewise a consumer
		10118, 10119, 10194, 10195:          // stream or consumer offline
		return true
	}
	// 503 is the API's "temporarily unavailable": system unavailable,
	// insufficient resources while peers join, incomplete results.
	return e.Code == 503
}

// badTLS reports a TLS handshake that failed on a certificate (the
// server's, or the client's that the server refused with an alert) or a
// server that does not speak TLS: retrying does not change either.
func badTLS(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		op       *net.OpError
	)
	return errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &op) && op.Op == "remote error" // crypto/tls's form of the server's alert
}

// startingError marks an error as the bus still starting, whatever it
// wraps: the API of a server that announces JetStream but has no
// responder on it yet reads as ErrJetStreamNotEnabled.
type startingError struct{ err error }

func (s startingError) Error() string { return s.err.Error() }
func (s startingError) Unwrap() error { return s.err }

// Backoff is exponential backoff with jitter: attempt 1 waits about
// Initial, each later attempt twice as long, up to Max; each wait is drawn
// from [d/2, d].
type Backoff struct {
	Initial, Max time.Duration
}

// DefaultBackoff is the backoff of reconnects, of Connect and of a
// service waiting for the bus (ConnConfig.ReconnectWait and
// MaxReconnectWait by default).
var DefaultBackoff = Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second}

// Delay is the wait after failed attempt number attempt (1 for the first).
func (b Backoff) Delay(attempt int) time.Duration { return backoffDelay(attempt, b.Initial, b.Max) }

// Wait is one failed attempt of Retry, told to its observer before the
// pause that follows it.
type Wait struct {
	// Attempt counts the attempts so far.
	Attempt int
	// Err is why the last one failed.
	Err error
	// Next is the pause before the next attempt.
	Next time.Duration
}

// String is the wait for a log or a readiness report.
func (w Wait) String() string {
	return fmt.Sprintf("attempt %d failed: %v; trying again in %s", w.Attempt, w.Err, w.Next.Round(time.Millisecond))
}

// Retry calls op until it returns nil or an error that is not Unavailable,
// and returns that; after an Unavailable error it waits b.Delay(attempt),
// first telling onWait (when not nil). When ctx ends during a wait, it
// returns the last error, which then wraps ctx's error too.
//
// It is the one retry of the project's start-up paths: Connect dials and
// checks JetStream with it, and a service binary starts its service with
// it (internal/daemon).
func Retry(ctx context.Context, b Backoff, op func(context.Context) error, onWait func(Wait)) error {
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil || !Unavailable(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		}
		w := Wait{Attempt: attempt, Err: err, Next: b.Delay(attempt)}
		if onWait != nil {
			onWait(w)
		}
		t := time.NewTimer(w.Next)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up after %d attempts: %w)", err, attempt, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// deniedJetStream returns an error wrapping ErrInvalidConfig when the
// server refused nc a JetStream API subject: it drops such a request, so
// the request itself only times out, which would read as an unavailable
// bus and be retried for ever.
func deniedJetStream(nc *nats.Conn) error {
	last := nc.LastError()
	if last == nil || !errors.Is(last, nats.ErrPermissionViolation) || !strings.Contains(last.Error(), "$JS.API") {
		return nil
	}
	return fmt.Errorf("%w: the NATS server at %s refused this client the JetStream API (%v): connect as the NATS user of this service's identity, whose permissions Sluice generates (docs/security.md)", ErrInvalidConfig, nc.ConnectedUrlRedacted(), last)
}

// DeniedJetStream returns an error wrapping ErrInvalidConfig when the
// server refused this client a JetStream API subject, else nil. A caller
// that retries Unavailable errors asks it after a timeout: a refused
// request times out like one the bus had no time to answer.
func (c *Client) DeniedJetStream() error { return deniedJetStream(c.nc) }
