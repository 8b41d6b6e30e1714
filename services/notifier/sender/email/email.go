// Package email is the notifier's email service (service.email): SMTP
// with STARTTLS when the server offers it (implicit TLS on port 465),
// AUTH PLAIN, and a Message-ID stable across retries so that a repeat of
// an at-least-once delivery is recognisable.
package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Type is the service type: service.email.
const Type = "email"

// Ports with a meaning of their own.
const (
	// DefaultPort is mail submission (RFC 6409), with STARTTLS.
	DefaultPort = 587
	// ImplicitTLSPort is submissions (RFC 8314): TLS from the first byte.
	ImplicitTLSPort = 465
)

// Options are the service's options, with notifications-engine's names.
type Options struct {
	Host string `json:"host"`
	// Port is a number (or a string of digits); DefaultPort when unset.
	Port     any    `json:"port,omitempty"`
	From     string `json:"from"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// HTML sends the body as text/html instead of text/plain.
	HTML               bool `json:"html,omitempty"`
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`

	port int
	from *mail.Address
}

// Validate checks o and fills in defaults.
func (o *Options) Validate() error {
	if o.Host == "" || strings.ContainsAny(o.Host, ":/ ") {
		return fmt.Errorf(`option "host": want the SMTP server's host name (the port goes in "port")`)
	}
	o.port = DefaultPort
	switch p := o.Port.(type) {
	case nil:
	case float64:
		o.port = int(p)
		if float64(o.port) != p {
			o.port = 0
		}
	case string:
		o.port, _ = strconv.Atoi(strings.TrimSpace(p))
	default:
		o.port = 0
	}
	if o.port <= 0 || o.port > 65535 {
		return fmt.Errorf(`option "port": want a port number`)
	}
	if o.From == "" {
		return fmt.Errorf(`option "from" is required: the sender's address`)
	}
	from, err := mail.ParseAddress(o.From)
	if err != nil {
		return fmt.Errorf(`option "from": %q is not an email address`, o.From)
	}
	o.from = from
	if o.Password != "" && o.Username == "" {
		return fmt.Errorf(`option "username" is required with "password"`)
	}
	return nil
}

// Sender sends a service's notifications.
type Sender struct {
	name      string
	opts      Options
	localName string
	now       func() time.Time
}

var _ notify.Sender = (*Sender)(nil)

// New builds the sender of one service.email (a notify.Factory).
func New(cfg notify.ServiceConfig) (notify.Sender, error) {
	var o Options
	if err := notify.DecodeOptions(cfg, &o); err != nil {
		return nil, err
	}
	local, err := os.Hostname()
	if err != nil || local == "" {
		local = "localhost"
	}
	return &Sender{name: cfg.Name, opts: o, localName: local, now: time.Now}, nil
}

// Send mails m to its recipient: one address or several separated by
// commas. SMTP's 4xx answers are retried, 5xx are final.
func (s *Sender) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	service := "email " + s.name
	to, err := ParseRecipients(m.Destination.Recipient)
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: %w", service, err))
	}
	msg := Compose(m, s.opts.from, to, s.opts.HTML, s.now())
	ctx, cancel := context.WithTimeout(ctx, notify.SendTimeout)
	defer cancel()
	if err := s.deliver(ctx, to, msg); err != nil {
		return notify.Receipt{}, classify(fmt.Sprintf("%s: %s:%d", service, s.opts.Host, s.opts.port), err)
	}
	return notify.Receipt{}, nil
}

