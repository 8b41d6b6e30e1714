package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devtest"
	"github.com/sluicehq/sluice/services/notifier/chat"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// slackPost is one chat.postMessage or chat.update the notifier made, or
// one answer it posted to a response_url (Method "respond").
type slackPost struct {
	Method, Channel, Text, Blocks, Thread, TS string
}

// slackWorkspace is the slice of Slack's Web API the notifier uses
// (chat.postMessage, chat.update with a bot token) and the response_url
// endpoint Slack gives each command, over real HTTP.
type slackWorkspace struct {
	t     *testing.T
	srv   *httptest.Server
	token string

	mu    sync.Mutex
	posts []slackPost
	seq   int
}

func newSlackWorkspace(t *testing.T, token string) *slackWorkspace {
	s := &slackWorkspace{t: t, token: token}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/{method}", s.api)
	mux.HandleFunc("POST /respond/{id}", s.respond)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *slackWorkspace) api(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tok := r.Form.Get("token")
	if tok == "" {
		tok = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	w.Header().Set("Content-Type", "application/json")
	if tok != s.token {
		fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := slackPost{Method: r.PathValue("method"), Channel: r.Form.Get("channel"), Text: r.Form.Get("text"),
		Blocks: r.Form.Get("blocks"), Thread: r.Form.Get("thread_ts"), TS: r.Form.Get("ts")}
	if p.Method == "chat.postMessage" {
		s.seq++
		p.TS = fmt.Sprintf("1700000000.%06d", s.seq)
	}
	s.posts = append(s.posts, p)
	json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": p.Channel, "ts": p.TS})
}

func (s *slackWorkspace) respond(w http.ResponseWriter, r *http.Request) {
	var m struct {
		Text   string `json:"text"`
		Thread string `json:"thread_ts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.posts = append(s.posts, slackPost{Method: "respond", Channel: r.PathValue("id"), Text: m.Text, Thread: m.Thread})
	s.mu.Unlock()
}

// waitPost waits for a post that match accepts and returns it.
func (s *slackWorkspace) waitPost(what string, match func(slackPost) bool) slackPost {
	s.t.Helper()
	var got slackPost
	eventually(s.t, what, 90*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range s.posts {
			if match(p) {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

func (s *slackWorkspace) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, p := range s.posts {
		fmt.Fprintf(&b, "%+v\n", p)
	}
	return b.String()
}

// chatClient sends Slack's requests to the notifier, signed as Slack signs
// them (v0) with secret.
type chatClient struct {
	t              *testing.T
	base, secret   string
	responses      string // the workspace's response_url prefix
	responseNumber int
}

// send posts form to path, signed unless forge, and returns the status
// and the body.
func (c *chatClient) send(path string, form url.Values, forge bool) (int, string) {
	c.t.Helper()
	body := form.Encode()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	secret := c.secret
	if forge {
		secret = "not-the-signing-secret"
	}
	return c.sendSigned(path, body, ts, "v0="+hex.EncodeToString(chat.SignSlack(secret, ts, []byte(body))))
}

func (c *chatClient) sendSigned(path, body, ts, sig string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// command is a /sluice slash command from user.
func (c *chatClient) command(user, text string) url.Values {
	c.responseNumber++
	return url.Values{"command": {"/sluice"}, "text": {text}, "user_id": {user}, "user_name": {user},
		"channel_id": {"deploys"}, "team_id": {"T1"}, "response_url": {fmt.Sprintf("%s/respond/%d", c.responses, c.responseNumber)}}
}

// button is a press of a notification's button (action) by user.
func (c *chatClient) button(user, action, value, channel, ts string) url.Values {
	c.responseNumber++
	payload, err := json.Marshal(map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": user},
		"channel":      map[string]any{"id": channel},
		"container":    map[string]any{"type": "message", "channel_id": channel, "message_ts": ts},
		"message":      map[string]any{"ts": ts},
		"response_url": fmt.Sprintf("%s/respond/%d", c.responses, c.responseNumber),
		"actions":      []map[string]any{{"type": "button", "action_id": action, "value": value, "block_id": "sluice"}},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return url.Values{"payload": {string(payload)}}
}

const chatOpsConfig = `apiVersion: v1
kind: ConfigMap
metadata:
  name: argo-rollouts-notification-configmap
data:
  service.slack: |
    token: $slack-token
    apiURL: SLACK/api/
    buttons: true
  template.rollout-paused: |
    message: Rollout {{.rollout.metadata.name}} paused at revision {{index .rollout.metadata.annotations "rollout.argoproj.io/revision"}}.
  template.rollout-completed: |
    message: Rollout {{.rollout.metadata.name}} has been completed at revision {{index .rollout.metadata.annotations "rollout.argoproj.io/revision"}}.
  template.rollout-aborted: |
    message: Rollout {{.rollout.metadata.name}} has been aborted.
  trigger.on-rollout-paused: |
    - send: [rollout-paused]
  trigger.on-rollout-completed: |
    - send: [rollout-completed]
  trigger.on-rollout-aborted: |
    - send: [rollout-aborted]
  commands.slack: |
    signingSecret: $slack-signing-secret
    token: $slack-token
    apiURL: SLACK/api/
    roles:
    - role: operator
      subjects: ["slack:UOPS"]
      namespaces: [default]
    - role: viewer
      subjects: ["slack:UVIEW"]
      namespaces: ["*"]
---
apiVersion: v1
kind: Secret
metadata:
  name: argo-rollouts-notification-secret
stringData:
  slack-token: xoxb-e2e-token
  slack-signing-secret: e2e-signing-secret
`

// subscribed is rollout "web" subscribed to the paused, completed and
// aborted notifications in Slack channel deploys, by annotation as with
// Argo Rollouts.
func subscribed(listen, version string) string {
	m := rollout("web", listen, version, 0, 2, routed("- setWeight: 50\n- pause: {}\n"))
	return strings.Replace(m, "  annotations:\n", `  annotations:
    notifications.argoproj.io/subscribe.on-rollout-paused.slack: deploys
    notifications.argoproj.io/subscribe.on-rollout-completed.slack: deploys
    notifications.argoproj.io/subscribe.on-rollout-aborted.slack: deploys
`, 1)
}

// TestChatOpsOnSluiceDev: sluice dev with --notifications posts a paused
// rollout to Slack with Promote and Abort buttons; a signed /sluice
// promote from an operator takes it to completion and a button press
// aborts the next update, each answered in Slack; forged, replayed and
// unauthorized requests change nothing, and the unauthorized one is
// recorded in the rollout's history with the Slack user as actor.
func TestChatOpsOnSluiceDev(t *testing.T) {
	slack := newSlackWorkspace(t, "xoxb-e2e-token")
	cfgPath := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(chatOpsConfig, "SLACK", slack.srv.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	chatAddr := freeAddr(t)
	d := &dev{t: t}
	d.Dev = devtest.New(t, devtest.Options{Args: []string{"--notifications", cfgPath, "--notifications-listen", chatAddr}})
	d.start()
	c := &chatClient{t: t, base: "http://" + chatAddr, secret: "e2e-signing-secret", responses: slack.srv.URL}
	listen := freeAddr(t)

	if code, out := d.apply(subscribed(listen, "v1"), "--wait", "--timeout", "2m"); code != 0 {
		t.Fatalf("v1: exit %d\n%s", code, out)
	}
	slack.waitPost("the completion of revision 1 in #deploys", func(p slackPost) bool {
		return p.Method == "chat.postMessage" && p.Channel == "deploys" && strings.Contains(p.Text, "Rollout web has been completed at revision 1.")
	})
	if code, out := d.apply(subscribed(listen, "v2")); code != 0 {
		t.Fatalf("v2: exit %d\n%s", code, out)
	}
	paused := slack.waitPost("revision 2 paused in #deploys, with Promote and Abort buttons", func(p slackPost) bool {
		return p.Method == "chat.postMessage" && strings.Contains(p.Blocks, "Rollout web paused at revision 2.")
	})
	for _, action := range []string{notify.ActionPromote, notify.ActionAbort} {
		if !strings.Contains(paused.Blocks, action) || !strings.Contains(paused.Blocks, "default/web") {
			t.Fatalf("the paused message lacks the %s button for default/web: %s", action, paused.Blocks)
		}
	}

	// A forged signature, a replayed request and a viewer change nothing.
	if code, body := c.send("/slack/commands", c.command("UOPS", "promote default/web"), true); code != http.StatusUnauthorized {
		t.Fatalf("forged promote: %d %s, want 401", code, body)
	}
	viewer := c.command("UVIEW", "promote default/web")
	body := viewer.Encode()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := "v0=" + hex.EncodeToString(chat.SignSlack(c.secret, ts, []byte(body)))
	if code, answer := c.sendSigned("/slack/commands", body, ts, sig); code != http.StatusOK || !strings.Contains(answer, "Forbidden") || !strings.Contains(answer, "slack:UVIEW") {
		t.Fatalf("a viewer's promote: %d %s, want 200 with a Forbidden refusal naming slack:UVIEW", code, answer)
	}
	if code, answer := c.sendSigned("/slack/commands", body, ts, sig); code != http.StatusUnauthorized {
		t.Fatalf("the same signed request again: %d %s, want 401 (a replay)", code, answer)
	}
	_, hist := d.sluice("history", "web", "-o", "json")
	if !strings.Contains(hist, `"actor":"slack:UVIEW"`) || !strings.Contains(hist, "Forbidden") {
		t.Fatalf("history lacks the viewer's refused promote:\n%s", hist)
	}
	d.waitGet("web", 10*time.Second, "Paused", "Revision: 2 (stable 1)")

	// The operator's promote completes the update, answered in Slack.
	if code, answer := c.send("/slack/commands", c.command("UOPS", "promote default/web"), false); code != http.StatusOK {
		t.Fatalf("operator's promote: %d %s", code, answer)
	}
	slack.waitPost("the promote's outcome on its response_url", func(p slackPost) bool {
		return p.Method == "respond" && strings.Contains(p.Text, "default/web") && strings.Contains(p.Text, "promote")
	})
	slack.waitPost("the completion of revision 2 in #deploys", func(p slackPost) bool {
		return p.Method == "chat.postMessage" && strings.Contains(p.Text+p.Blocks, "Rollout web has been completed at revision 2.")
	})
	d.waitGet("web", 30*time.Second, "Healthy", "Revision: 2")

	// The next update is aborted with the Abort button of its paused
	// message; the outcome goes into that message's thread.
	if code, out := d.apply(subscribed(listen, "v3")); code != 0 {
		t.Fatalf("v3: exit %d\n%s", code, out)
	}
	paused = slack.waitPost("revision 3 paused in #deploys", func(p slackPost) bool {
		return p.Method == "chat.postMessage" && strings.Contains(p.Blocks, "Rollout web paused at revision 3.")
	})
	if code, answer := c.send("/slack/interactions", c.button("UOPS", notify.ActionAbort, "default/web", "deploys", paused.TS), false); code != http.StatusOK {
		t.Fatalf("abort button: %d %s", code, answer)
	}
	slack.waitPost("the abort's outcome in the paused message's thread", func(p slackPost) bool {
		return p.Thread == paused.TS && strings.Contains(p.Text, "abort")
	})
	slack.waitPost("the abort in #deploys", func(p slackPost) bool {
		return p.Method == "chat.postMessage" && strings.Contains(p.Text+p.Blocks, "Rollout web has been aborted.")
	})
	_, hist = d.sluice("history", "web", "-o", "json")
	if !strings.Contains(hist, `"actor":"slack:UOPS"`) {
		t.Fatalf("history lacks the operator's commands:\n%s\nslack:\n%s", hist, slack.dump())
	}
}
