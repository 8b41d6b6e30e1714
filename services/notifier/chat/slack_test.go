package chat

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

var web = events.Ref{Namespace: "shop", Name: "web"}

// An operator promotes a paused rollout with the slash command: the
// answer comes at once, the outcome on response_url, and the rollout
// completes; status shows it.
func TestSlashCommandPromotesToCompletion(t *testing.T) {
	r := startRig(t, "")
	r.paused(web)
	f := r.follow(web)

	code, ack, id := r.slash("UOP", "promote shop/web")
	if code != http.StatusOK || ack != "promoting shop/web ..." {
		t.Fatalf("acknowledgement: %d %q", code, ack)
	}
	out := r.api.response(t, id)
	if text, _ := out["text"].(string); !strings.HasPrefix(text, "✅ shop/web: promote → ") || out["response_type"] != "in_channel" {
		t.Errorf("outcome on response_url: %v", out)
	}
	ev := r.next(f)
	if got := events.Extension(ev, events.ExtActor); got != "slack:UOP" {
		t.Errorf("the answer's actor %q, want slack:UOP (%s)", got, ev.Type())
	}
	r.waitStatus(web, 2, events.PhaseHealthy)

	code, ack, _ = r.slash("UOP", "status shop/web")
	if code != http.StatusOK || !strings.HasPrefix(ack, "shop/web: Healthy, revision 2 (stable 2)") {
		t.Errorf("status: %d %q", code, ack)
	}
	if n := r.commands("slack", "promote", OutcomeApplied); n != 1 {
		t.Errorf("sluice_chat_commands_total{promote,applied} = %v", n)
	}
}

// A promote of a rollout that is not paused is refused by the
// orchestrator: the person sees the code and the reason.
func TestSlashCommandRefusedByTheOrchestrator(t *testing.T) {
	r := startRig(t, "")
	r.sys.Request(web, "registry.example/web:1")
	r.waitStatus(web, 1, events.PhaseHealthy)

	_, _, id := r.slash("UOP", "promote shop/web")
	text, _ := r.api.response(t, id)["text"].(string)
	if !strings.HasPrefix(text, "❌ promote shop/web refused (NotApplicable): ") {
		t.Errorf("outcome %q, want a NotApplicable refusal", text)
	}

	_, text, _ = r.slash("UOP", "status shop/nope")
	if text != "❔ no rollout shop/nope" {
		t.Errorf("status of a missing rollout: %q", text)
	}
	for _, in := range []string{"deploy shop/web", "promote", "promote --force shop/web", "abort Shop/Web"} {
		code, text, _ := r.slash("UOP", in)
		if code != http.StatusOK || !strings.Contains(text, "Usage: /sluice status|promote") {
			t.Errorf("%q: %d %q, want the usage", in, code, text)
		}
	}
}

// The Abort button on a notification: the outcome is posted in the
// message's thread with the bot token (chat.postMessage through
// slack-go), and the rollout is aborted.
func TestButtonAbortsInTheThread(t *testing.T) {
	r := startRig(t, botToken)
	r.paused(web)

	if code, _ := r.press("UOP", notify.ActionAbort, "shop/web"); code != http.StatusOK {
		t.Fatalf("button press: %d", code)
	}
	msg := r.api.message(t, 0)
	if msg.Get("channel") != "C1" || msg.Get("thread_ts") != "1700000000.000100" {
		t.Errorf("posted in %q thread %q, want C1's message 1700000000.000100", msg.Get("channel"), msg.Get("thread_ts"))
	}
	if text := msg.Get("text"); !strings.HasPrefix(text, "<@UOP>: ✅ shop/web: abort → rollout.aborted") {
		t.Errorf("thread reply %q", text)
	}
	poll := r.waitStatus(web, 2, events.PhaseDegraded)
	if !poll.Aborted || poll.CanaryWeight != 0 {
		t.Errorf("after the abort: %+v", poll)
	}
}

// Without a bot token, a button's outcome goes to response_url, in the
// message's thread; a Promote button promotes.
func TestButtonPromotesThroughResponseURL(t *testing.T) {
	r := startRig(t, "")
	r.paused(web)
	_, id := r.press("UOP", notify.ActionPromote, "shop/web")
	out := r.api.response(t, id)
	if text, _ := out["text"].(string); !strings.HasPrefix(text, "<@UOP>: ✅ shop/web: promote → ") || out["thread_ts"] != "1700000000.000100" {
		t.Errorf("outcome on response_url: %v", out)
	}
	r.waitStatus(web, 2, events.PhaseHealthy)
}

