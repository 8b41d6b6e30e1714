package slack_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/sender/sendertest"
	"github.com/sluicehq/sluice/services/notifier/sender/slack"
)

const token = "xoxb-1234-5678-s3cr3tT0k3n"

func newSender(t *testing.T, options map[string]any, log *systemtest.Logs) notify.Sender {
	t.Helper()
	raw, err := json.Marshal(options)
	if err != nil {
		t.Fatal(err)
	}
	var logger *slog.Logger
	if log != nil {
		logger = log.Logger(slog.LevelDebug)
	}
	s, err := slack.New(notify.ServiceConfig{Name: "slack", Type: slack.Type, Options: raw, Logger: logger})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func webAPI(f *fakeSlack, extra ...any) map[string]any {
	o := map[string]any{"token": token, "apiURL": f.apiURL()}
	for i := 0; i+1 < len(extra); i += 2 {
		o[extra[i].(string)] = extra[i+1]
	}
	return o
}

func msg(channel, text string, sl *notify.Slack) notify.Message {
	return notify.Message{
		ID:           "m-" + text,
		Rollout:      events.Ref{Namespace: "shop", Name: "web"},
		Trigger:      "on-rollout-updated",
		Templates:    []string{"rollout-updated"},
		Destination:  notify.Destination{Service: "slack", Recipient: channel},
		Notification: notify.Notification{Message: text, Slack: sl},
		Phase:        events.PhaseHealthy,
	}
}

func TestPlainMessageIsPostedWithTheBotToken(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f, "username", "sluice", "icon", ":rocket:"), nil)

	r := sendertest.Send(t, s, msg("#deploys", "Rollout shop/web has been completed.", nil))

	got := f.message(1)
	if got.Channel != "C0DEPLOYS" || got.Text != "Rollout shop/web has been completed." || got.ThreadTS != "" {
		t.Errorf("posted %+v, want the text at the top of C0DEPLOYS", got)
	}
	if got.Username != "sluice" || got.IconEmoji != ":rocket:" {
		t.Errorf("posted as %q %q, want the service's username and icon", got.Username, got.IconEmoji)
	}
	if r.Thread != "" {
		t.Errorf("Receipt.Thread = %q without a grouping key, want none", r.Thread)
	}
}

func TestTemplateIdentityOverridesTheService(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f, "username", "sluice", "icon", ":rocket:"), nil)

	sendertest.Send(t, s, msg("deploys", "hi", &notify.Slack{Username: "shop-bot", IconURL: "https://example.com/shop.png"}))

	got := f.message(1)
	if got.Username != "shop-bot" || got.IconURL != "https://example.com/shop.png" || got.IconEmoji != "" {
		t.Errorf("posted as %q %q %q, want the template's username and icon URL", got.Username, got.IconEmoji, got.IconURL)
	}
}

const attachments = `[{"title":"shop/web","title_link":"https://sluice.example/rollouts/shop/web","color":"#18be52",
  "fields":[{"title":"Strategy","value":"Canary","short":true},{"title":"Revision","value":"3","short":true}]}]`

const blocks = `[{"type":"header","text":{"type":"plain_text","text":"shop/web completed"}},
  {"type":"section","text":{"type":"mrkdwn","text":"*Revision 3* is stable."}}]`

// jsonEqual compares JSON values, ignoring null members (slack-go sends
// an attachment's empty block list as null).
func jsonEqual(t *testing.T, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dropNulls(got), dropNulls(w)) {
		g, _ := json.Marshal(got)
		t.Errorf("got %s\nwant %s", g, want)
	}
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if x != nil {
				out[k] = dropNulls(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = dropNulls(x)
		}
		return out
	}
	return v
}

func TestAttachmentsAndBlocksArriveAsSent(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)

	sendertest.Send(t, s, msg("#deploys", "completed", &notify.Slack{Attachments: attachments, Blocks: blocks}))

	got := f.message(1)
	jsonEqual(t, got.Attachments, attachments)
	jsonEqual(t, got.Blocks, blocks)
	if got.Text != "completed" {
		t.Errorf("text = %q, want it kept as the notification's fallback", got.Text)
	}
}

