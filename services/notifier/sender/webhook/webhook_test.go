package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/sender/sendertest"
	"github.com/sluicehq/sluice/services/notifier/sender/webhook"
)

// received is one request as the receiver saw it.
type received struct {
	method, path string
	header       http.Header
	body         string
	user, pass   string
	hasAuth      bool
}

// receiver is a webhook endpoint that records requests and answers with
// the status (and headers) its answer function gives.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, w http.ResponseWriter)
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{answer: func(int, http.ResponseWriter) {}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		u, p, ok := req.BasicAuth()
		r.mu.Lock()
		r.got = append(r.got, received{req.Method, req.URL.Path, req.Header.Clone(), string(body), u, p, ok})
		n := len(r.got)
		r.mu.Unlock()
		r.answer(n, w)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func newSender(t *testing.T, name string, opts map[string]any, log *slog.Logger) notify.Sender {
	t.Helper()
	raw, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := webhook.New(notify.ServiceConfig{Name: name, Type: webhook.Type, Options: raw, Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func message(id string, n notify.Notification) notify.Message {
	return notify.Message{ID: id, Trigger: "on-rollout-completed", Destination: notify.Destination{Service: "hooks"}, Notification: n}
}

func TestSendWithoutTemplatePartGetsThePlainMessage(t *testing.T) {
	r := newReceiver(t)
	s := newSender(t, "hooks", map[string]any{
		"url":       r.URL + "/in",
		"headers":   []map[string]string{{"name": "Content-Type", "value": "text/plain"}, {"name": "X-Team", "value": "shop"}},
		"basicAuth": map[string]string{"username": "sluice", "password": "hunter2"},
	}, nil)
	if _, err := s.Send(context.Background(), message("msg-1", notify.Notification{Message: "shop is Healthy"})); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := r.requests()
	if len(got) != 1 {
		t.Fatalf("got %d requests, want 1", len(got))
	}
	req := got[0]
	if req.method != http.MethodGet || req.path != "/in" || req.body != "shop is Healthy" {
		t.Errorf("request = %s %s %q, want GET /in with the message (Argo's default)", req.method, req.path, req.body)
	}
	if req.header.Get("Content-Type") != "text/plain" || req.header.Get("X-Team") != "shop" {
		t.Errorf("headers = %v, want the configured ones", req.header)
	}
	if !req.hasAuth || req.user != "sluice" || req.pass != "hunter2" {
		t.Errorf("basic auth = %q/%q (%v), want sluice/hunter2", req.user, req.pass, req.hasAuth)
	}
	if req.header.Get(webhook.DeliveryHeader) != "msg-1" {
		t.Errorf("%s = %q, want the message id", webhook.DeliveryHeader, req.header.Get(webhook.DeliveryHeader))
	}
	if req.header.Get(webhook.DefaultSignatureHeader) != "" {
		t.Errorf("signed without a signature option")
	}
}

func TestSendUsesTheTemplatePartNamedAfterTheService(t *testing.T) {
	r := newReceiver(t)
	s := newSender(t, "github", map[string]any{"url": r.URL + "/api/"}, nil)
	n := notify.Notification{
		Message: "plain",
		Webhook: map[string]notify.Webhook{
			"github": {Method: "POST", Path: "/repos/acme/shop/statuses/abc", Body: `{"state":"success"}`},
			"other":  {Method: "PUT", Path: "/nope", Body: "not for this service"},
		},
	}
	for _, id := range []string{"a", "a"} { // a retry of one message
		if _, err := s.Send(context.Background(), message(id, n)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	got := r.requests()
	for _, req := range got {
		if req.method != "POST" || req.path != "/api/repos/acme/shop/statuses/abc" || req.body != `{"state":"success"}` {
			t.Errorf("request = %s %s %q, want the github part's POST", req.method, req.path, req.body)
		}
	}
	if got[0].header.Get(webhook.DeliveryHeader) != got[1].header.Get(webhook.DeliveryHeader) {
		t.Errorf("a repeat of one message carries different delivery ids: a receiver could not drop it")
	}
}

func TestSignatureVerifiesAtTheReceiver(t *testing.T) {
	const secret = "whsec-topsecret"
	r := newReceiver(t)
	s := newSender(t, "signed", map[string]any{
		"url":       r.URL,
		"signature": map[string]string{"secret": secret},
	}, nil)
	body := `{"rollout":"shop","phase":"Healthy"}`
	n := notify.Notification{Webhook: map[string]notify.Webhook{"signed": {Method: "POST", Body: body}}}
	if _, err := s.Send(context.Background(), message("m", n)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	req := r.requests()[0]
	sig := req.header.Get(webhook.DefaultSignatureHeader)
	if !strings.HasPrefix(sig, "t=") || !strings.Contains(sig, ",v1=") {
		t.Fatalf("signature header = %q, want t=<unix>,v1=<hex>", sig)
	}
	if err := webhook.Verify(secret, sig, []byte(req.body), time.Now(), 5*time.Minute); err != nil {
		t.Errorf("the receiver's check failed: %v", err)
	}
	for name, check := range map[string]func() error{
		"tampered body": func() error {
			return webhook.Verify(secret, sig, []byte(strings.Replace(req.body, "Healthy", "Degraded", 1)), time.Now(), 5*time.Minute)
		},
		"wrong secret": func() error { return webhook.Verify("guess", sig, []byte(req.body), time.Now(), 5*time.Minute) },
		"replayed later": func() error {
			return webhook.Verify(secret, sig, []byte(req.body), time.Now().Add(10*time.Minute), 5*time.Minute)
		},
		"malformed": func() error { return webhook.Verify(secret, "v1=abc", []byte(req.body), time.Now(), 5*time.Minute) },
	} {
		if err := check(); !errors.Is(err, webhook.ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want ErrBadSignature", name, err)
		}
	}
}

func TestSignatureHeaderCanBeRenamed(t *testing.T) {
	r := newReceiver(t)
	s := newSender(t, "signed", map[string]any{
		"url":       r.URL,
		"signature": map[string]string{"secret": "s", "header": "X-Hub-Signature"},
	}, nil)
	if _, err := s.Send(context.Background(), message("m", notify.Notification{Message: "hi"})); err != nil {
		t.Fatalf("Send: %v", err)
	}
	h := r.requests()[0].header
	if err := webhook.Verify("s", h.Get("X-Hub-Signature"), []byte("hi"), time.Now(), time.Minute); err != nil {
		t.Errorf("X-Hub-Signature: %v", err)
	}
}

func TestAnswersAreClassifiedForDelivery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		header    map[string]string
		permanent bool
		after     time.Duration
		hasAfter  bool
	}{
		{name: "rate limited with Retry-After", status: 429, header: map[string]string{"Retry-After": "12"}, after: 12 * time.Second, hasAfter: true},
		{name: "server error is retried", status: 503},
		{name: "client error is final", status: 400, permanent: true},
		{name: "missing endpoint is final", status: 404, permanent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t)
			r.answer = func(_ int, w http.ResponseWriter) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
			}
			s := newSender(t, "hooks", map[string]any{"url": r.URL}, nil)
			_, err := s.Send(context.Background(), message("m", notify.Notification{Message: "x"}))
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if notify.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, notify.IsPermanent(err), tc.permanent)
			}
			if d, ok := notify.RetryDelay(err); ok != tc.hasAfter || d != tc.after {
				t.Errorf("RetryDelay = %s, %v; want %s, %v", d, ok, tc.after, tc.hasAfter)
			}
		})
	}
}

