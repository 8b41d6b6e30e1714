package main

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// A command that no stream leader takes (here no stream takes it at all;
// in a cluster without a quorum, no stream has a leader) fails within
// --timeout, with or without --no-wait, saying it will not act and why.
// --no-wait used to retry the publish for as long as the process lived.
func TestCommandNoLeaderTakesSaysItWillNotAct(t *testing.T) {
	url := eventstest.StartServer(t).ClientURL()
	c := eventstest.Connect(t, url)
	if err := c.JetStream().DeleteStream(context.Background(), events.StreamCommands); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"promote", "web", "--no-wait", "--timeout", "1s"}, {"abort", "web", "--timeout", "1s"}} {
		code, out := sluice(t, url, args...)
		if code != exitFail || !strings.Contains(out, "default/web: "+args[0]+" will not act: ") || !strings.Contains(out, "not stored") || !strings.Contains(out, "no JetStream leader") {
			t.Errorf("sluice %s: exit %d, want 1 saying it will not act for want of a JetStream leader:\n%s", strings.Join(args, " "), code, out)
		}
	}
}

// A command the commands stream refuses (here: full, with its discard
// policy set to new) is not stored: the CLI says it will not act and why,
// rather than that it may still be stored.
func TestCommandTheStreamRefusesSaysItWillNotAct(t *testing.T) {
	url := eventstest.StartServer(t).ClientURL()
	c := eventstest.Connect(t, url)
	ctx := context.Background()
	stream, err := c.JetStream().Stream(ctx, events.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardNew
	if _, err := c.JetStream().UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if code, out := sluice(t, url, "promote", "web", "--no-wait"); code != 0 {
		t.Fatalf("first promote: exit %d:\n%s", code, out)
	}
	code, out := sluice(t, url, "abort", "web", "--no-wait")
	if code != exitFail || !strings.Contains(out, "default/web: abort will not act: ") || !strings.Contains(out, "refused by the bus") ||
		!strings.Contains(out, "maximum messages exceeded") || strings.Contains(out, "may still be stored") {
		t.Errorf("sluice abort to a full stream: exit %d, want 1 saying it will not act as the stream refused it:\n%s", code, out)
	}
}