// Forged and stale requests are refused with 401 and publish nothing; a
// user without a role and a viewer who tries to abort are refused with
// Forbidden, recorded on the rollout's status subject with their actor.
func TestSlackRefusals(t *testing.T) {
	r := startRig(t, botToken)
	r.paused(web)
	f := r.follow(web)

	form := url.Values{"command": {"/sluice"}, "text": {"promote --full shop/web"}, "user_id": {"UOP"}, "response_url": {r.api.URL + "/respond/forged"}}
	code, body, forgedSig := r.post("/slack/commands", form, "not-the-secret", r.now)
	if code != http.StatusUnauthorized {
		t.Errorf("forged signature: %d %s", code, body)
	}
	code, body, staleSig := r.post("/slack/commands", form, signingSecret, r.now.Add(-6*time.Minute))
	if code != http.StatusUnauthorized {
		t.Errorf("stale timestamp (a replay): %d %s", code, body)
	}
	code, body, _ = r.post("/slack/interactions", url.Values{"payload": {`{"type":"block_actions"}`}}, signingSecret, r.now.Add(6*time.Minute))
	if code != http.StatusUnauthorized {
		t.Errorf("timestamp from the future: %d %s", code, body)
	}
	// A request accepted once is refused when sent again within the
	// window.
	help := url.Values{"command": {"/sluice"}, "text": {"help"}, "user_id": {"UOP"}}
	if code, body, _ = r.post("/slack/commands", help, signingSecret, r.now); code != http.StatusOK {
		t.Errorf("help: %d %s", code, body)
	}
	if code, body, _ = r.post("/slack/commands", help, signingSecret, r.now); code != http.StatusUnauthorized {
		t.Errorf("the same request again: %d %s", code, body)
	}

	// The orchestrator answers a rollout's commands in order: had the
	// forged or the stale promote been published, its answer would come
	// before the answer to this retry.
	_, _, id := r.slash("UOP", "retry shop/web")
	if text, _ := r.api.response(t, id)["text"].(string); !strings.HasPrefix(text, "❌ retry shop/web refused (NotApplicable)") {
		t.Errorf("retry of a rollout that is not aborted: %q", text)
	}
	assertRefused(t, r.next(f), "slack:UOP", events.TypeRolloutRetry, events.RefusedNotApplicable)

	// A user with no role.
	code, text, _ := r.slash("UNOBODY", "promote shop/web")
	if code != http.StatusOK || !strings.HasPrefix(text, "🚫 promote shop/web refused (Forbidden): slack:UNOBODY may not promote in namespace shop (needs the operator role)") {
		t.Errorf("unknown user: %d %q", code, text)
	}
	assertForbidden(t, r.next(f), "slack:UNOBODY", events.TypeRolloutPromote)

	// A viewer presses Abort.
	_, id = r.press("UVIEW", notify.ActionAbort, "shop/web")
	out := r.api.response(t, id)
	if text, _ := out["text"].(string); !strings.Contains(text, "refused (Forbidden): slack:UVIEW may not abort") || out["response_type"] != "ephemeral" {
		t.Errorf("viewer's abort answer: %v", out)
	}
	assertForbidden(t, r.next(f), "slack:UVIEW", events.TypeRolloutAbort)
	// A viewer may read.
	if _, text, _ := r.slash("UVIEW", "status shop/web"); !strings.HasPrefix(text, "shop/web: Paused, revision 2 (stable 1), step 2 of 4") {
		t.Errorf("viewer's status: %q", text)
	}
	// And nothing changed the rollout.
	if s := r.waitStatus(web, 2, events.PhasePaused); s.Aborted {
		t.Errorf("aborted by a refused command: %+v", s)
	}
	if n := r.commands("slack", "none", OutcomeUnauthenticated); n != 4 {
		t.Errorf("unauthenticated requests counted %v, want 4", n)
	}
	if n := r.commands("slack", "abort", OutcomeForbidden); n != 1 {
		t.Errorf("forbidden aborts counted %v, want 1", n)
	}
	logged := r.logs.String()
	if !strings.Contains(logged, "slack request refused") || !strings.Contains(logged, "a replay") {
		t.Errorf("the refusals are not logged:\n%s", logged)
	}
	r.logs.NoSecrets(t, hexOf(forgedSig), hexOf(staleSig))
}

// assertForbidden checks ev is the chat's record of a Forbidden command.
func assertForbidden(t *testing.T, ev events.Event, actor, command string) {
	t.Helper()
	d := assertRefused(t, ev, actor, command, events.RefusedForbidden)
	if ev.Source() != Source || d.Status.Phase != events.PhasePaused {
		t.Errorf("refusal from %q with status %+v", ev.Source(), d.Status)
	}
}

// assertRefused checks ev refuses command sent by actor with code.
func assertRefused(t *testing.T, ev events.Event, actor, command, code string) events.StatusData {
	t.Helper()
	var d events.StatusData
	if err := events.DecodeData(ev, &d); err != nil {
		t.Fatal(err)
	}
	if ev.Type() != events.TypeRolloutRefused || d.Command == nil || d.Command.Code != code || d.Command.Type != command {
		t.Fatalf("want a %s refusal of %s, got %s %+v", code, command, ev.Type(), d.Command)
	}
	if got := events.Extension(ev, events.ExtActor); got != actor {
		t.Errorf("the refusal's actor %q, want %q", got, actor)
	}
	return d
}
