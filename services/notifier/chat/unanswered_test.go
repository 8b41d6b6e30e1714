package chat

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// Without an orchestrator no command is answered: Slack's outcome says so
// on response_url, and Teams' reply says the command was sent.
func TestUnansweredWithoutAnOrchestrator(t *testing.T) {
	srv := eventstest.StartServer(t)
	sys := &systemtest.System{T: t, URL: srv.ClientURL(), Bus: eventstest.Connect(t, srv.ClientURL())}
	r := &rig{t: t, sys: sys, api: startFakeSlack(t), logs: &systemtest.Logs{}, reg: prometheus.NewRegistry(), now: time.Now()}
	deps := Deps{
		Client:         sys.Connect(),
		CommandTimeout: 200 * time.Millisecond,
		Logger:         r.logs.Logger(slog.LevelInfo),
		Metrics:        r.reg,
	}
	r.serve(deps,
		"signingSecret: "+signingSecret+"\nroles:"+roles("slack", "UOP", "UVIEW"),
		"securityToken: "+teamsToken+"\nreplyTimeout: 200ms\nroles:"+roles("teams", "aad-op", "aad-view"),
		nil)

	_, _, id := r.slash("UOP", "abort shop/web")
	if text, _ := r.api.response(t, id)["text"].(string); !strings.HasPrefix(text, "⏳ abort shop/web sent (event ") || !strings.Contains(text, "no answer within 200ms") {
		t.Errorf("Slack: %q", text)
	}
	key := mustKey(t)
	if _, text := r.teamsSay("aad-op", "abort shop/web", key); !strings.HasPrefix(text, "⏳ abort shop/web sent (event ") || !strings.Contains(text, "this channel's notifications") {
		t.Errorf("Teams: %q", text)
	}
	if _, text, _ := r.slash("UOP", "status shop/web"); !strings.HasPrefix(text, "⚠️ status shop/web failed: the rollouts cannot be read") {
		t.Errorf("status without an orchestrator: %q", text)
	}
	if n := r.commands("teams", "abort", OutcomeUnanswered); n != 1 {
		t.Errorf("unanswered Teams aborts counted %v", n)
	}
}
