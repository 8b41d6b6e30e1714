// Package eventstest gives tests of packages built on events a real bus: an
// embedded NATS server with JetStream on disk and clients connected to it,
// cleaned up with the test.
package eventstest

import (
	"context"
	"fmt"
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

// StoredMessages is every message of every stream on the bus (the SLUICE_*
// streams and the key-value buckets, which are streams too), by stream,
// each as one text of its subject, headers and data: what a test searches
// for something that must never be stored, such as a secret.
func StoredMessages(t testing.TB, c *events.Client) map[string][]string {
	t.Helper()
	// Reading a long test's streams message by message takes a while on a
	// loaded machine; a minute bounds a bus that stopped answering.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := c.JetStream()
	out := map[string][]string{}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted
			}
			out[name] = append(out[name], fmt.Sprintf("%s %v %s", m.Subject, m.Header, m.Data))
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
