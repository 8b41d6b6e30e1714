package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// connectTimeout bounds how long a CLI command waits for NATS: a person is
// waiting, and a server that does not answer a local dial within it is not
// running.
const connectTimeout = 2 * time.Second

// connect dials NATS for one CLI command and checks that the server holds
// Sluice's streams. The CLI keeps the client's logs quiet: errors reach the
// user as the command's own message, saying what to do.
func connect(ctx context.Context, cfg events.ConnConfig) (*events.Client, error) {
	cfg.Name = "sluice-cli"
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	client, err := events.Connect(cctx, cfg, events.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	switch {
	case errors.Is(err, events.ErrInvalidConfig):
		return nil, usageError{err}
	case errors.Is(err, events.ErrJetStreamUnavailable) && ctx.Err() == nil:
		return nil, err
	case err != nil && ctx.Err() == nil:
		// Connect's error repeats the address; the cause is what it wraps.
		if cause := errors.Unwrap(err); cause != nil {
			err = cause
		}
		return nil, fmt.Errorf("cannot reach NATS at %s (%w): is `sluice dev` running?", cfg.Address(), err)
	case err != nil:
		return nil, err
	}
	if _, err := client.JetStream().Stream(cctx, events.StreamStatus); err != nil {
		client.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("NATS at %s has no Sluice streams: start `sluice dev` or a Sluice service against it once", cfg.Address())
		}
		if events.Unavailable(err) {
			return nil, fmt.Errorf("NATS at %s answered, but its JetStream did not (%w): its streams may have no JetStream leader, as when a NATS cluster has lost its quorum", cfg.Address(), err)
		}
		return nil, fmt.Errorf("NATS at %s: %w", cfg.Address(), err)
	}
	return client, nil
}
