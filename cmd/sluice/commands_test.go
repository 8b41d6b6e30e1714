package main

import (
	"context"
	"strings"
	"testing"

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