func TestInvalidTemplateJSONIsPermanentAndNamesTheField(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)
	for _, tc := range []struct {
		name  string
		sl    *notify.Slack
		field string
	}{
		{"attachments", &notify.Slack{Attachments: `[{"title": "x",}]`}, "slack.attachments"},
		{"attachments not an array", &notify.Slack{Attachments: `{"title": "x"}`}, "slack.attachments"},
		{"blocks", &notify.Slack{Blocks: `[{"type": "section"`}, "slack.blocks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Send(context.Background(), msg("#deploys", "x", tc.sl))
			if !notify.IsPermanent(err) || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "rollout-updated") {
				t.Errorf("err = %v, want a permanent error naming %s and the template", err, tc.field)
			}
		})
	}
	if n := f.postedCount(); n != 0 {
		t.Errorf("%d messages posted, want none", n)
	}
}

// buttons returns the action ids and values of the message's buttons.
func buttons(t *testing.T, blocks any) map[string]string {
	t.Helper()
	out := map[string]string{}
	list, _ := blocks.([]any)
	for _, b := range list {
		b := b.(map[string]any)
		if b["type"] != "actions" {
			continue
		}
		for _, e := range b["elements"].([]any) {
			e := e.(map[string]any)
			out[e["action_id"].(string)] = e["value"].(string)
		}
	}
	return out
}

func TestButtonsOnlyWhenEnabledAndThereIsSomethingToDecide(t *testing.T) {
	want := map[string]string{notify.ActionPromote: "shop/web", notify.ActionAbort: "shop/web"}
	for _, tc := range []struct {
		name    string
		enabled bool
		phase   string
		want    bool
	}{
		{"progressing", true, events.PhaseProgressing, true},
		{"paused", true, events.PhasePaused, true},
		{"healthy", true, events.PhaseHealthy, false},
		{"degraded", true, events.PhaseDegraded, false},
		{"disabled", false, events.PhasePaused, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t, token)
			s := newSender(t, webAPI(f, "buttons", tc.enabled), nil)
			m := msg("#deploys", "shop/web is paused at step 2", nil)
			m.Phase = tc.phase

			sendertest.Send(t, s, m)

			got := f.message(1)
			b := buttons(t, got.Blocks)
			if tc.want && !reflect.DeepEqual(b, want) {
				t.Fatalf("buttons = %v, want %v", b, want)
			}
			if !tc.want && len(b) != 0 {
				t.Fatalf("buttons = %v, want none", b)
			}
			if tc.want && !strings.Contains(mustJSON(got.Blocks), "shop/web is paused at step 2") {
				t.Errorf("blocks %s do not show the text, which Slack hides when a message has blocks", mustJSON(got.Blocks))
			}
		})
	}
}

func TestButtonsFollowTheTemplatesBlocks(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f, "buttons", true), nil)
	m := msg("#deploys", "paused", &notify.Slack{Blocks: blocks})
	m.Phase = events.PhasePaused

	sendertest.Send(t, s, m)

	got := f.message(1).Blocks.([]any)
	if len(got) != 3 {
		t.Fatalf("blocks = %s, want the template's two then the buttons", mustJSON(got))
	}
	jsonEqual(t, got[:2], blocks)
	if b := buttons(t, got[2:]); len(b) != 2 {
		t.Errorf("last block %s, want the buttons", mustJSON(got[2]))
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestGroupingKeyThreadsLaterMessages(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)
	sl := &notify.Slack{GroupingKey: "shop/web-3"}

	first := sendertest.Send(t, s, msg("#deploys", "rollout started", sl))
	if first.Thread != "C0DEPLOYS:"+f.message(1).TS {
		t.Fatalf("Receipt.Thread = %q, want C0DEPLOYS:<ts of the first message>", first.Thread)
	}

	second := msg("#deploys", "step 1 completed", sl)
	second.Thread = first.Thread
	r := sendertest.Send(t, s, second)

	reply := f.message(2)
	if reply.ThreadTS != f.message(1).TS || reply.Channel != "C0DEPLOYS" || reply.Broadcast {
		t.Errorf("second message %+v, want a reply in the first one's thread, not broadcast", reply)
	}
	if r.Thread != first.Thread {
		t.Errorf("Receipt.Thread = %q, want the thread kept (%q)", r.Thread, first.Thread)
	}

	third := msg("#deploys", "completed", &notify.Slack{GroupingKey: "shop/web-3", NotifyBroadcast: true})
	third.Thread = first.Thread
	sendertest.Send(t, s, third)
	if got := f.message(3); got.ThreadTS != f.message(1).TS || !got.Broadcast {
		t.Errorf("third message %+v, want a reply also sent to the channel (notifyBroadcast)", got)
	}
}

