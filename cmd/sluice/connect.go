package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// connectTimeout bounds how long a CLI command waits for NATS.
const connectTimeout = 10 * time.Second

// connect dials NATS for one CLI command. The CLI keeps the client's logs
// quiet: errors reach the user as the command's own message.
func connect(ctx context.Context, cfg events.ConnConfig) (*events.Client, error) {
	cfg.Name = "sluice-cli"
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return events.Connect(cctx, cfg, events.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
}
