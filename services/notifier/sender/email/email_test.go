package email_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/sender/email"
	"github.com/sluicehq/sluice/services/notifier/sender/sendertest"
)

const (
	user     = "sluice@example.com"
	password = "smtp-pw-topsecret"
)

// mailServer is a real SMTP server (go-smtp) in the test process:
// AUTH PLAIN checked, mail only from an authenticated session, and
// replies the test sets.
type mailServer struct {
	addr string
	mu   sync.Mutex
	// delivered holds each accepted message.
	delivered []delivered
	// dataErr and rcptErr, when set, answer DATA and RCPT.
	dataErr, rcptErr *smtp.SMTPError
	tls              bool // a session saw TLS
}

type delivered struct {
	from string
	to   []string
	data []byte
}

func startMailServer(t *testing.T, host string, withTLS bool) *mailServer {
	t.Helper()
	ms := &mailServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{ms: ms, conn: c}, nil
	}))
	srv.Domain = "mail.test"
	srv.AllowInsecureAuth = true // the client, not the server, must refuse
	if withTLS {
		// httptest's certificate is for 127.0.0.1 and example.com, signed
		// by nobody the client trusts.
		ts := httptest.NewTLSServer(nil)
		srv.TLSConfig = ts.TLS.Clone()
		ts.Close()
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	ms.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ms
}

func (ms *mailServer) got() []delivered {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]delivered(nil), ms.delivered...)
}

func (ms *mailServer) set(f func()) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	f()
}

