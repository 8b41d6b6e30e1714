package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// DefaultURL is the NATS address used when neither --nats-url nor NATS_URL is set.
const DefaultURL = "nats://127.0.0.1:4222"

// ConnConfig says how to reach NATS. Its flag and environment names are the
// ones every Sluice binary shares (and, where it has them, the nats CLI).
// The zero value plus Defaults connects to DefaultURL without credentials.
type ConnConfig struct {
	// URLs lists one or more servers of one cluster.
	URLs []string
	// Name is reported to the server as the connection name (e.g. the service).
	Name string

	// Credentials: at most one of User/Password, Token, NKey seed file or
	// Creds (a .creds file holding a user JWT and its seed).
	User     string
	Password string
	Token    string
	NKey     string
	Creds    string

	// InboxPrefix replaces _INBOX as the prefix of the subjects where this
	// client receives replies, pulled messages and watch updates, so that a
	// NATS user's subscribe permission can be narrowed to its own inboxes
	// (the permissions grant <InboxPrefixOf(identity)>.>). Empty keeps _INBOX.
	InboxPrefix string

	// TLS: CA bundle to verify the server, client certificate and key for
	// mutual TLS. A tls:// URL or CA alone enables TLS with system roots.
	CA   string
	Cert string
	Key  string

	// ReconnectWait is the first delay between reconnect attempts; it doubles
	// up to MaxReconnectWait, with jitter. The client reconnects forever.
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration
	// ConnectTimeout bounds one dial; Connect retries dials until its context ends.
	ConnectTimeout time.Duration
	// PingInterval is how often the client asks the server for a pong,
	// and MaxPingsOut how many may go unanswered before the connection is
	// taken for dead and the client reconnects to another server of the
	// cluster. A server that froze (SIGSTOP, a VM paused, a long stall)
	// keeps its sockets open, so nothing else notices: with nats.go's
	// defaults (2 min, 2) every publish and pull through it hung for 4 to
	// 6 minutes (issue 21). Defaults 1s and 3: a frozen server is left
	// within about 4 s.
	PingInterval time.Duration
	MaxPingsOut  int
	// DrainTimeout bounds Close's wait for in-flight messages.
	DrainTimeout time.Duration
}

// Defaults fills unset fields with their documented defaults.
func (c *ConnConfig) Defaults() {
	if len(c.URLs) == 0 {
		c.URLs = []string{DefaultURL}
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultBackoff.Initial
	}
	if c.MaxReconnectWait == 0 {
		c.MaxReconnectWait = DefaultBackoff.Max
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = time.Second
	}
	if c.MaxPingsOut == 0 {
		c.MaxPingsOut = 3
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
}

// Validate reports every inconsistency at once, each wrapping ErrInvalidConfig.
func (c ConnConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	for _, u := range c.URLs {
		if strings.TrimSpace(u) == "" {
			bad("--nats-url has an empty entry")
		} else if err := checkURL(u); err != nil {
			bad("--nats-url %q: %v", redactURLs([]string{u}), err)
		}
	}
	modes := 0
	for _, set := range []bool{c.User != "" || c.Password != "", c.Token != "", c.NKey != "", c.Creds != ""} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		bad("use one of --nats-user/--nats-password, --nats-token, --nats-nkey or --nats-creds, not several")
	}
	if c.Password != "" && c.User == "" {
		bad("--nats-password needs --nats-user")
	}
	if (c.Cert == "") != (c.Key == "") {
		bad("--nats-cert and --nats-key go together")
	}
	if c.PingInterval < 0 || c.MaxPingsOut < 0 {
		bad("ping interval %s and max pings out %d must not be negative", c.PingInterval, c.MaxPingsOut)
	}
	if p := c.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t") || strings.HasSuffix(p, ".") || strings.HasPrefix(p, ".")) {
		bad("--nats-inbox-prefix %q: want a subject prefix without wildcards, spaces or a leading or trailing dot, e.g. _INBOX_orchestrator", p)
	}
	for flag, path := range map[string]string{"--nats-creds": c.Creds, "--nats-nkey": c.NKey, "--nats-ca": c.CA, "--nats-cert": c.Cert, "--nats-key": c.Key} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			bad("%s %s: %v", flag, path, err)
		}
	}
	return errors.Join(errs...)
}