// deliver runs one SMTP session: TLS (implicit on 465, else STARTTLS
// when offered), AUTH PLAIN when a username is set (net/smtp refuses to
// send it unencrypted except to localhost), then the message.
func (s *Sender) deliver(ctx context.Context, to []*mail.Address, msg []byte) error {
	addr := net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.port))
	tlsConfig := &tls.Config{ServerName: s.opts.Host, InsecureSkipVerify: s.opts.InsecureSkipVerify}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// net/smtp takes no context: the deadline bounds every exchange, and
	// a cancelled context closes the connection.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if s.opts.port == ImplicitTLSPort {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.opts.Host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(s.localName); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok && s.opts.port != ImplicitTLSPort {
		if err := c.StartTLS(tlsConfig); err != nil {
			return err
		}
	}
	if s.opts.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return notify.Permanent(errors.New("the server does not offer AUTH; unset username and password, or use its submission port"))
		}
		if err := c.Auth(smtp.PlainAuth("", s.opts.Username, s.opts.Password, s.opts.Host)); err != nil {
			if err.Error() == "unencrypted connection" {
				return notify.Permanent(errors.New("the server offers no STARTTLS: the password is not sent over an unencrypted connection (use port 465 or a server with STARTTLS)"))
			}
			return fmt.Errorf("authenticating as %s: %w", s.opts.Username, err)
		}
	}
	if err := c.Mail(s.opts.from.Address); err != nil {
		return fmt.Errorf("MAIL FROM %s: %w", s.opts.from.Address, err)
	}
	for _, a := range to {
		if err := c.Rcpt(a.Address); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", a.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// classify maps an SMTP session's error onto delivery: a 4xx reply is
// worth retrying (greylisting, a full queue, 421 service not
// available), a 5xx reply is final, and so is a certificate the server
// cannot prove; network errors are retried.
func classify(what string, err error) error {
	wrapped := fmt.Errorf("%s: %w", what, err)
	var (
		proto     *textproto.Error
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	switch {
	case notify.IsPermanent(err):
		return notify.Permanent(wrapped)
	case errors.As(err, &proto):
		if proto.Code >= 500 {
			return notify.Permanent(wrapped)
		}
		return wrapped
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return notify.Permanent(fmt.Errorf("%w (the server's certificate is not trusted; insecure_skip_verify skips the check)", wrapped))
	default:
		return wrapped
	}
}

// ParseRecipients reads a subscription's recipient: addresses separated
// by commas ("ops@example.com, Jane <jane@example.com>").
func ParseRecipients(recipient string) ([]*mail.Address, error) {
	var to []*mail.Address
	for part := range strings.SplitSeq(recipient, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		a, err := mail.ParseAddress(part)
		if err != nil {
			return nil, fmt.Errorf("recipient %q is not an email address", part)
		}
		to = append(to, a)
	}
	if len(to) == 0 {
		return nil, errors.New("no recipient: subscribe with an email address, e.g. subscribe.on-rollout-completed.email: ops@example.com")
	}
	return to, nil
}

// Compose renders m as an RFC 5322 message with CRLF line endings. Its
// Message-ID is "<m.ID@sluice>", so every attempt at one notification
// carries the same one. The subject is the template's email.subject,
// else the first line of its message; the body is email.body, else the
// message.
func Compose(m notify.Message, from *mail.Address, to []*mail.Address, html bool, now time.Time) []byte {
	subject, body := "", m.Notification.Message
	if e := m.Notification.Email; e != nil {
		subject = e.Subject
		if e.Body != "" {
			body = e.Body
		}
	}
	if subject == "" {
		subject, _, _ = strings.Cut(strings.TrimSpace(m.Notification.Message), "\n")
	}
	if subject == "" {
		subject = fmt.Sprintf("%s %s/%s", m.Trigger, m.Rollout.Namespace, m.Rollout.Name)
	}
	subject = strings.Join(strings.Fields(subject), " ") // no header folding tricks
	if r := []rune(subject); len(r) > 150 {
		subject = string(r[:149]) + "…"
	}
	addrs := make([]string, len(to))
	for i, a := range to {
		addrs[i] = a.String()
	}
	contentType := "text/plain; charset=utf-8"
	if html {
		contentType = "text/html; charset=utf-8"
	}
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", from.String())
	header("To", strings.Join(addrs, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+msgIDPart(m.ID)+"@sluice>")
	header("MIME-Version", "1.0")
	header("Content-Type", contentType)
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")))
	_ = qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}

// msgIDPart keeps the characters a Message-ID's left part may hold.
func msgIDPart(id string) string {
	if id == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)) {
			return r
		}
		return '-'
	}, id)
}