func TestUpdateEditsTheFirstMessageInPlace(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)
	sl := &notify.Slack{GroupingKey: "shop/web", DeliveryPolicy: notify.SlackUpdate}

	first := sendertest.Send(t, s, msg("#deploys", "shop/web: step 1 of 4", sl))
	next := msg("#deploys", "shop/web: step 2 of 4", &notify.Slack{GroupingKey: "shop/web", DeliveryPolicy: notify.SlackUpdate, Blocks: blocks})
	next.Thread = first.Thread
	r := sendertest.Send(t, s, next)
	// An update is idempotent: delivering it again changes nothing more.
	sendertest.Send(t, s, next)

	if n := f.postedCount(); n != 1 {
		t.Fatalf("%d messages posted, want 1 edited in place", n)
	}
	got := f.message(1)
	if got.Text != "shop/web: step 2 of 4" || got.Edits != 2 {
		t.Errorf("message %+v, want the second text after the edits", got)
	}
	jsonEqual(t, got.Blocks, blocks)
	if r.Thread != first.Thread {
		t.Errorf("Receipt.Thread = %q, want %q kept", r.Thread, first.Thread)
	}
}

func TestPostAndUpdateRepliesAndEdits(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)
	sl := &notify.Slack{GroupingKey: "shop/web", DeliveryPolicy: notify.SlackPostAndUpdate}

	first := sendertest.Send(t, s, msg("#deploys", "progressing", sl))
	next := msg("#deploys", "paused", sl)
	next.Thread = first.Thread
	sendertest.Send(t, s, next)

	if got := f.message(1); got.Text != "paused" || got.Edits != 1 {
		t.Errorf("first message %+v, want it edited to the latest text", got)
	}
	if got := f.message(2); got.Text != "paused" || got.ThreadTS != f.message(1).TS {
		t.Errorf("second message %+v, want a reply in the thread", got)
	}
}

func TestUpdateOfADeletedMessageStartsANewOne(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)
	m := msg("#deploys", "step 2", &notify.Slack{GroupingKey: "shop/web", DeliveryPolicy: notify.SlackUpdate})
	m.Thread = "C0DEPLOYS:1600000000.000001"

	r := sendertest.Send(t, s, m)

	if got := f.message(1); got.Text != "step 2" || got.ThreadTS != "" {
		t.Errorf("posted %+v, want a new top-level message", got)
	}
	if r.Thread != "C0DEPLOYS:"+f.message(1).TS {
		t.Errorf("Receipt.Thread = %q, want the new message's", r.Thread)
	}
}

