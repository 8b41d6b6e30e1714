package teams_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/sender/sendertest"
	"github.com/sluicehq/sluice/services/notifier/sender/teams"
)

const sig = "sigSECRETsig"

// teamsServer implements the two endpoints Teams offers a notifier: a
// workflow webhook (POST, answers 202 Accepted) and a legacy connector
// (POST, answers 200 with the body "1").
type teamsServer struct {
	*httptest.Server
	mu sync.Mutex
	// bodies maps a path to the JSON posted to it.
	bodies map[string][]map[string]any
	// answer, when set, answers instead of the vendor's success.
	answer func(w http.ResponseWriter) bool
}

func newTeamsServer(t *testing.T) *teamsServer {
	s := &teamsServer{bodies: map[string][]map[string]any{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusBadRequest)
			return
		}
		if strings.Contains(r.URL.Path, "/workflows/") && r.URL.Query().Get("sig") != sig {
			http.Error(w, `{"error":{"code":"DirectApiAuthorizationRequired"}}`, http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var v map[string]any
		if err := json.Unmarshal(body, &v); err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.bodies[r.URL.Path] = append(s.bodies[r.URL.Path], v)
		answer := s.answer
		s.mu.Unlock()
		if answer != nil && answer(w) {
			return
		}
		if strings.Contains(r.URL.Path, "/webhookb2/") {
			_, _ = io.WriteString(w, "1")
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(s.Close)
	return s
}

const workflowPath = "/workflows/0a1b/triggers/manual/paths/invoke"

func (s *teamsServer) workflowURL() string {
	return s.URL + workflowPath + "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sig=" + sig
}

func (s *teamsServer) posted(path string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodies[path]
}

func newSender(t *testing.T, urls map[string]string) notify.Sender {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"recipientUrls": urls})
	s, err := teams.New(notify.ServiceConfig{Name: "teams", Type: teams.Type, Options: raw})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func msg(recipient string, n notify.Notification) notify.Message {
	return notify.Message{ID: "m1", Destination: notify.Destination{Service: "teams", Recipient: recipient}, Notification: n}
}

// path walks a decoded JSON value: keys for objects, indexes for arrays.
func path(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: %v is not an object", k, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at [%d]: %v is not an array that long", k, v)
			}
			v = a[k]
		}
	}
	return v
}

func TestWorkflowWebhookGetsAnAdaptiveCard(t *testing.T) {
	srv := newTeamsServer(t)
	s := newSender(t, map[string]string{"deploys": srv.workflowURL()})
	n := notify.Notification{
		Message: "Rollout shop has been completed.",
		Teams: &notify.Teams{
			Title:           "Rollout shop has been completed.",
			ThemeColor:      "#FF0000",
			Facts:           `[{"name":"Strategy","value":"Canary"},{"name":"Replicas","value":4}]`,
			Sections:        `[{"activityTitle":"Revision 3","facts":[{"name":"image","value":"shop:1.2"}]}]`,
			PotentialAction: `[{"@type":"OpenUri","name":"Open dashboard","targets":[{"os":"default","uri":"https://sluice.example/rollouts/shop"}]},{"@type":"HttpPOST","name":"ignored"}]`,
		},
	}
	if _, err := s.Send(context.Background(), msg("deploys", n)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.posted(workflowPath)
	if len(got) != 1 {
		t.Fatalf("workflow got %d posts, want 1", len(got))
	}
	env := got[0]
	if env["type"] != "message" || path(t, env, "attachments", 0, "contentType") != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("envelope = %v, want a message with an Adaptive Card attachment", env)
	}
	c := path(t, env, "attachments", 0, "content")
	if path(t, c, "type") != "AdaptiveCard" || path(t, c, "version") == nil {
		t.Errorf("content = %v, want an AdaptiveCard with a version", c)
	}
	title := path(t, c, "body", 0)
	if path(t, title, "text") != "Rollout shop has been completed." || path(t, title, "color") != "Attention" {
		t.Errorf("title block = %v, want the title colored Attention (from #FF0000)", title)
	}
	if path(t, c, "body", 1, "text") != "Rollout shop has been completed." {
		t.Errorf("text block = %v, want the message", path(t, c, "body", 1))
	}
	facts := path(t, c, "body", 2)
	if path(t, facts, "type") != "FactSet" || path(t, facts, "facts", 1, "title") != "Replicas" || path(t, facts, "facts", 1, "value") != "4" {
		t.Errorf("facts = %v, want a FactSet with Replicas = 4", facts)
	}
	section := path(t, c, "body", 3)
	if path(t, section, "type") != "Container" || path(t, section, "items", 0, "text") != "Revision 3" ||
		path(t, section, "items", 1, "facts", 0, "value") != "shop:1.2" {
		t.Errorf("section = %v, want a Container with its title and facts", section)
	}
	actions := path(t, c, "actions").([]any)
	if len(actions) != 1 || path(t, actions[0], "type") != "Action.OpenUrl" || path(t, actions[0], "url") != "https://sluice.example/rollouts/shop" {
		t.Errorf("actions = %v, want the one OpenUri as Action.OpenUrl", actions)
	}
}