// AddFlags registers the shared NATS flags on fs, with defaults taken from the
// environment (NATS_URL, NATS_CREDS, NATS_USER, NATS_PASSWORD, NATS_TOKEN,
// NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY).
func (c *ConnConfig) AddFlags(fs *pflag.FlagSet) {
	urls := os.Getenv("NATS_URL")
	if urls == "" {
		urls = DefaultURL
	}
	fs.StringSliceVar(&c.URLs, "nats-url", splitList(urls), "NATS server URLs, comma-separated (env NATS_URL)")
	fs.StringVar(&c.Creds, "nats-creds", os.Getenv("NATS_CREDS"), "NATS user credentials file (env NATS_CREDS)")
	fs.StringVar(&c.User, "nats-user", os.Getenv("NATS_USER"), "NATS user name (env NATS_USER)")
	fs.StringVar(&c.Password, "nats-password", os.Getenv("NATS_PASSWORD"), "NATS password (env NATS_PASSWORD)")
	fs.StringVar(&c.Token, "nats-token", os.Getenv("NATS_TOKEN"), "NATS authentication token (env NATS_TOKEN)")
	fs.StringVar(&c.NKey, "nats-nkey", os.Getenv("NATS_NKEY"), "NATS NKey seed file (env NATS_NKEY)")
	fs.StringVar(&c.CA, "nats-ca", os.Getenv("NATS_CA"), "CA certificate bundle to verify the NATS server (env NATS_CA)")
	fs.StringVar(&c.Cert, "nats-cert", os.Getenv("NATS_CERT"), "client certificate for NATS mutual TLS (env NATS_CERT)")
	fs.StringVar(&c.Key, "nats-key", os.Getenv("NATS_KEY"), "client private key for NATS mutual TLS (env NATS_KEY)")
	fs.StringVar(&c.InboxPrefix, "nats-inbox-prefix", os.Getenv("NATS_INBOX_PREFIX"), "prefix of this client's reply subjects instead of _INBOX, matching its NATS user's subscribe permission, e.g. _INBOX_orchestrator (env NATS_INBOX_PREFIX)")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c ConnConfig) natsOptions(log *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.Timeout(c.ConnectTimeout),
		nats.PingInterval(c.PingInterval),
		nats.MaxPingsOutstanding(c.MaxPingsOut),
		nats.DrainTimeout(c.DrainTimeout),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return backoffDelay(attempts, c.ReconnectWait, c.MaxReconnectWait)
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats async error", "subject", subject, "error", err)
		}),
	}
	switch {
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("%w: --nats-nkey %s: %v", ErrInvalidConfig, c.NKey, err)
		}
		opts = append(opts, o)
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	if c.CA != "" {
		opts = append(opts, nats.RootCAs(c.CA))
	}
	if c.Cert != "" {
		opts = append(opts, nats.ClientCert(c.Cert, c.Key))
	}
	return opts, nil
}

// backoffDelay is exponential backoff with full jitter in [d/2, d]: attempt 1
// waits about initial, each later attempt twice as long, capped at max.
func backoffDelay(attempt int, initial, max time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(d-half+1)
}

// Option configures a Client.
type Option func(*Client) error

// WithLogger sets the logger for connection and delivery events.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidConfig)
		}
		c.log = l
		return nil
	}
}

// WithTracerProvider sets where spans go; the default is otel's global provider.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) error {
		if tp == nil {
			return fmt.Errorf("%w: nil tracer provider", ErrInvalidConfig)
		}
		c.tracer = tp.Tracer(tracerName)
		return nil
	}
}