func TestRateLimitIsRetriedAfterSlacksDelay(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)
	f.failNext(http.StatusTooManyRequests, map[string]string{"Retry-After": "17"}, `{"ok":false,"error":"ratelimited"}`)

	_, err := s.Send(context.Background(), msg("#deploys", "hi", nil))

	d, ok := notify.RetryDelay(err)
	if !ok || d != 17*time.Second || notify.IsPermanent(err) {
		t.Fatalf("err = %v, RetryDelay = %s %v; want a retry after 17s", err, d, ok)
	}
	// The next attempt goes through.
	sendertest.Send(t, s, msg("#deploys", "hi", nil))
	if n := f.postedCount(); n != 1 {
		t.Errorf("%d messages posted, want 1", n)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	for _, tc := range []struct {
		name      string
		channel   string
		token     string
		fail      *response
		permanent bool
		text      string
	}{
		{name: "unknown channel", channel: "#nope", permanent: true, text: "channel_not_found"},
		{name: "bot not invited", channel: "#private", permanent: true, text: "invite the bot to #private"},
		{name: "token refused", channel: "#deploys", token: "xoxb-0000-revoked-t0k3n", permanent: true, text: "set a valid bot token"},
		{name: "invalid blocks", channel: "#deploys", fail: &response{200, map[string]string{"Content-Type": "application/json"},
			`{"ok":false,"error":"invalid_blocks","response_metadata":{"messages":["[ERROR] must provide a string [json-pointer:/blocks/0/text/text]"]}}`},
			permanent: true, text: "json-pointer:/blocks/0/text/text"},
		{name: "missing scope", channel: "#deploys", fail: &response{200, map[string]string{"Content-Type": "application/json"},
			`{"ok":false,"error":"missing_scope","needed":"chat:write.customize","provided":"chat:write"}`},
			permanent: true, text: "chat:write.customize"},
		{name: "Slack's internal error", channel: "#deploys", fail: &response{200, map[string]string{"Content-Type": "application/json"},
			`{"ok":false,"error":"internal_error"}`}, text: "internal_error"},
		{name: "server error", channel: "#deploys", fail: &response{status: 503, body: "<html>down</html>"}, text: "503"},
		{name: "rate limited without a delay", channel: "#deploys", fail: &response{status: 429}, text: "429"},
		{name: "bad request", channel: "#deploys", fail: &response{status: 400}, permanent: true, text: "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSlack(t, token)
			o := webAPI(f)
			if tc.token != "" {
				o["token"] = tc.token
			}
			s := newSender(t, o, nil)
			if tc.fail != nil {
				f.failNext(tc.fail.status, tc.fail.header, tc.fail.body)
			}

			_, err := s.Send(context.Background(), msg(tc.channel, "hi", nil))

			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if notify.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, notify.IsPermanent(err), tc.permanent)
			}
			if _, ok := notify.RetryDelay(err); ok {
				t.Errorf("err = %v asks for a delay, want the delivery's backoff", err)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %q, want it to say %q", err, tc.text)
			}
		})
	}
}

func TestNetworkErrorIsRetried(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f), nil)
	f.srv.Close()

	_, err := s.Send(context.Background(), msg("#deploys", "hi", nil))

	if err == nil || notify.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
}

func TestWebhooksPostWithoutAToken(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, map[string]any{
		"webhooks":   map[string]string{"deploys": f.hookURL("deploys-s3cr3t")},
		"webhookURL": f.hookURL("default-s3cr3t"),
		"username":   "sluice",
	}, nil)

	sendertest.Send(t, s, msg("#deploys", "completed", &notify.Slack{Attachments: attachments, Blocks: blocks}))
	r := sendertest.Send(t, s, msg("#other", "to the default hook", &notify.Slack{GroupingKey: "k"}))

	got := f.hookBodies("deploys-s3cr3t")
	if len(got) != 1 || got[0]["text"] != "completed" || got[0]["username"] != "sluice" {
		t.Fatalf("deploys webhook got %v, want the message", got)
	}
	jsonEqual(t, got[0]["attachments"], attachments)
	jsonEqual(t, got[0]["blocks"], blocks)
	if d := f.hookBodies("default-s3cr3t"); len(d) != 1 || d[0]["text"] != "to the default hook" {
		t.Errorf("default webhook got %v, want the other channel's message", d)
	}
	if r.Thread != "" {
		t.Errorf("Receipt.Thread = %q through a webhook, want none (threads need the token)", r.Thread)
	}
	if calls := f.callList(); len(calls) != 0 {
		t.Errorf("Web API called %v, want only webhooks", calls)
	}
}