func TestPlainMessageWithoutTeamsPart(t *testing.T) {
	srv := newTeamsServer(t)
	s := newSender(t, map[string]string{"deploys": srv.workflowURL()})
	if _, err := s.Send(context.Background(), msg("deploys", notify.Notification{Message: "shop paused"})); err != nil {
		t.Fatalf("Send: %v", err)
	}
	body := path(t, srv.posted(workflowPath)[0], "attachments", 0, "content", "body").([]any)
	if len(body) != 1 || path(t, body[0], "text") != "shop paused" {
		t.Errorf("card body = %v, want one TextBlock with the message", body)
	}
}

func TestTemplateIsTheWholeCard(t *testing.T) {
	srv := newTeamsServer(t)
	s := newSender(t, map[string]string{"deploys": srv.workflowURL()})
	card := `{"type":"AdaptiveCard","version":"1.5","body":[{"type":"TextBlock","text":"custom"}]}`
	if _, err := s.Send(context.Background(), msg("deploys", notify.Notification{Teams: &notify.Teams{Template: card}})); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := path(t, srv.posted(workflowPath)[0], "attachments", 0, "content", "body", 0, "text"); got != "custom" {
		t.Errorf("card text = %v, want the template's card as it is", got)
	}
	messageCard := `{"@type":"MessageCard","text":"old"}`
	_, err := s.Send(context.Background(), msg("deploys", notify.Notification{Teams: &notify.Teams{Template: messageCard}}))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "teams.template") {
		t.Errorf("a MessageCard template to a workflow = %v, want a permanent error naming teams.template", err)
	}
}

func TestLegacyConnectorGetsAMessageCard(t *testing.T) {
	srv := newTeamsServer(t)
	const legacyPath = "/webhookb2/abc@def/IncomingWebhook/123/456"
	s := newSender(t, map[string]string{"old": srv.URL + legacyPath})
	n := notify.Notification{Message: "done", Teams: &notify.Teams{Title: "shop", ThemeColor: "#000080",
		Facts: `[{"name":"Strategy","value":"Canary"}]`}}
	if _, err := s.Send(context.Background(), msg("old", n)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.posted(legacyPath)[0]
	if got["@type"] != "MessageCard" || got["title"] != "shop" || got["text"] != "done" || got["themeColor"] != "#000080" {
		t.Errorf("card = %v, want a MessageCard with title, text and themeColor", got)
	}
	if path(t, got, "sections", 0, "facts", 0, "name") != "Strategy" {
		t.Errorf("sections = %v, want the facts as a section", got["sections"])
	}

	srv.answer = func(w http.ResponseWriter) bool {
		_, _ = io.WriteString(w, "Summary or Text is required.")
		return true
	}
	_, err := s.Send(context.Background(), msg("old", n))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "Summary or Text is required.") {
		t.Errorf("a refused card = %v, want a permanent error with the connector's answer", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	srv := newTeamsServer(t)
	s := newSender(t, map[string]string{"deploys": srv.workflowURL(), "forged": srv.URL + workflowPath + "?sig=wrong"})
	m := msg("deploys", notify.Notification{Message: "x"})

	srv.answer = func(w http.ResponseWriter) bool {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}
	_, err := s.Send(context.Background(), m)
	if d, ok := notify.RetryDelay(err); !ok || d != 3*time.Second {
		t.Errorf("429 = %v, want RetryAfter 3s", err)
	}
	srv.answer = func(w http.ResponseWriter) bool { w.WriteHeader(http.StatusBadGateway); return true }
	if _, err := s.Send(context.Background(), m); err == nil || notify.IsPermanent(err) {
		t.Errorf("502 = %v, want a retryable error", err)
	}
	srv.answer = nil
	if _, err := s.Send(context.Background(), msg("forged", notify.Notification{Message: "x"})); !notify.IsPermanent(err) {
		t.Errorf("401 = %v, want a permanent error", err)
	}
	_, err = s.Send(context.Background(), msg("nobody", notify.Notification{Message: "x"}))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), `"nobody"`) || !strings.Contains(err.Error(), "deploys") {
		t.Errorf("unknown recipient = %v, want a permanent error naming it and the known ones", err)
	}
	_, err = s.Send(context.Background(), msg("deploys", notify.Notification{Message: strings.Repeat("x", 30<<10)}))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "28 KB") {
		t.Errorf("an oversized card = %v, want a permanent error about Teams' limit", err)
	}
}

