package events

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestUnavailableTellsWaitingFromConfiguration(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, inUse := net.Listen("tcp", held.Addr().String())
	api := func(status int, code jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("create stream SLUICE_TASKS: %w", &jetstream.APIError{Code: status, ErrorCode: code, Description: desc})
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a request that timed out", fmt.Errorf("provision bucket sluice-rollouts: %w", context.DeadlineExceeded), true},
		{"nats timeout", fmt.Errorf("look up stream SLUICE_RESULTS: %w", nats.ErrTimeout), true},
		{"no responders", nats.ErrNoResponders, true},
		{"no servers", nats.ErrNoServers, true},
		{"connection refused", fmt.Errorf("connect to NATS at nats://127.0.0.1:4222: %w", refused), true},
		{"reconnecting", nats.ErrConnectionReconnecting, true},
		{"system temporarily unavailable", api(503, 10008, "JetStream system temporarily unavailable"), true},
		{"insufficient resources while peers join", api(503, 10023, "insufficient resources"), true},
		{"no suitable peers for placement", api(400, 10005, "no suitable peers for placement"), true},
		{"stream offline", api(500, 10118, "stream is offline"), true},
		{"a create racing another", fmt.Errorf("open bucket sluice-endpoints: %w", jetstream.ErrStreamNameAlreadyInUse), true},
		{"a stream another replica is creating", jetstream.ErrStreamNotFound, true},
		{"a bucket another replica is creating", jetstream.ErrBucketNotFound, true},
		{"JetStream starting on a server that announces it", startingError{errors.New("JetStream on nats://x is not answering yet")}, true},
		{"replicas on a server that is not clustered", api(500, errReplicasNotClustered, "replicas > 1 not supported in non-clustered mode"), false},
		{"JetStream not enabled", fmt.Errorf("%w on the NATS server", ErrJetStreamNotEnabled), false},
		{"JetStream not enabled for the account", jetstream.ErrJetStreamNotEnabledForAccount, false},
		{"invalid stream configuration", api(500, 10052, "stream configuration invalid"), false},
		{"invalid configuration", fmt.Errorf("%w: --bus-storage %q", ErrInvalidConfig, "tape"), false},
		{"invalid configuration beside a timeout", errors.Join(fmt.Errorf("%w: stream uses memory storage", ErrInvalidConfig), context.DeadlineExceeded), false},
		{"bad credentials", fmt.Errorf("connect to NATS: %w", nats.ErrAuthorization), false},
		{"expired credentials", nats.ErrAuthExpired, false},
		{"a certificate that does not verify", fmt.Errorf("connect: %w", x509.UnknownAuthorityError{}), false},
		{"a listen address in use", fmt.Errorf("notifier: %w", inUse), false},
		{"canceled", context.Canceled, false},
		{"anything else", errors.New("auth file: no users"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Unavailable(tt.err); got != tt.want {
				t.Errorf("Unavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRetryWaitsOutUnavailableErrorsOnly(t *testing.T) {
	fast := Backoff{Initial: time.Millisecond, Max: time.Millisecond}
	t.Run("until it succeeds", func(t *testing.T) {
		var waits []Wait
		calls := 0
		err := Retry(context.Background(), fast, func(context.Context) error {
			if calls++; calls < 3 {
				return fmt.Errorf("provision bucket b: %w", nats.ErrTimeout)
			}
			return nil
		}, func(w Wait) { waits = append(waits, w) })
		if err != nil || calls != 3 || len(waits) != 2 || waits[1].Attempt != 2 || !errors.Is(waits[1].Err, nats.ErrTimeout) {
			t.Errorf("err %v after %d calls, waits %+v; want success on the third, two waits reported", err, calls, waits)
		}
		if s := waits[0].String(); !strings.Contains(s, "attempt 1 failed: provision bucket b: nats: timeout; trying again in") {
			t.Errorf("wait reads %q", s)
		}
	})
	t.Run("a permanent error at once", func(t *testing.T) {
		calls := 0
		bad := fmt.Errorf("%w: --bus-replicas 3", ErrInvalidConfig)
		err := Retry(context.Background(), fast, func(context.Context) error { calls++; return bad }, nil)
		if !errors.Is(err, bad) || calls != 1 {
			t.Errorf("err %v after %d calls, want the error after one", err, calls)
		}
	})
	t.Run("until the context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		err := Retry(ctx, fast, func(context.Context) error { return nats.ErrNoResponders }, func(w Wait) {
			if w.Attempt == 5 {
				cancel()
			}
		})
		if !errors.Is(err, nats.ErrNoResponders) || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "gave up after 5 attempts") {
			t.Errorf("err = %v, want the last error and the context's", err)
		}
	})
}

// TestConnectFailsAtOnceOnConfiguration: a NATS server that refuses the
// client is a configuration error, never waited out.
func TestConnectFailsAtOnceOnConfiguration(t *testing.T) {
	s := startConfigured(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "sluice", Password: "pw"},
			// A user without Sluice's permissions: no JetStream API.
			{Username: "narrow", Password: "pw", Permissions: &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{"sluice.>"}}}},
		}
	})
	tests := []struct {
		name       string
		user, pass string
		want       string
		is         error
	}{
		{"wrong password", "sluice", "wrong", "Authorization Violation", nats.ErrAuthorization},
		{"no JetStream API permission", "narrow", "pw", "refused this client the JetStream API", ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := Connect(ctx, ConnConfig{URLs: []string{s.ClientURL()}, User: tt.user, Password: tt.pass}, WithLogger(quietLogger()))
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %v saying %q", err, tt.is, tt.want)
			}
			if ctx.Err() != nil {
				t.Errorf("Connect retried until its context ended: %v", err)
			}
		})
	}
}