func TestWebhookChannelWinsOverTheToken(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f, "webhooks", map[string]string{"alerts": f.hookURL("alerts")}), nil)

	sendertest.Send(t, s, msg("#alerts", "by webhook", nil))
	sendertest.Send(t, s, msg("#deploys", "by the Web API", nil))

	if got := f.hookBodies("alerts"); len(got) != 1 {
		t.Errorf("alerts webhook got %v, want one message", got)
	}
	if got := f.message(1); got.Text != "by the Web API" {
		t.Errorf("Web API got %+v, want the other channel's message", got)
	}
}

func TestWebhookErrorsAreClassified(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, map[string]any{"webhookURL": f.hookURL("s3cr3t")}, nil)

	f.failNext(http.StatusTooManyRequests, map[string]string{"Retry-After": "4"}, "rate limited")
	_, err := s.Send(context.Background(), msg("", "hi", nil))
	if d, ok := notify.RetryDelay(err); !ok || d != 4*time.Second {
		t.Errorf("429: err = %v, want a retry after 4s", err)
	}

	f.failNext(http.StatusNotFound, nil, "no_service")
	_, err = s.Send(context.Background(), msg("", "hi", nil))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "no_service") {
		t.Errorf("404: err = %v, want a permanent error with Slack's answer", err)
	}

	f.failNext(http.StatusInternalServerError, nil, "")
	_, err = s.Send(context.Background(), msg("", "hi", nil))
	if err == nil || notify.IsPermanent(err) {
		t.Errorf("500: err = %v, want a retryable error", err)
	}
}

func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	f := newFakeSlack(t, token)
	hook := f.hookURL("T0K3N1NURL")
	var log systemtest.Logs
	var errs []string
	record := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}

	web := newSender(t, webAPI(f, "buttons", true, "signingSecret", "sign1ngS3cret"), &log)
	bad := newSender(t, webAPI(f, "token", token+"-revoked"), &log)
	hooks := newSender(t, map[string]any{"webhookURL": hook}, &log)
	sl := &notify.Slack{GroupingKey: "k"}
	first, err := web.Send(context.Background(), msg("#deploys", "ok", sl))
	record(err)
	m := msg("#deploys", "reply", sl)
	m.Thread = first.Thread
	_, err = web.Send(context.Background(), m)
	record(err)
	m.Thread = "not a thread"
	_, err = web.Send(context.Background(), m)
	record(err)
	for _, c := range []string{"#nope", "#private"} {
		_, err := web.Send(context.Background(), msg(c, "x", nil))
		record(err)
	}
	_, err = bad.Send(context.Background(), msg("#deploys", "x", nil))
	record(err)
	f.failNext(http.StatusTooManyRequests, map[string]string{"Retry-After": "1"}, "")
	_, err = web.Send(context.Background(), msg("#deploys", "x", nil))
	record(err)
	f.failNext(http.StatusForbidden, nil, "invalid_token")
	_, err = hooks.Send(context.Background(), msg("", "x", nil))
	record(err)
	f.srv.Close()
	_, err = hooks.Send(context.Background(), msg("", "x", nil))
	record(err)
	_, err = web.Send(context.Background(), msg("#deploys", "x", nil))
	record(err)

	// New's errors too: an invalid option next to the secrets.
	_, err = slack.New(notify.ServiceConfig{Name: "slack", Options: json.RawMessage(
		`{"token":"` + token + `","webhookURL":"ftp://` + token + `","bogus":1}`)})
	record(err)
	_, err = slack.New(notify.ServiceConfig{Name: "slack", Options: json.RawMessage(
		`{"token":"` + token + `","webhooks":{"deploys":"not a url T0K3N1NURL"}}`)})
	record(err)

	if len(errs) < 9 {
		t.Fatalf("only %d errors recorded, want every failing case: %q", len(errs), errs)
	}
	for _, secret := range []string{token, "s3cr3tT0k3n", "T0K3N1NURL", "sign1ngS3cret"} {
		for _, e := range errs {
			if strings.Contains(e, secret) {
				t.Errorf("error %q contains a secret", e)
			}
		}
		if strings.Contains(log.String(), secret) {
			t.Errorf("logs contain a secret:\n%s", log.String())
		}
	}
	if !strings.Contains(log.String(), "slack message posted") {
		t.Errorf("logs %q, want the sends logged (so the check above saw them)", log.String())
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	sendertest.CheckOptions(t, slack.New, slack.Type, []sendertest.OptionCase{
		{Name: "unknown option", Options: `{"token":"xoxb-1","tokn":"x"}`, WantErr: `unknown option "tokn"`},
		{Name: "nothing to send with", Options: `{"username":"sluice"}`, WantErr: `set option "token"`},
		{Name: "no options", Options: ``, WantErr: `set option "token"`},
		{Name: "buttons without token", Options: `{"webhookURL":"https://hooks.slack.com/services/T/B/x","buttons":true}`, WantErr: `option "buttons" needs "token"`},
		{Name: "wrong type", Options: `{"token":"xoxb-1","buttons":"yes"}`, WantErr: `option "buttons": want true or false`},
		{Name: "bad apiURL", Options: `{"token":"xoxb-1","apiURL":"slack.com"}`, WantErr: `option "apiURL": want an absolute http or https URL`},
		{Name: "bad webhook", Options: `{"webhooks":{"deploys":"hooks.slack.com/x"}}`, WantErr: `option "webhooks.deploys": want an absolute http or https URL`},
		{Name: "not an object", Options: `["token"]`, WantErr: "want a mapping of option names"},
	}, "xoxb-1", "hooks.slack.com")
}

