// Package eventstest gives tests of packages built on events a real bus: an
// embedded NATS server with JetStream on disk and clients connected to it,
// cleaned up with the test.
package eventstest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// Wait bounds the set-up steps; healthy runs take milliseconds.
const Wait = 20 * time.Second

// Quiet is a logger that discards everything.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// StartServer starts an embedded server in a temporary directory.
func StartServer(t testing.TB) *embedded.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Connect connects a quiet client to url and provisions Sluice's streams.
func Connect(t testing.TB, url string) *events.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{url}, Name: t.Name()}, events.WithLogger(Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Provision(ctx, events.BusConfig{}); err != nil {
		t.Fatal(err)
	}
	return c
}
