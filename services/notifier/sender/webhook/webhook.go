// Package webhook is the notifier's generic webhook service
// (service.webhook.<name>): one HTTP request per notification, with the
// method, path and body a template's webhook.<name> part renders, the
// configured headers and basic auth, and Sluice's additions: an
// X-Sluice-Delivery header with the message id, so a receiver can drop a
// repeat of an at-least-once delivery, and an optional HMAC-SHA256
// signature of the body.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Type is the service type: service.webhook.<name>.
const Type = "webhook"

// Headers Sluice sets on every request.
const (
	// DeliveryHeader carries the message's id: the same for every attempt
	// to deliver one notification.
	DeliveryHeader = "X-Sluice-Delivery"
	// DefaultSignatureHeader carries the signature unless signature.header
	// names another.
	DefaultSignatureHeader = "X-Sluice-Signature"
)

// Options are the service's options, with notifications-engine's names.
type Options struct {
	// URL is where requests go; a template's webhook path is appended.
	URL string `json:"url"`
	// Headers are set on every request (Content-Type among them: none is
	// set otherwise, as in Argo).
	Headers   []Header   `json:"headers,omitempty"`
	BasicAuth *BasicAuth `json:"basicAuth,omitempty"`
	// Signature, Sluice's addition, signs each request's body.
	Signature *Signature `json:"signature,omitempty"`
	notify.HTTPOptions
	notify.IgnoredOptions
}

// Header is one request header.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// BasicAuth is HTTP basic authentication.
type BasicAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Signature configures the request signature: header (default
// X-Sluice-Signature) is "t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>" keyed with secret>".
type Signature struct {
	Secret string `json:"secret"`
	Header string `json:"header,omitempty"`
}

// Validate checks o and fills in defaults.
func (o *Options) Validate() error {
	if o.URL == "" {
		return fmt.Errorf("option \"url\" is required")
	}
	if _, err := notify.ParseHTTPURL("url", o.URL); err != nil {
		return err
	}
	for i, h := range o.Headers {
		if !httpguts.ValidHeaderFieldName(h.Name) {
			return fmt.Errorf("option \"headers[%d].name\": want an HTTP header name", i)
		}
		if !httpguts.ValidHeaderFieldValue(h.Value) {
			return fmt.Errorf("option \"headers[%d].value\" (%s): has a character a header cannot carry", i, h.Name)
		}
	}
	if o.BasicAuth != nil && o.BasicAuth.Username == "" {
		return fmt.Errorf("option \"basicAuth.username\" is required with basicAuth")
	}
	if s := o.Signature; s != nil {
		if s.Secret == "" {
			return fmt.Errorf("option \"signature.secret\" is required with signature")
		}
		if s.Header == "" {
			s.Header = DefaultSignatureHeader
		}
		if !httpguts.ValidHeaderFieldName(s.Header) {
			return fmt.Errorf("option \"signature.header\": want an HTTP header name")
		}
	}
	return nil
}

// Sender sends a service's notifications.
type Sender struct {
	name   string
	opts   Options
	base   *url.URL
	client *http.Client
	now    func() time.Time
}

var _ notify.Sender = (*Sender)(nil)

// New builds the sender of one service.webhook.<name> (a notify.Factory).
func New(cfg notify.ServiceConfig) (notify.Sender, error) {
	var o Options
	client, err := notify.DecodeHTTPOptions(cfg, &o)
	if err != nil {
		return nil, err
	}
	base, _ := url.Parse(o.URL)
	return &Sender{name: cfg.Name, opts: o, base: base, client: client, now: time.Now}, nil
}

// Send makes the request of m: the template's webhook part for this
// service's name (method, default GET as in Argo; path appended to url;
// body), else a GET with m's plain message as the body. The recipient is
// not used: the URL is the service's.
func (s *Sender) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	method, target, body := s.request(m)
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("webhook %s: method %q or path cannot make a request", s.name, method))
	}
	for _, h := range s.opts.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "sluice-notifier")
	}
	if b := s.opts.BasicAuth; b != nil {
		req.SetBasicAuth(b.Username, b.Password)
	}
	req.Header.Set(DeliveryHeader, m.ID)
	if sig := s.opts.Signature; sig != nil {
		req.Header.Set(sig.Header, Sign(sig.Secret, s.now(), []byte(body)))
	}
	resp, err := notify.Do(ctx, s.client, "webhook "+s.name, req)
	if err != nil {
		return notify.Receipt{}, err
	}
	defer resp.Body.Close()
	if err := notify.CheckResponse("webhook "+s.name, resp); err != nil {
		return notify.Receipt{}, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return notify.Receipt{}, nil
}

// request is the method, URL and body of m's request: pure.
func (s *Sender) request(m notify.Message) (method, target, body string) {
	method, target, body = http.MethodGet, s.opts.URL, m.Notification.Message
	if w, ok := m.Notification.Webhook[s.name]; ok {
		body = w.Body
		if w.Method != "" {
			method = strings.ToUpper(w.Method)
		}
		if w.Path != "" {
			target = strings.TrimRight(target, "/") + "/" + strings.TrimLeft(w.Path, "/")
		}
	}
	return method, target, body
}

// Sign is the signature header's value for body sent at t: a receiver
// recomputes it (see Verify).
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// ErrBadSignature is returned by Verify.
var ErrBadSignature = errors.New("webhook signature does not match")

// Verify checks a signature header's value against body, as a receiver
// written in Go can: the signature must match and its time be within
// window of now (a replay of an old request fails). It is the receiving
// side of Sign, kept here so that the documented scheme is tested.
func Verify(secret, header string, body []byte, now time.Time, window time.Duration) error {
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("malformed: %w", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Errorf("signed %s from now, outside the %s window: %w", d.Round(time.Second), window, ErrBadSignature)
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}