// WithPublishTimeout bounds each publish attempt's wait for the stream's ack
// (default 2s). Publish retries until its context ends, with the same
// message id, so an attempt that was stored after all is not stored
// twice. An attempt sent while the stream's peers elect a new leader goes
// to the old one and is never answered: the next attempt reaches the new
// leader, so this bounds how long a publish outlasts an election
// (TestPartitions).
func WithPublishTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("%w: publish timeout %s must be positive", ErrInvalidConfig, d)
		}
		c.publishTimeout = d
		return nil
	}
}

// WithAckWait sets the AckWait of the client's consumers that set none
// (BusConfig.AckWait, --bus-ack-wait; default 30s).
func WithAckWait(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("%w: ack wait %s must be positive", ErrInvalidConfig, d)
		}
		c.ackWait = d
		return nil
	}
}

// WithWaitReport has fn told about every failed attempt of Connect before
// it waits to try again (a service reports it on /readyz).
func WithWaitReport(fn func(Wait)) Option {
	return func(c *Client) error {
		if fn == nil {
			return fmt.Errorf("%w: nil wait report", ErrInvalidConfig)
		}
		c.onWait = fn
		return nil
	}
}

// Client publishes and consumes Sluice events over one NATS connection.
// It is safe for concurrent use.
type Client struct {
	nc             *nats.Conn
	js             jetstream.JetStream
	log            *slog.Logger
	tracer         trace.Tracer
	publishTimeout time.Duration
	// ackWait is the AckWait of consumers that set none (WithAckWait).
	ackWait  time.Duration
	ownsConn bool
	// obs, when set, is told about publishes and deliveries (WithObserver).
	obs      Observer
	lagEvery time.Duration
	// onWait hears of Connect's failed attempts (WithWaitReport).
	onWait func(Wait)
}

// attemptTimeout bounds the JetStream check of one attempt of Connect:
// the jetstream package's default for a request without a deadline.
const attemptTimeout = 5 * time.Second

// Connect dials NATS and checks that JetStream answers, retrying with
// DefaultBackoff's schedule (ReconnectWait, MaxReconnectWait) while the
// bus is Unavailable, until ctx ends; each failed attempt is logged and
// told to WithWaitReport's function. It returns at once, with an error
// wrapping ErrInvalidConfig, for a bad configuration or permissions the
// server refuses, ErrJetStreamNotEnabled when the server has no JetStream,
// and the server's error for credentials it refuses.
func Connect(ctx context.Context, cfg ConnConfig, opts ...Option) (*Client, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	nopts, err := cfg.natsOptions(c.log)
	if err != nil {
		return nil, err
	}
	url, addr := strings.Join(cfg.URLs, ","), redactURLs(cfg.URLs)
	err = Retry(ctx, Backoff{Initial: cfg.ReconnectWait, Max: cfg.MaxReconnectWait}, func(ctx context.Context) error {
		nc, err := nats.Connect(url, nopts...)
		if err != nil {
			return fmt.Errorf("connect to NATS at %s: %w", addr, err)
		}
		// One attempt's check waits as long as a JetStream request
		// without a deadline does, however long Connect may retry.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		if err := c.attach(actx, nc); err != nil {
			nc.Close()
			return err
		}
		return nil
	}, func(w Wait) {
		c.log.Warn("waiting for NATS", "url", addr, "attempt", w.Attempt, "error", w.Err, "retry_in", w.Next.Round(time.Millisecond))
		if c.onWait != nil {
			c.onWait(w)
		}
	})
	if err != nil {
		return nil, err
	}
	c.ownsConn = true
	return c, nil
}

// NewClient wraps an existing connection. Close does not close nc.
func NewClient(ctx context.Context, nc *nats.Conn, opts ...Option) (*Client, error) {
	c, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	return c, c.attach(ctx, nc)
}

