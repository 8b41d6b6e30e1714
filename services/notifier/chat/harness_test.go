package chat

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/services/orchestrator"
)

const (
	signingSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	botToken      = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
	teamsToken    = "c2VjcmV0LXRlYW1zLWtleS0xMjM0NTY3ODkw" // base64 of a key
)

// fakeSlack is Slack's side: the response_url endpoints and the slice of
// the Web API the chat uses (chat.postMessage).
type fakeSlack struct {
	*httptest.Server
	mu        sync.Mutex
	responses []slackPost // to response_url
	messages  []url.Values
}

type slackPost struct {
	Path string
	Body map[string]any
}

func startFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /respond/{id}", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.responses = append(f.responses, slackPost{Path: r.URL.Path, Body: body})
		f.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})
	// chat.postMessage as Slack documents it: a form with channel, text
	// and thread_ts; the bot token as a bearer token or the form's token.
	mux.HandleFunc("POST /api/chat.postMessage", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		token := r.PostForm.Get("token")
		if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			token = h
		}
		if token != botToken {
			_, _ = io.WriteString(w, `{"ok":false,"error":"invalid_auth"}`)
			return
		}
		f.mu.Lock()
		f.messages = append(f.messages, r.PostForm)
		f.mu.Unlock()
		fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":"1700000001.000200"}`, r.PostForm.Get("channel"))
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// response waits for the answer posted to response_url id.
func (f *fakeSlack) response(t *testing.T, id string) map[string]any {
	t.Helper()
	var got map[string]any
	poll.Until(t, "an answer on response_url "+id, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, p := range f.responses {
			if p.Path == "/respond/"+id {
				got = p.Body
				return nil
			}
		}
		return fmt.Errorf("%d answers to other URLs", len(f.responses))
	})
	return got
}

// message waits for the n-th chat.postMessage (from 0).
func (f *fakeSlack) message(t *testing.T, n int) url.Values {
	t.Helper()
	return systemtest.Nth(t, "chat.postMessage", &f.mu, &f.messages, n)
}

// rig is a real system with the chat's endpoints in front of it.
type rig struct {
	t      *testing.T
	sys    *systemtest.System
	slack  *httptest.Server
	teams  *httptest.Server
	api    *fakeSlack
	logs   *systemtest.Logs
	reg    *prometheus.Registry
	reader *orchestrator.Reader
	now    time.Time
	n      int
}

// rolesYAML gives CHAT:OP the operator role in shop, and CHAT:VIEW the
// viewer role everywhere.
const rolesYAML = `
- role: operator
  subjects: ["CHAT:OP"]
  namespaces: [shop]
- role: viewer
  subjects: ["CHAT:VIEW"]
  namespaces: ["*"]
`

func roles(chat, op, view string) string {
	return indent(strings.NewReplacer("CHAT:OP", chat+":"+op, "CHAT:VIEW", chat+":"+view).Replace(rolesYAML))
}

