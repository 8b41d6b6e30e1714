package events

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// waitFor bounds every wait in the transport tests. It is a failure guard,
// not a timing assertion: healthy runs finish far sooner.
const waitFor = 20 * time.Second

func startServer(t *testing.T) *embedded.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func connect(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := Connect(ctx, ConnConfig{URLs: []string{url}, Name: t.Name()}, append([]Option{WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// provisioned connects and provisions the streams on file storage.
func provisioned(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	c := connect(t, url, opts...)
	if err := c.Provision(context.Background(), BusConfig{}); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustEvent(t *testing.T, typ, subject string, data any) Event {
	t.Helper()
	ev, err := New("/sluice/test", typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func publish(t *testing.T, c *Client, subject string, ev Event) PublishResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := c.Publish(ctx, subject, ev)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func consume(t *testing.T, c *Client, cfg ConsumerConfig, h Handler) *Subscription {
	t.Helper()
	sub, err := c.Consume(context.Background(), cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = sub.Stop(ctx)
	})
	return sub
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// deadLetters reads every message of the dead-letter stream.
func deadLetters(t *testing.T, c *Client) []DeadLetter {
	t.Helper()
	ctx := context.Background()
	s, err := c.JetStream().Stream(ctx, StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []DeadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		dl, err := ParseDeadLetter(raw.Subject, raw.Data, raw.Header)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}