func TestNoSecretInErrorsOrLogs(t *testing.T) {
	const (
		pathSecret = "T000/B000/pathsecret"
		password   = "pw-supersecret"
		sigSecret  = "sig-supersecret"
	)
	var logs systemtest.Logs
	log := logs.Logger(slog.LevelDebug)
	// A server that is gone: the transport error must not quote the URL.
	r := newReceiver(t)
	url := r.URL + "/" + pathSecret + "?token=" + pathSecret
	r.Close()
	s := newSender(t, "hooks", map[string]any{
		"url":       url,
		"basicAuth": map[string]string{"username": "u", "password": password},
		"signature": map[string]string{"secret": sigSecret},
		"retryMax":  5,
	}, log)
	_, err := s.Send(context.Background(), message("m", notify.Notification{Message: "x"}))
	if err == nil || notify.IsPermanent(err) {
		t.Fatalf("Send to a closed server = %v, want a retryable error", err)
	}
	// And options that fail to load.
	_, optErr := webhook.New(notify.ServiceConfig{Name: "hooks", Type: webhook.Type,
		Options: json.RawMessage(`{"url":"` + url + `","basicAuth":{"username":"u","password":["` + password + `"]}}`)})
	if optErr == nil {
		t.Fatal("New with a list as password succeeded")
	}
	for _, text := range []string{err.Error(), optErr.Error(), logs.String()} {
		for _, secret := range []string{pathSecret, password, sigSecret} {
			if strings.Contains(text, secret) {
				t.Errorf("%q shows the secret %q", text, secret)
			}
		}
	}
	if !strings.Contains(logs.String(), "retryMax") {
		t.Errorf("logs = %q, want a note that retryMax is not used", logs.String())
	}
}