type session struct {
	ms     *mailServer
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, u, p string) error {
		if u != user || p != password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		s.authed = true
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	if _, ok := s.conn.TLSConnectionState(); ok {
		s.ms.set(func() { s.ms.tls = true })
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.ms.mu.Lock()
	defer s.ms.mu.Unlock()
	if s.ms.rcptErr != nil && strings.HasPrefix(to, "nobody@") {
		return s.ms.rcptErr
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.ms.mu.Lock()
	defer s.ms.mu.Unlock()
	if s.ms.dataErr != nil {
		return s.ms.dataErr
	}
	s.ms.delivered = append(s.ms.delivered, delivered{s.from, s.to, data})
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func newSender(t *testing.T, ms *mailServer, extra map[string]any) notify.Sender {
	t.Helper()
	host, port, _ := net.SplitHostPort(ms.addr)
	opts := map[string]any{"host": host, "port": port, "from": "Sluice <sluice@example.com>", "username": user, "password": password}
	for k, v := range extra {
		opts[k] = v
	}
	raw, _ := json.Marshal(opts)
	s, err := email.New(notify.ServiceConfig{Name: "email", Type: email.Type, Options: raw})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func message(recipient string, n notify.Notification) notify.Message {
	return notify.Message{
		ID: "0f3a9c-on-rollout-completed", Trigger: "on-rollout-completed",
		Rollout:      events.Ref{Namespace: "shop", Name: "web"},
		Destination:  notify.Destination{Service: "email", Recipient: recipient},
		Notification: n,
	}
}

func TestMailIsDeliveredWithHeadersAndBody(t *testing.T) {
	ms := startMailServer(t, "127.0.0.1", false)
	s := newSender(t, ms, nil)
	n := notify.Notification{
		Message: "ignored: the email part has a body",
		Email:   &notify.Email{Subject: "Rollout web has been completed – revision 3", Body: "Rollout web is Healthy.\nRevision 3 is stable: " + strings.Repeat("long line ", 12)},
	}
	for range 2 { // a repeat of the same message
		if _, err := s.Send(context.Background(), message("ops@example.com, Jane <jane@example.com>", n)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	got := ms.got()
	if len(got) != 2 {
		t.Fatalf("delivered %d messages, want 2", len(got))
	}
	d := got[0]
	if d.from != "sluice@example.com" || strings.Join(d.to, ",") != "ops@example.com,jane@example.com" {
		t.Errorf("envelope = %s -> %v, want sluice@example.com -> both recipients", d.from, d.to)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(d.data))
	if err != nil {
		t.Fatalf("the message does not parse: %v\n%s", err, d.data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subject != "Rollout web has been completed – revision 3" {
		t.Errorf("Subject = %q (%v), want the template's subject", subject, err)
	}
	if id := msg.Header.Get("Message-ID"); id != "<0f3a9c-on-rollout-completed@sluice>" {
		t.Errorf("Message-ID = %q, want <message id@sluice>", id)
	}
	if to := msg.Header.Get("To"); !strings.Contains(to, "ops@example.com") || !strings.Contains(to, `"Jane" <jane@example.com>`) {
		t.Errorf("To = %q, want both recipients", to)
	}
	if ct := msg.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	if _, err := mail.ParseDate(msg.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", msg.Header.Get("Date"), err)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if want := strings.ReplaceAll(n.Email.Body, "\n", "\r\n") + "\r\n"; string(body) != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	again, _ := mail.ReadMessage(bytes.NewReader(got[1].data))
	if again.Header.Get("Message-ID") != msg.Header.Get("Message-ID") {
		t.Errorf("a repeat has another Message-ID: a mail client could not tell it is the same")
	}
}

func TestHTMLOverSTARTTLS(t *testing.T) {
	ms := startMailServer(t, "127.0.0.1", true)
	s := newSender(t, ms, map[string]any{"html": true, "insecure_skip_verify": true})
	n := notify.Notification{Message: "<p>Rollout <b>web</b> completed</p>"}
	if _, err := s.Send(context.Background(), message("ops@example.com", n)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	ms.mu.Lock()
	sawTLS := ms.tls
	ms.mu.Unlock()
	if !sawTLS {
		t.Error("the session was not upgraded with STARTTLS")
	}
	msg, _ := mail.ReadMessage(bytes.NewReader(ms.got()[0].data))
	if ct := msg.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q, want text/html", ct)
	}
	if msg.Header.Get("Subject") != n.Message {
		t.Errorf("Subject = %q, want the message's first line without an email part", msg.Header.Get("Subject"))
	}

	strict := newSender(t, ms, nil)
	_, err := strict.Send(context.Background(), message("ops@example.com", n))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "insecure_skip_verify") {
		t.Errorf("an untrusted certificate = %v, want a permanent error pointing at insecure_skip_verify", err)
	}
}

func TestRepliesAreClassified(t *testing.T) {
	ms := startMailServer(t, "127.0.0.1", false)
	s := newSender(t, ms, nil)
	m := message("ops@example.com", notify.Notification{Message: "x"})
	for _, tc := range []struct {
		name      string
		data      *smtp.SMTPError
		rcpt      *smtp.SMTPError
		to        string
		permanent bool
		text      string
	}{
		{name: "421 service not available is retried", data: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down"}},
		{name: "451 greylisted is retried", data: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again later"}},
		{name: "550 rejected is final", data: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message rejected as spam"}, permanent: true, text: "rejected as spam"},
		{name: "an unknown recipient is final", rcpt: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}, to: "ops@example.com,nobody@example.com", permanent: true, text: "RCPT TO nobody@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms.set(func() { ms.dataErr, ms.rcptErr = tc.data, tc.rcpt })
			m := m
			if tc.to != "" {
				m.Destination.Recipient = tc.to
			}
			_, err := s.Send(context.Background(), m)
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			if notify.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, notify.IsPermanent(err), tc.permanent)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %q, want it to contain %q", err, tc.text)
			}
		})
	}
	if n := len(ms.got()); n != 0 {
		t.Errorf("%d messages were accepted, want none", n)
	}
}

func TestPasswordNeverShown(t *testing.T) {
	ms := startMailServer(t, "127.0.0.1", false)
	wrong := newSender(t, ms, map[string]any{"password": "wrong-" + password})
	_, err := wrong.Send(context.Background(), message("ops@example.com", notify.Notification{Message: "x"}))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "535") {
		t.Fatalf("a refused password = %v, want a permanent 535", err)
	}
	_, optErr := email.New(notify.ServiceConfig{Name: "email", Type: email.Type,
		Options: json.RawMessage(`{"host":"smtp.example.com","from":"a@example.com","password":"` + password + `"}`)})
	for _, e := range []error{err, optErr} {
		if e == nil || strings.Contains(e.Error(), password) {
			t.Errorf("error %v shows the password", e)
		}
	}
}

func TestNoPasswordOverAnUnencryptedConnection(t *testing.T) {
	// 127.0.0.2 is loopback on Linux but not a name net/smtp treats as
	// local: like a remote server without STARTTLS.
	ms := startMailServer(t, "127.0.0.2", false)
	s := newSender(t, ms, nil)
	_, err := s.Send(context.Background(), message("ops@example.com", notify.Notification{Message: "x"}))
	if !notify.IsPermanent(err) || !strings.Contains(err.Error(), "unencrypted") {
		t.Errorf("AUTH without TLS = %v, want a permanent error saying the password is not sent unencrypted", err)
	}
}

func TestUnreachableServerIsRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ms := &mailServer{addr: addr}
	_, err = newSender(t, ms, nil).Send(context.Background(), message("ops@example.com", notify.Notification{Message: "x"}))
	if err == nil || notify.IsPermanent(err) {
		t.Errorf("a refused connection = %v, want a retryable error", err)
	}
}

func TestRecipients(t *testing.T) {
	for in, want := range map[string]string{
		"ops@example.com":                     "ops@example.com",
		" ops@example.com , dev@example.com ": "ops@example.com,dev@example.com",
		"Jane Doe <jane@example.com>":         "jane@example.com",
		"ops@example.com,":                    "ops@example.com",
		"":                                    "error",
		"ops":                                 "error",
		"ops@example.com, not an address":     "error",
	} {
		to, err := email.ParseRecipients(in)
		got := "error"
		if err == nil {
			var a []string
			for _, t := range to {
				a = append(a, t.Address)
			}
			got = strings.Join(a, ",")
		}
		if got != want {
			t.Errorf("ParseRecipients(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

func TestComposeFallsBackToTheMessage(t *testing.T) {
	from := &mail.Address{Address: "sluice@example.com"}
	m := message("ops@example.com", notify.Notification{Message: "Rollout web aborted\nstep 2 failed its analysis"})
	m.ID = "id with spaces/and<angle>"
	msg, err := mail.ReadMessage(bytes.NewReader(email.Compose(m, from, []*mail.Address{{Address: "ops@example.com"}}, false, time.Unix(0, 0))))
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("Subject") != "Rollout web aborted" {
		t.Errorf("Subject = %q, want the message's first line", msg.Header.Get("Subject"))
	}
	if id := msg.Header.Get("Message-ID"); id != "<id-with-spaces/and-angle-@sluice>" {
		t.Errorf("Message-ID = %q, want the id with unusable characters replaced", id)
	}
	m.Notification.Message = ""
	msg, _ = mail.ReadMessage(bytes.NewReader(email.Compose(m, from, []*mail.Address{{Address: "ops@example.com"}}, false, time.Unix(0, 0))))
	if msg.Header.Get("Subject") != "on-rollout-completed shop/web" {
		t.Errorf("Subject = %q, want the trigger and rollout", msg.Header.Get("Subject"))
	}
}

func TestOptions(t *testing.T) {
	sendertest.CheckOptions(t, email.New, email.Type, []sendertest.OptionCase{
		{Name: "minimal", Options: `{"host":"smtp.example.com","from":"sluice@example.com"}`},
		{Name: "Argo's options", Options: `{"host":"smtp.gmail.com","port":465,"from":"a@example.com","username":"a@example.com","password":"p","html":true,"insecure_skip_verify":false}`},
		{Name: "port as a string", Options: `{"host":"smtp.example.com","port":"2525","from":"a@example.com"}`},
		{Name: "no host", Options: `{"from":"a@example.com"}`, WantErr: `option "host"`},
		{Name: "host with port", Options: `{"host":"smtp.example.com:587","from":"a@example.com"}`, WantErr: `option "host"`},
		{Name: "bad port", Options: `{"host":"smtp.example.com","port":70000,"from":"a@example.com"}`, WantErr: `option "port": want a port number`},
		{Name: "no from", Options: `{"host":"smtp.example.com"}`, WantErr: `option "from" is required`},
		{Name: "bad from", Options: `{"host":"smtp.example.com","from":"sluice"}`, WantErr: `option "from": "sluice" is not an email address`},
		{Name: "password without username", Options: `{"host":"smtp.example.com","from":"a@example.com","password":"p"}`, WantErr: `option "username" is required`},
		{Name: "Go-style name", Options: `{"host":"smtp.example.com","from":"a@example.com","insecureSkipVerify":true}`, WantErr: `unknown option "insecureSkipVerify"`},
	})
}

func TestDocumentedExample(t *testing.T) {
	ms := startMailServer(t, "127.0.0.1", false)
	c := sendertest.Example(t, "### Email", map[string]string{"email-password": password})
	host, port, _ := net.SplitHostPort(ms.addr)
	s := sendertest.New(t, c, email.New, "gmail", map[string]any{"host": host, "port": port})
	m := sendertest.Message(t, c, "on-rollout-aborted", []string{"rollout-aborted"}, sendertest.Vars("Degraded", "step 2 failed its analysis"),
		notify.Destination{Service: "gmail", Recipient: "ops@example.com"})
	sendertest.Send(t, s, m)
	msg, err := mail.ReadMessage(bytes.NewReader(ms.got()[0].data))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if msg.Header.Get("Subject") != "Rollout web has been aborted." ||
		!strings.Contains(string(body), "Rollout shop/web was aborted: step 2 failed its analysis\r\nhttps://sluice.example/rollouts/shop/web") {
		t.Errorf("subject %q, body %q: want the documented ones", msg.Header.Get("Subject"), body)
	}
}
