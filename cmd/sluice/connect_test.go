package main

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func TestConnectErrorsSayWhatToDo(t *testing.T) {
	bare := eventstest.StartServer(t).ClientURL()
	tests := []struct {
		name string
		url  string
		code int
		want string
	}{
		{"malformed URL", "bogus url", exitUsage, `--nats-url "bogus url": not a URL`},
		{"nothing listening", "nats://" + freeAddr(t), exitFail, "is `sluice dev` running?"},
		{"no Sluice streams", bare, exitFail, "NATS at " + bare + " has no Sluice streams: start `sluice dev` or a Sluice service against it once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, args := range [][]string{{"list"}, {"get", "web"}, {"events"}, {"history", "web"}} {
				code, out := sluice(t, tt.url, args...)
				if code != tt.code || !strings.Contains(out, tt.want) {
					t.Errorf("sluice %s: exit %d, want %d and %q:\n%s", strings.Join(args, " "), code, tt.code, tt.want, out)
				}
			}
		})
	}
}
