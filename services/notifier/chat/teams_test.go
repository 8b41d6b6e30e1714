package chat

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// A Teams mention promotes a paused rollout and replies with the answer;
// a forged HMAC is refused; a viewer's abort is Forbidden and recorded.
func TestTeamsCommands(t *testing.T) {
	r := startRig(t, "")
	r.paused(web)
	key := mustKey(t)
	f := r.follow(web)

	if code, body := r.teamsSay("aad-op", "promote shop/web", []byte("another key")); code != http.StatusUnauthorized {
		t.Errorf("forged HMAC: %d %s", code, body)
	}
	if code, body := r.teamsSend("aad-op", "promote shop/web", key, r.now.Add(-6*time.Minute)); code != http.StatusUnauthorized {
		t.Errorf("an old request: %d %s", code, body)
	}
	// Commands are answered in order: had the forged promote been
	// published, its answer would come before this retry's.
	code, text := r.teamsSay("aad-op", "retry shop/web", key)
	if code != http.StatusOK || !strings.HasPrefix(text, "❌ retry shop/web refused (NotApplicable)") {
		t.Errorf("operator's retry: %d %q", code, text)
	}
	assertRefused(t, r.next(f), "teams:aad-op", events.TypeRolloutRetry, events.RefusedNotApplicable)

	// The same request again is a replay.
	retry := r.activity("aad-op", "retry shop/web", r.now)
	if code, _ := r.teamsPost(retry, key); code != http.StatusOK {
		t.Errorf("retry: %d", code)
	}
	assertRefused(t, r.next(f), "teams:aad-op", events.TypeRolloutRetry, events.RefusedNotApplicable)
	if code, body := r.teamsPost(retry, key); code != http.StatusUnauthorized {
		t.Errorf("a replay: %d %s", code, body)
	}

	code, text = r.teamsSay("aad-view", "abort shop/web", key)
	if code != http.StatusOK || !strings.HasPrefix(text, "🚫 abort shop/web refused (Forbidden): teams:aad-view may not abort in namespace shop") {
		t.Errorf("viewer's abort: %d %q", code, text)
	}
	assertForbidden(t, r.next(f), "teams:aad-view", events.TypeRolloutAbort)

	code, text = r.teamsSay("aad-op", "promote shop/web", key)
	if code != http.StatusOK || !strings.HasPrefix(text, "✅ shop/web: promote → ") {
		t.Errorf("operator's promote: %d %q", code, text)
	}
	if got := events.Extension(r.next(f), events.ExtActor); got != "teams:aad-op" {
		t.Errorf("the promote's answer has actor %q", got)
	}
	r.waitStatus(web, 2, events.PhaseHealthy)
	if _, text := r.teamsSay("aad-view", "status shop/web", key); !strings.HasPrefix(text, "shop/web: Healthy, revision 2") {
		t.Errorf("status: %q", text)
	}
	if _, text := r.teamsSay("aad-op", "", key); !strings.HasPrefix(text, "Usage: @Sluice status|promote") {
		t.Errorf("a bare mention: %q", text)
	}
	if n := r.commands("teams", "none", OutcomeUnauthenticated); n != 3 {
		t.Errorf("unauthenticated Teams requests counted %v", n)
	}
}

func mustKey(t *testing.T) []byte {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(teamsToken)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestCommandText(t *testing.T) {
	for in, want := range map[string]string{
		"<at>Sluice</at> promote shop/web":                     "promote shop/web",
		"<at>Sluice</at>&nbsp;promote --full shop/web\n":       "promote --full shop/web",
		"<div><at>Sluice Bot</at> abort <b>shop/web</b></div>": "abort  shop/web",
	} {
		if got := commandText(in); got != want {
			t.Errorf("commandText(%q) = %q, want %q", in, got, want)
		}
	}
}