func TestDisableUnfurl(t *testing.T) {
	f := newFakeSlack(t, token)
	s := newSender(t, webAPI(f, "disableUnfurl", true), nil)

	sendertest.Send(t, s, msg("#deploys", "see https://sluice.example/rollouts/shop/web", nil))

	if got := f.message(1); got.UnfurlLinks != "false" || got.UnfurlMedia != "false" {
		t.Errorf("unfurl_links=%q unfurl_media=%q, want both false", got.UnfurlLinks, got.UnfurlMedia)
	}
}

func TestInsecureSkipVerifyReachesASelfSignedServer(t *testing.T) {
	f := newFakeSlack(t, token)
	tlsSrv := httptest.NewTLSServer(f.handler())
	t.Cleanup(tlsSrv.Close)
	options := map[string]any{"token": token, "apiURL": tlsSrv.URL + "/api/"}

	_, err := newSender(t, options, nil).Send(context.Background(), msg("#deploys", "verified", nil))
	if err == nil || notify.IsPermanent(err) {
		t.Fatalf("err = %v with verification, want a retryable certificate error", err)
	}
	options["insecureSkipVerify"] = true
	sendertest.Send(t, newSender(t, options, nil), msg("#deploys", "not verified", nil))
	if got := f.message(1); got.Text != "not verified" {
		t.Errorf("posted %+v, want the message", got)
	}
}

func TestArgoOptionsAreAccepted(t *testing.T) {
	var log systemtest.Logs
	raw := `{"token":"xoxb-1","username":"argocd","icon":":rocket:","channels":["a"],"signingSecret":"x","disableUnfurl":true,"insecureSkipVerify":true,"apiURL":"https://slack.example/api"}`
	if _, err := slack.New(notify.ServiceConfig{Name: "slack", Options: json.RawMessage(raw),
		Logger: log.Logger(slog.LevelInfo)}); err != nil {
		t.Fatalf("New: %v", err)
	}
	if !strings.Contains(log.String(), "signingSecret is not used") {
		t.Errorf("logs %q, want a warning that signingSecret belongs to commands.slack", log.String())
	}
}