func TestProvisionOfReplicasOnAServerNotClusteredIsAConfigurationError(t *testing.T) {
	s := startConfigured(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, ConnConfig{URLs: []string{s.ClientURL()}}, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Provision(ctx, BusConfig{Replicas: 3})
	if !errors.Is(err, ErrInvalidConfig) || Unavailable(err) || !strings.Contains(err.Error(), "--bus-replicas 3 needs a JetStream cluster of at least 3 servers") {
		t.Errorf("err = %v, want a configuration error naming --bus-replicas", err)
	}
}

// TestPublishRetriesADuplicateStillInProcess: a publish answered "duplicate
// message id is in process" (an earlier attempt with the same id is being
// replicated while the stream's leader changes) may yet be stored, so it is
// retried with the same id rather than reported failed; before issue 21 a
// promote given while a node of the cluster was frozen failed that way and
// was never stored.
func TestPublishRetriesADuplicateStillInProcess(t *testing.T) {
	inProcess := &jetstream.APIError{Code: 409, ErrorCode: errDuplicateInProcess, Description: "duplicate message id is in process"}
	if !ambiguous(fmt.Errorf("nats: %w", inProcess)) {
		t.Errorf("%v is not retried", inProcess)
	}
	if other := (&jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence"}); ambiguous(other) {
		t.Errorf("%v is retried; it is a refusal", other)
	}
}

// TestAWriteRefusedForLackOfRoomIsWrittenAgain: a leader whose store is
// past its limit refuses a write with "insufficient resources" (10023),
// stores nothing and steps down, so the write is made again (a publish
// with the same id, a record's compare-and-swap as it was) for the next
// leader; before, a promote sent then failed. The clustered case is
// test/chaos TestPublishOutlivesALeaderPastItsStoreLimit.
func TestAWriteRefusedForLackOfRoomIsWrittenAgain(t *testing.T) {
	full := &jetstream.APIError{Code: 503, ErrorCode: errInsufficientResources, Description: "insufficient resources"}
	if !NoLeader(fmt.Errorf("nats: %w", full)) {
		t.Errorf("%v is not a write that no leader took", full)
	}
	if !ambiguous(fmt.Errorf("nats: %w", full)) {
		t.Errorf("%v is not retried", full)
	}
	if other := (&jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence"}); NoLeader(other) {
		t.Errorf("%v is taken for no leader; it is a refusal", other)
	}
}
