package chat

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// ErrUnauthenticated means a request is not proved to come from Slack or
// Teams: no signature, a wrong one, or (Slack) a timestamp outside the
// window.
var ErrUnauthenticated = errors.New("request not authenticated")

// Slack serves a Slack app's slash command (/sluice ...) and its buttons
// (block_actions with notify.ActionPromote or notify.ActionAbort).
type Slack struct {
	cfg  SlackConfig
	cmd  *commander
	api  *slack.Client // nil without a bot token
	seen Replays

	mu      sync.Mutex // guards closed and wg.Add against Close
	closed  bool
	wg      sync.WaitGroup
	closing chan struct{}
}

// NewSlack returns the Slack endpoints cfg describes. cfg is validated
// (ParseSlack already did).
func NewSlack(cfg SlackConfig, deps Deps) (*Slack, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.defaults(); err != nil {
		return nil, err
	}
	cmd, err := newCommander("slack", cfg.Roles, deps)
	if err != nil {
		return nil, err
	}
	// A request's timestamp may be up to a window old or ahead: its
	// signature is remembered for twice that.
	s := &Slack{cfg: cfg, cmd: cmd, seen: deps.Replays, closing: make(chan struct{})}
	if s.seen == nil {
		s.seen = newSeen(2 * cfg.window)
	}
	if cfg.Token != "" {
		api := cfg.APIURL
		if !strings.HasSuffix(api, "/") {
			api += "/"
		}
		s.api = slack.New(cfg.Token, slack.OptionAPIURL(api), slack.OptionHTTPClient(deps.HTTPClient))
	}
	return s, nil
}

// Routes serves POST /slack/commands (the slash command's request URL)
// and POST /slack/interactions (the app's interactivity request URL).
func (s *Slack) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /slack/commands", s.verified(s.slashCommand))
	mux.HandleFunc("POST /slack/interactions", s.verified(s.interaction))
	return mux
}

// Close cancels the answers still waiting and waits until their
// goroutines end.
func (s *Slack) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// verified reads the body and calls next with its form when the request
// carries a valid signature from the last TimestampWindow; otherwise it
// answers 401 and logs why, without the secret or the signature.
func (s *Slack) verified(next func(http.ResponseWriter, *http.Request, url.Values)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
			return
		}
		now := s.cmd.deps.Now()
		err = VerifySlack(s.cfg.SigningSecret, r.Header, body, now, s.cfg.window)
		if err == nil {
			first, ferr := s.seen.First(r.Context(), r.Header.Get("X-Slack-Signature"), now)
			if ferr != nil {
				s.cmd.deps.Logger.Warn("slack request refused: cannot check it is not a replay", "path", r.URL.Path, "err", ferr)
				s.cmd.done(Result{Outcome: OutcomeFailed})
				http.Error(w, "cannot check the request now; try again", http.StatusServiceUnavailable)
				return
			}
			if !first {
				err = fmt.Errorf("%w: the same request was accepted before (a replay)", ErrUnauthenticated)
			}
		}
		if err != nil {
			s.cmd.deps.Logger.Warn("slack request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			s.cmd.done(Result{Outcome: OutcomeUnauthenticated})
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			http.Error(w, "not a form", http.StatusBadRequest)
			return
		}
		next(w, r, form)
	}
}

// VerifySlack checks Slack's request signature v0: header
// X-Slack-Signature is "v0=" and the hex HMAC-SHA256, keyed with the
// signing secret, of "v0:<X-Slack-Request-Timestamp>:<body>", and the
// timestamp is within window of now (older requests are refused as
// replays). It returns an error wrapping ErrUnauthenticated that holds
// neither the secret nor the signature.
func VerifySlack(secret string, h http.Header, body []byte, now time.Time, window time.Duration) error {
	ts := h.Get("X-Slack-Request-Timestamp")
	sig := h.Get("X-Slack-Signature")
	if ts == "" || sig == "" {
		return fmt.Errorf("%w: no X-Slack-Signature or X-Slack-Request-Timestamp", ErrUnauthenticated)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not a number", ErrUnauthenticated, ts)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > window || age < -window {
		return fmt.Errorf("%w: timestamp %s is %s from now, outside the %s window (a replay?)", ErrUnauthenticated, ts, age.Round(time.Second), window)
	}
	got, ok := strings.CutPrefix(sig, "v0=")
	gotMAC, err := hex.DecodeString(got)
	if !ok || err != nil {
		return fmt.Errorf("%w: the signature is not v0=<hex>", ErrUnauthenticated)
	}
	if !hmac.Equal(gotMAC, SignSlack(secret, ts, body)) {
		return fmt.Errorf("%w: the signature does not match the signing secret", ErrUnauthenticated)
	}
	return nil
}

// SignSlack is Slack's v0 signature of body sent at timestamp ts (the
// MAC, without "v0=" and hex).
func SignSlack(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return m.Sum(nil)
}

// slackAnswer is an answer in a response body or to a response_url.
type slackAnswer struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

func writeSlack(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(slackAnswer{ResponseType: slack.ResponseTypeEphemeral, Text: text})
}