func TestOptions(t *testing.T) {
	sendertest.CheckOptions(t, webhook.New, webhook.Type, []sendertest.OptionCase{
		{Name: "url only", Options: `{"url":"https://hooks.example.com/in"}`},
		{Name: "Argo's retry and transport options are accepted", Options: `{"url":"https://x.example","retryMax":3,"retryWaitMin":"1s","maxIdleConns":10}`},
		{Name: "every option", Options: `{"url":"http://x.example","headers":[{"name":"A","value":"b"}],"basicAuth":{"username":"u","password":"p"},"insecureSkipVerify":true,"signature":{"secret":"s","header":"X-Sig"}}`},
		{Name: "no url", Options: `{}`, WantErr: `option "url" is required`},
		{Name: "relative url", Options: `{"url":"/in"}`, WantErr: `option "url": want an absolute http or https URL`},
		{Name: "ftp url", Options: `{"url":"ftp://x.example"}`, WantErr: `option "url": want an absolute http or https URL`},
		{Name: "unknown option", Options: `{"url":"https://x.example","header":[]}`, WantErr: `unknown option "header"`},
		{Name: "unknown nested option", Options: `{"url":"https://x.example","basicAuth":{"user":"u"}}`, WantErr: `unknown option "user"`},
		{Name: "bad header name", Options: `{"url":"https://x.example","headers":[{"name":"Bad Name","value":"v"}]}`, WantErr: `option "headers[0].name"`},
		{Name: "header value with a newline", Options: `{"url":"https://x.example","headers":[{"name":"A","value":"a\nb"}]}`, WantErr: `option "headers[0].value" (A)`},
		{Name: "basic auth without user", Options: `{"url":"https://x.example","basicAuth":{"password":"p"}}`, WantErr: `option "basicAuth.username" is required`},
		{Name: "signature without secret", Options: `{"url":"https://x.example","signature":{}}`, WantErr: `option "signature.secret" is required`},
		{Name: "wrong type", Options: `{"url":"https://x.example","insecureSkipVerify":"yes"}`, WantErr: `option "insecureSkipVerify": want true or false`},
		{Name: "not a mapping", Options: `["url"]`, WantErr: `want a mapping of option names`},
	})
}

func TestInsecureSkipVerifyAcceptsAnUnknownCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	m := message("m", notify.Notification{Message: "x"})
	if _, err := newSender(t, "hooks", map[string]any{"url": srv.URL}, nil).Send(context.Background(), m); err == nil {
		t.Error("Send to a server with an unknown certificate succeeded without insecureSkipVerify")
	}
	if _, err := newSender(t, "hooks", map[string]any{"url": srv.URL, "insecureSkipVerify": true}, nil).Send(context.Background(), m); err != nil {
		t.Errorf("Send with insecureSkipVerify: %v", err)
	}
}

func TestDocumentedExample(t *testing.T) {
	r := newReceiver(t)
	c := sendertest.Example(t, "### Webhook", map[string]string{"deploy-log-token": "tok-1", "deploy-log-signing-key": "key-1"})
	s := sendertest.New(t, c, webhook.New, "deploy-log", map[string]any{"url": r.URL + "/api"})
	m := sendertest.Message(t, c, "on-rollout-completed", []string{"rollout-completed"}, sendertest.Vars("Healthy", ""),
		notify.Destination{Service: "deploy-log"})
	sendertest.Send(t, s, m)
	req := r.requests()[0]
	if req.method != "POST" || req.path != "/api/rollouts/shop/web" || req.header.Get("Authorization") != "Bearer tok-1" {
		t.Errorf("request = %s %s (Authorization %q), want the documented POST with the token", req.method, req.path, req.header.Get("Authorization"))
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(req.body), &body); err != nil || body["rollout"] != "web" || body["revision"] != "3" || body["phase"] != "Healthy" {
		t.Errorf("body = %q (%v), want the documented JSON", req.body, err)
	}
	if err := webhook.Verify("key-1", req.header.Get(webhook.DefaultSignatureHeader), []byte(req.body), time.Now(), 5*time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
}