func toJSON(t *testing.T, y string) json.RawMessage {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// startRig starts a system, a fake Slack and the chat endpoints; token
// configures a bot token.
func startRig(t *testing.T, token string) *rig {
	t.Helper()
	r := &rig{t: t, sys: systemtest.Start(t), api: startFakeSlack(t), logs: &systemtest.Logs{}, reg: prometheus.NewRegistry()}
	r.now = time.Now()
	var err error
	r.reader, err = orchestrator.NewReader(t.Context(), r.sys.Bus)
	if err != nil {
		t.Fatal(err)
	}
	deps := Deps{
		Client:         r.sys.Connect(),
		CommandTimeout: eventstest.Wait,
		Logger:         r.logs.Logger(slog.LevelDebug),
		Metrics:        r.reg,
		Now:            func() time.Time { return r.now },
	}
	r.serve(deps,
		fmt.Sprintf("signingSecret: %s\ntoken: %q\napiURL: %s/api/\nroles:%s", signingSecret, token, r.api.URL, roles("slack", "UOP", "UVIEW")),
		fmt.Sprintf("securityToken: %s\nroles:%s", teamsToken, roles("teams", "aad-op", "aad-view")),
		// Teams' 4 s bound is for Teams' sake: a busy test machine may
		// answer slower, and a test must not hinge on it.
		func(tm *Teams) { tm.cfg.reply = eventstest.Wait })
	t.Cleanup(func() { r.logs.NoSecrets(t, signingSecret, botToken, teamsToken) })
	return r
}

// serve starts the Slack and Teams endpoints configured by slackYAML
// and teamsYAML on deps; tune, when not nil, adjusts Teams before it
// serves.
func (r *rig) serve(deps Deps, slackYAML, teamsYAML string, tune func(*Teams)) {
	t := r.t
	t.Helper()
	sc, err := ParseSlack(toJSON(t, slackYAML))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSlack(sc, deps)
	if err != nil {
		t.Fatal(err)
	}
	r.slack = httptest.NewServer(s.Routes())
	t.Cleanup(func() { r.slack.Close(); s.Close() })
	tc, err := ParseTeams(toJSON(t, teamsYAML))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := NewTeams(tc, deps)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(tm)
	}
	r.teams = httptest.NewServer(tm.Routes())
	t.Cleanup(r.teams.Close)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func indent(y string) string { return strings.ReplaceAll(y, "\n", "\n  ") }

// post sends body to the Slack endpoint path, signed as Slack signs it
// at ts with secret.
func (r *rig) post(path string, form url.Values, secret string, ts time.Time) (int, string, []byte) {
	r.t.Helper()
	body := []byte(form.Encode())
	stamp := strconv.FormatInt(ts.Unix(), 10)
	sig := SignSlack(secret, stamp, body)
	req, err := http.NewRequest("POST", r.slack.URL+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", stamp)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(sig))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), sig
}

// slash sends the slash command "/sluice <text>" from user, signed, and
// returns the immediate answer's text and the id of its response_url.
func (r *rig) slash(user, text string) (code int, answer, respondID string) {
	r.t.Helper()
	r.n++
	respondID = strconv.Itoa(r.n)
	form := url.Values{
		"command": {"/sluice"}, "text": {text}, "user_id": {user}, "user_name": {"someone"},
		"channel_id": {"C1"}, "team_id": {"T1"}, "response_url": {r.api.URL + "/respond/" + respondID},
	}
	code, body, _ := r.post("/slack/commands", form, signingSecret, r.now)
	if code == http.StatusOK {
		var a struct{ Text string }
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			r.t.Fatalf("slash command answer %q: %v", body, err)
		}
		body = a.Text
	}
	return code, body, respondID
}

// press presses the button actionID with value on a message at ts in
// channel C1, as user, signed.
func (r *rig) press(user, actionID, value string) (code int, respondID string) {
	r.t.Helper()
	r.n++
	respondID = strconv.Itoa(r.n)
	payload := map[string]any{
		"type":         "block_actions",
		"user":         map[string]any{"id": user, "name": "someone"},
		"channel":      map[string]any{"id": "C1", "name": "deploys"},
		"container":    map[string]any{"type": "message", "message_ts": "1700000000.000100", "channel_id": "C1"},
		"message":      map[string]any{"ts": "1700000000.000100", "text": "shop/web is paused"},
		"response_url": r.api.URL + "/respond/" + respondID,
		"actions":      []any{map[string]any{"action_id": actionID, "block_id": "b1", "type": "button", "value": value, "action_ts": "1700000002.1"}},
	}
	b, _ := json.Marshal(payload)
	code, _, _ = r.post("/slack/interactions", url.Values{"payload": {string(b)}}, signingSecret, r.now)
	return code, respondID
}

// teamsSay sends "<at>Sluice</at> text" from aad, signed with key, sent
// now.
func (r *rig) teamsSay(aad, text string, key []byte) (int, string) {
	r.t.Helper()
	return r.teamsSend(aad, text, key, r.now)
}

// teamsSend is teamsSay with the activity's timestamp at.
func (r *rig) teamsSend(aad, text string, key []byte, at time.Time) (int, string) {
	r.t.Helper()
	body := r.activity(aad, text, at)
	return r.teamsPost(body, key)
}

// activity is an outgoing webhook's activity, as Teams sends it.
func (r *rig) activity(aad, text string, at time.Time) []byte {
	r.n++
	act := map[string]any{
		"type": "message", "id": strconv.Itoa(r.n), "timestamp": at.UTC().Format(time.RFC3339Nano), "text": "<at>Sluice</at> " + text,
		"from":        map[string]any{"id": "29:1", "name": "Someone", "aadObjectId": aad},
		"channelData": map[string]any{"teamsChannelId": "19:abc"},
	}
	body, _ := json.Marshal(act)
	return body
}

// teamsPost posts body signed with key.
func (r *rig) teamsPost(body, key []byte) (int, string) {
	r.t.Helper()
	req, err := http.NewRequest("POST", r.teams.URL+"/teams/messages", bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "HMAC "+b64(SignTeams(key, body)))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, string(b)
	}
	var reply struct{ Type, Text string }
	if err := json.Unmarshal(b, &reply); err != nil || reply.Type != "message" {
		r.t.Fatalf("teams reply %s: %v", b, err)
	}
	return res.StatusCode, reply.Text
}

// waitStatus waits until ref is in phase at revision rev.
func (r *rig) waitStatus(ref events.Ref, rev int64, phase string) events.Snapshot {
	r.t.Helper()
	var s events.Snapshot
	poll.Until(r.t, fmt.Sprintf("%s revision %d %s", ref, rev, phase), func() error {
		var err error
		s, err = r.reader.Get(context.Background(), ref)
		if err != nil {
			return err
		}
		if s.Revision != rev || s.Phase != phase {
			return fmt.Errorf("revision %d %s", s.Revision, s.Phase)
		}
		return nil
	})
	return s
}

// paused starts ref at revision 1 and updates it to revision 2, which
// pauses at its second step until promoted.
func (r *rig) paused(ref events.Ref) {
	r.t.Helper()
	r.sys.Request(ref, "registry.example/web:1")
	r.waitStatus(ref, 1, events.PhaseHealthy)
	r.sys.Request(ref, "registry.example/web:2")
	r.waitStatus(ref, 2, events.PhasePaused)
}

// follow follows ref's status events from now.
func (r *rig) follow(ref events.Ref) *follow.Follower {
	r.t.Helper()
	f, err := follow.Status(r.t.Context(), r.sys.Bus, ref)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(f.Stop)
	return f
}

// next is the next status event f reads that answers a command (it has
// an actor). Events the rollout publishes on its own (a step completing)
// are skipped: the state the rig waits on is written before the events of
// the same decision are published, so such an event can follow it.
func (r *rig) next(f *follow.Follower) events.Event {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	for {
		d, err := f.Next(ctx)
		if err != nil {
			r.t.Fatalf("the next status event answering a command: %v", err)
		}
		if events.Extension(d.Event, events.ExtActor) != "" {
			return d.Event
		}
	}
}

// commands is the count of sluice_chat_commands_total{chat,command,outcome}.
func (r *rig) commands(chat, command, outcome string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_chat_commands_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["chat"] == chat && labels["command"] == command && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