func TestWebhookURLNeverInErrors(t *testing.T) {
	srv := newTeamsServer(t)
	u := srv.workflowURL()
	srv.Close()
	s := newSender(t, map[string]string{"deploys": u})
	_, err := s.Send(context.Background(), msg("deploys", notify.Notification{Message: "x"}))
	if err == nil || notify.IsPermanent(err) {
		t.Fatalf("Send to a closed server = %v, want a retryable error", err)
	}
	_, optErr := teams.New(notify.ServiceConfig{Name: "teams", Type: teams.Type,
		Options: json.RawMessage(`{"recipientUrls":{"deploys":"` + sig + `"}}`)})
	for _, e := range []error{err, optErr} {
		if e == nil || strings.Contains(e.Error(), sig) || strings.Contains(e.Error(), workflowPath) {
			t.Errorf("error %v shows the webhook URL", e)
		}
	}
}

func TestColor(t *testing.T) {
	for in, want := range map[string]string{
		"#FF0000": "Attention", "E01E5A": "Attention", "#FF8C00": "Warning", "#f4c030": "Warning",
		"#18be52": "Good", "#000080": "Accent", "#800080": "Accent", "#808080": "Default",
		"good": "Good", "Attention": "Attention", "": "", "not a color": "", "#a0c": "Accent", "#abc": "Default",
	} {
		if got := teams.Color(in); got != want {
			t.Errorf("Color(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOptions(t *testing.T) {
	sendertest.CheckOptions(t, teams.New, teams.Type, []sendertest.OptionCase{
		{Name: "recipients", Options: `{"recipientUrls":{"a":"https://prod-01.westus.logic.azure.com/workflows/x","b":"https://acme.webhook.office.com/webhookb2/y"}}`},
		{Name: "insecureSkipVerify", Options: `{"recipientUrls":{"a":"https://x.example/workflows/x"},"insecureSkipVerify":true}`},
		{Name: "none", Options: `{}`, WantErr: `option "recipientUrls" is required`},
		{Name: "not a URL", Options: `{"recipientUrls":{"a":"teams"}}`, WantErr: `option "recipientUrls.a": want an absolute http or https URL`},
		{Name: "misspelt", Options: `{"recipientURLs":{"a":"https://x.example"}}`, WantErr: `unknown option "recipientURLs"`},
		{Name: "a list", Options: `{"recipientUrls":["https://x.example"]}`, WantErr: `option "recipientUrls": want a mapping`},
	})
}

func TestDocumentedExample(t *testing.T) {
	srv := newTeamsServer(t)
	c := sendertest.Example(t, "### Microsoft Teams", nil)
	s := sendertest.New(t, c, teams.New, "teams", map[string]any{"recipientUrls": map[string]string{"deploys": srv.workflowURL()}})
	m := sendertest.Message(t, c, "on-rollout-completed", []string{"rollout-completed"}, sendertest.Vars("Healthy", ""),
		notify.Destination{Service: "teams", Recipient: "deploys"})
	sendertest.Send(t, s, m)
	card := path(t, srv.posted(workflowPath)[0], "attachments", 0, "content")
	if got := path(t, card, "body", 0); path(t, got, "text") != "Rollout web completed" || path(t, got, "color") != "Good" {
		t.Errorf("title = %v, want the documented title in green (Good)", got)
	}
	facts := path(t, card, "body", 2, "facts").([]any)
	if len(facts) != 2 || path(t, facts[0], "value") != "Canary" || path(t, facts[1], "value") != "3" {
		t.Errorf("facts = %v, want Strategy Canary and Revision 3", facts)
	}
	if got := path(t, card, "actions", 0, "url"); got != "https://sluice.example/rollouts/shop/web" {
		t.Errorf("action url = %v, want the dashboard", got)
	}
}
