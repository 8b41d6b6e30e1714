package slack_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeSlack is the slice of Slack's Web API the sender uses
// (chat.postMessage, chat.update: form bodies, the bot token, Slack's
// {"ok":...} answers, 429 with Retry-After) and incoming webhooks under
// /hooks/.
type fakeSlack struct {
	t     *testing.T
	srv   *httptest.Server
	token string

	mu sync.Mutex
	// channels maps a channel name (without #) to its id.
	channels map[string]string
	// notIn are channel ids the bot is not a member of.
	notIn map[string]bool
	// messages by ts, in posting order in posted.
	messages map[string]*message
	posted   []string
	// calls are every Web API method called, in order.
	calls []string
	// hooks are the JSON bodies each webhook received, by path.
	hooks map[string][]map[string]any
	// fail answers the next requests (any endpoint) instead of the API.
	fail []response
}

type message struct {
	Channel, TS, Text, ThreadTS string
	Broadcast                   bool
	Username, IconEmoji         string
	IconURL                     string
	Attachments, Blocks         any
	Edits                       int
	// UnfurlLinks and UnfurlMedia are the form fields as sent.
	UnfurlLinks, UnfurlMedia string
}

type response struct {
	status int
	header map[string]string
	body   string
}

func newFakeSlack(t *testing.T, token string) *fakeSlack {
	f := &fakeSlack{
		t:        t,
		token:    token,
		channels: map[string]string{"deploys": "C0DEPLOYS", "private": "C0PRIVATE"},
		notIn:    map[string]bool{"C0PRIVATE": true},
		messages: map[string]*message{},
		hooks:    map[string][]map[string]any{},
	}
	f.srv = httptest.NewServer(f.handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat.postMessage", f.api(f.postMessage))
	mux.HandleFunc("POST /api/chat.update", f.api(f.update))
	mux.HandleFunc("POST /hooks/", f.hook)
	return mux
}

func (f *fakeSlack) apiURL() string { return f.srv.URL + "/api/" }

func (f *fakeSlack) hookURL(name string) string { return f.srv.URL + "/hooks/T000/B000/" + name }

// failNext makes the next request answer status with header and body.
func (f *fakeSlack) failNext(status int, header map[string]string, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, response{status, header, body})
}

func (f *fakeSlack) takeFailure(w http.ResponseWriter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fail) == 0 {
		return false
	}
	r := f.fail[0]
	f.fail = f.fail[1:]
	for k, v := range r.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(r.status)
	_, _ = io.WriteString(w, r.body)
	return true
}

func (f *fakeSlack) api(method func(form map[string]string) map[string]any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if f.takeFailure(w) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if err := r.ParseForm(); err != nil {
			f.t.Errorf("%s: form: %v", r.URL.Path, err)
		}
		// Slack takes the token as a bearer token or as the token field of
		// a form body (slack-go sends the latter for chat.* methods).
		if r.Header.Get("Authorization") != "Bearer "+f.token && r.PostForm.Get("token") != f.token {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_auth"})
			return
		}
		form := map[string]string{}
		for k := range r.PostForm {
			if k != "token" {
				form[k] = r.PostForm.Get(k)
			}
		}
		f.mu.Lock()
		f.calls = append(f.calls, strings.TrimPrefix(r.URL.Path, "/api/"))
		answer := method(form)
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(answer)
	}
}

func refused(code string) map[string]any { return map[string]any{"ok": false, "error": code} }

// channelID resolves a channel as chat.postMessage does: a name, with or
// without #, or an id.
func (f *fakeSlack) channelID(c string) (string, bool) {
	if id, ok := f.channels[strings.TrimPrefix(c, "#")]; ok {
		return id, true
	}
	for _, id := range f.channels {
		if id == c {
			return id, true
		}
	}
	return "", false
}

func decodeJSON(s string) any {
	if s == "" {
		return nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return "not JSON: " + s
	}
	return v
}

func (f *fakeSlack) postMessage(form map[string]string) map[string]any {
	id, ok := f.channelID(form["channel"])
	if !ok {
		return refused("channel_not_found")
	}
	if f.notIn[id] {
		return refused("not_in_channel")
	}
	if form["text"] == "" && form["blocks"] == "" && form["attachments"] == "" {
		return refused("no_text")
	}
	if ts := form["thread_ts"]; ts != "" {
		if parent, ok := f.messages[ts]; !ok || parent.Channel != id {
			return refused("thread_not_found")
		}
	}
	ts := fmt.Sprintf("1700000000.%06d", len(f.posted)+1)
	m := &message{
		Channel: id, TS: ts, Text: form["text"], ThreadTS: form["thread_ts"],
		Broadcast: form["reply_broadcast"] == "true",
		Username:  form["username"], IconEmoji: form["icon_emoji"], IconURL: form["icon_url"],
		Attachments: decodeJSON(form["attachments"]), Blocks: decodeJSON(form["blocks"]),
		UnfurlLinks: form["unfurl_links"], UnfurlMedia: form["unfurl_media"],
	}
	f.messages[ts] = m
	f.posted = append(f.posted, ts)
	return map[string]any{"ok": true, "channel": id, "ts": ts, "message": map[string]any{"text": m.Text, "ts": ts}}
}

func (f *fakeSlack) update(form map[string]string) map[string]any {
	id := form["channel"]
	if _, ok := f.channelID(id); !ok || !strings.HasPrefix(id, "C") {
		return refused("channel_not_found")
	}
	m, ok := f.messages[form["ts"]]
	if !ok || m.Channel != id {
		return refused("message_not_found")
	}
	m.Text = form["text"]
	m.Attachments, m.Blocks = decodeJSON(form["attachments"]), decodeJSON(form["blocks"])
	m.Edits++
	return map[string]any{"ok": true, "channel": id, "ts": m.TS, "text": m.Text}
}

func (f *fakeSlack) hook(w http.ResponseWriter, r *http.Request) {
	if f.takeFailure(w) {
		return
	}
	if r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.hooks[r.URL.Path] = append(f.hooks[r.URL.Path], body)
	f.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// message returns a copy of the message posted n-th (from 1).
func (f *fakeSlack) message(n int) message {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n > len(f.posted) {
		f.t.Fatalf("%d messages posted, want at least %d", len(f.posted), n)
	}
	return *f.messages[f.posted[n-1]]
}

func (f *fakeSlack) postedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.posted)
}

func (f *fakeSlack) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeSlack) hookBodies(name string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hooks["/hooks/T000/B000/"+name]
}