func newClient(opts []Option) (*Client, error) {
	c := &Client{
		log:            slog.Default(),
		tracer:         otel.GetTracerProvider().Tracer(tracerName),
		publishTimeout: 2 * time.Second,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Client) attach(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := checkInbox(nc); err != nil {
		return err
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return jetStreamError(nc, err)
	}
	c.nc, c.js = nc, js
	return nil
}

// CheckJetStream asks the JetStream API for this account's information,
// which a cluster answers only while it has a JetStream leader, and
// returns the error Connect would have reported (ErrJetStreamUnavailable
// while the cluster has none, as after it lost its quorum), or nil. A
// running service binary asks it for its /readyz.
func (c *Client) CheckJetStream(ctx context.Context) error {
	if _, err := c.js.AccountInfo(ctx); err != nil {
		return jetStreamError(c.nc, err)
	}
	return nil
}

// jetStreamError is what a failed account-information request of nc
// means, as Connect and CheckJetStream report it.
func jetStreamError(nc *nats.Conn, err error) error {
	if denied := deniedJetStream(nc); denied != nil {
		return denied
	}
	// A server that announces JetStream but has no responder on its
	// API yet is still starting: the API answers "not enabled" for it.
	if enabled, _ := nc.ConnectedServerJetStream(); enabled && errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return startingError{fmt.Errorf("JetStream on the NATS server at %s is not answering yet: %v", nc.ConnectedUrlRedacted(), err)}
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("%w on the NATS server at %s: start nats-server with -js (or a jetstream {} block in its configuration), or enable it for this account", ErrJetStreamNotEnabled, nc.ConnectedUrlRedacted())
	}
	if Unavailable(err) && nc.IsConnected() {
		return fmt.Errorf("%w: the NATS server at %s answered, but its JetStream API did not (query JetStream account: %w): "+
			"the cluster has no JetStream leader, as when it has lost its quorum (most of its nodes down, cut off or out of disk space) or elects one",
			ErrJetStreamUnavailable, nc.ConnectedUrlRedacted(), err)
	}
	return fmt.Errorf("query JetStream account at %s: %w", nc.ConnectedUrlRedacted(), err)
}

// checkInbox subscribes to one of the client's inboxes and waits for the
// server's answer, so that a user who may not subscribe there (a missing or
// wrong --nats-inbox-prefix) learns it now, by name, rather than from every
// request timing out.
func checkInbox(nc *nats.Conn) error {
	sub, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		return fmt.Errorf("subscribe to this client's inbox: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("NATS server at %s: %w", nc.ConnectedUrlRedacted(), err)
	}
	if last := nc.LastError(); last != nil && strings.Contains(strings.ToLower(last.Error()), "permissions violation for subscription") {
		return fmt.Errorf("the NATS server at %s refused this client's reply subscription (%v): set --nats-inbox-prefix (NATS_INBOX_PREFIX) to the inbox prefix this NATS user may subscribe to, _INBOX_<identity> with Sluice's generated permissions", nc.ConnectedUrlRedacted(), last)
	}
	return nil
}

// checkURL parses u as nats.go will (a missing scheme means nats://), so
// that a malformed address fails at once instead of being dialled until
// the context ends.
func checkURL(u string) error {
	s := strings.TrimSpace(u)
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	parsed, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL: %v (want e.g. nats://127.0.0.1:4222)", err)
	}
	switch parsed.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("scheme %q: want nats, tls, ws or wss", parsed.Scheme)
	}
	if parsed.Hostname() == "" {
		return errors.New("no host (want e.g. nats://127.0.0.1:4222)")
	}
	return nil
}

// Address returns the servers of c for messages, with credentials in
// URLs replaced by ***.
func (c ConnConfig) Address() string {
	c.Defaults()
	return redactURLs(c.URLs)
}

func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				u = u[:scheme+3] + "***" + u[at:]
			}
		}
		out[i] = u
	}
	return strings.Join(out, ",")
}

// Conn returns the underlying NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// JetStream returns the JetStream context, for key-value and stream access.
func (c *Client) JetStream() jetstream.JetStream { return c.js }

// Close drains the connection (in-flight messages finish, subscriptions
// unsubscribe) when the client owns it, waiting up to the drain timeout.
func (c *Client) Close() error {
	if !c.ownsConn || c.nc.IsClosed() {
		return nil
	}
	done := make(chan struct{})
	c.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
		return err
	}
	<-done
	return nil
}