// slashCommand answers /sluice <command> at once: help, status and a
// refusal in the response; a command it sends is acknowledged ("promoting
// shop/web ...") and its outcome posted to response_url.
func (s *Slack) slashCommand(w http.ResponseWriter, r *http.Request, form url.Values) {
	prefix := form.Get("command")
	if prefix == "" {
		prefix = "/sluice"
	}
	actor := "slack:" + form.Get("user_id")
	cmd, err := ParseCommand(form.Get("text"))
	switch {
	case err != nil:
		s.cmd.done(Result{Outcome: OutcomeInvalid})
		writeSlack(w, err.Error()+"\n"+Usage(prefix))
		return
	case cmd.Name == CmdHelp:
		writeSlack(w, Usage(prefix))
		return
	case form.Get("user_id") == "":
		writeSlack(w, "no user_id in the request")
		return
	}
	if !s.cmd.allowed(actor, cmd) {
		writeSlack(w, s.cmd.done(s.cmd.forbid(r.Context(), actor, cmd)).Text())
		return
	}
	if cmd.Name == CmdStatus {
		writeSlack(w, s.cmd.done(s.cmd.status(r.Context(), actor, cmd)).Text())
		return
	}
	responseURL := form.Get("response_url")
	s.later(func(ctx context.Context) {
		res := s.cmd.done(s.cmd.send(ctx, actor, cmd, s.cmd.deps.CommandTimeout))
		s.respond(ctx, responseURL, "", slack.ResponseTypeInChannel, res.Text())
	})
	writeSlack(w, fmt.Sprintf("%s %s ...", progressive(cmd.Name), cmd.Ref))
}

// interaction acts on a button press: the outcome is posted in the
// message's thread (with a bot token), else to response_url.
func (s *Slack) interaction(w http.ResponseWriter, r *http.Request, form url.Values) {
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		http.Error(w, "no interaction payload", http.StatusBadRequest)
		return
	}
	if cb.Type != slack.InteractionTypeBlockActions || cb.User.ID == "" {
		// Other interactions are not Sluice's: acknowledge them.
		w.WriteHeader(http.StatusOK)
		return
	}
	actor := "slack:" + cb.User.ID
	channel := cb.Channel.ID
	if channel == "" {
		channel = cb.Container.ChannelID
	}
	thread := cb.Container.ThreadTs
	if thread == "" {
		thread = cb.Container.MessageTs
	}
	if thread == "" {
		thread = cb.Message.Timestamp
	}
	for _, a := range cb.ActionCallback.BlockActions {
		cmd, err := ButtonCommand(a.ActionID, a.Value)
		if err != nil {
			continue
		}
		ctx := r.Context()
		if !s.cmd.allowed(actor, cmd) {
			res := s.cmd.done(s.cmd.forbid(ctx, actor, cmd))
			s.later(func(ctx context.Context) {
				s.respond(ctx, cb.ResponseURL, "", slack.ResponseTypeEphemeral, res.Text())
			})
			continue
		}
		s.later(func(ctx context.Context) {
			res := s.cmd.done(s.cmd.send(ctx, actor, cmd, s.cmd.deps.CommandTimeout))
			text := fmt.Sprintf("<@%s>: %s", cb.User.ID, res.Text())
			if s.api != nil && channel != "" && thread != "" {
				_, _, err := s.api.PostMessageContext(ctx, channel, slack.MsgOptionText(text, false), slack.MsgOptionTS(thread))
				if err == nil {
					return
				}
				s.cmd.deps.Logger.Warn("post the outcome in the thread; posting to response_url instead", "channel", channel, "err", err)
			}
			s.respond(ctx, cb.ResponseURL, thread, slack.ResponseTypeInChannel, text)
		})
	}
	w.WriteHeader(http.StatusOK)
}

// later runs f after the response, with a context that ends with Close
// or after the command timeout and a margin to post the answer. After
// Close it does nothing.
func (s *Slack) later(f func(ctx context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), s.cmd.deps.CommandTimeout+30*time.Second)
		defer cancel()
		go func() {
			select {
			case <-s.closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		f(ctx)
	}()
}

// respond posts text to a request's response_url.
func (s *Slack) respond(ctx context.Context, responseURL, thread, responseType, text string) {
	if responseURL == "" {
		s.cmd.deps.Logger.Warn("no response_url to answer to", "text", text)
		return
	}
	msg := &slack.WebhookMessage{Text: text, ResponseType: responseType, ThreadTimestamp: thread}
	if err := slack.PostWebhookCustomHTTPContext(ctx, responseURL, s.cmd.deps.HTTPClient, msg); err != nil {
		// The URL is a capability: log its host only.
		host := ""
		if u, perr := url.Parse(responseURL); perr == nil {
			host = u.Host
		}
		s.cmd.deps.Logger.Warn("answer on response_url", "host", host, "err", redact(err.Error(), responseURL))
	}
}

// redact removes secret from text.
func redact(text, secret string) string {
	if secret == "" {
		return text
	}
	return strings.ReplaceAll(text, secret, "<redacted>")
}

// progressive is "promoting" for promote.
func progressive(name string) string {
	switch name {
	case CmdPromote:
		return "promoting"
	case CmdAbort:
		return "aborting"
	case CmdRetry:
		return "retrying"
	case CmdPause:
		return "pausing"
	case CmdResume:
		return "resuming"
	}
	return name
}
