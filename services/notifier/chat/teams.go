package chat

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Teams serves a Microsoft Teams outgoing webhook: a person mentions the
// webhook ("@Sluice promote shop/web") and gets the reply in the channel.
type Teams struct {
	cfg  TeamsConfig
	cmd  *commander
	seen Replays
}

// NewTeams returns the Teams endpoint cfg describes.
func NewTeams(cfg TeamsConfig, deps Deps) (*Teams, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.defaults(); err != nil {
		return nil, err
	}
	cmd, err := newCommander("teams", cfg.Roles, deps)
	if err != nil {
		return nil, err
	}
	t := &Teams{cfg: cfg, cmd: cmd, seen: deps.Replays}
	if t.seen == nil {
		t.seen = newSeen(2 * TeamsTimestampWindow)
	}
	return t, nil
}

// TeamsTimestampWindow is how far an activity's timestamp may be from the
// notifier's clock. Teams signs the body, timestamp included, so an old
// request sent again is refused.
const TeamsTimestampWindow = 5 * time.Minute

// Routes serves POST /teams/messages, the outgoing webhook's callback
// URL.
func (t *Teams) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /teams/messages", t.message)
	return mux
}

// VerifyTeams checks an outgoing webhook's Authorization header: "HMAC "
// and the base64 HMAC-SHA256 of the body keyed with the security token
// (base64-decoded). It returns an error wrapping ErrUnauthenticated that
// holds neither the key nor the header.
func VerifyTeams(key []byte, authorization string, body []byte) error {
	got, ok := strings.CutPrefix(authorization, "HMAC ")
	if !ok {
		return fmt.Errorf("%w: no Authorization: HMAC header", ErrUnauthenticated)
	}
	mac, err := base64.StdEncoding.DecodeString(strings.TrimSpace(got))
	if err != nil {
		return fmt.Errorf("%w: the HMAC is not base64", ErrUnauthenticated)
	}
	if !hmac.Equal(mac, SignTeams(key, body)) {
		return fmt.Errorf("%w: the HMAC does not match the security token", ErrUnauthenticated)
	}
	return nil
}

// SignTeams is the HMAC-SHA256 of body keyed with key, as Teams signs an
// outgoing webhook's request.
func SignTeams(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}

// activity is the part of a Bot Framework activity an outgoing webhook
// sends that a command needs.
type activity struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// Timestamp is when Teams sent the activity (RFC 3339).
	Timestamp string `json:"timestamp"`
	From      struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		AADObjectID string `json:"aadObjectId"`
	} `json:"from"`
}

var (
	mention = regexp.MustCompile(`(?s)<at>.*?</at>`)
	tag     = regexp.MustCompile(`(?s)<[^>]*>`)
)

// commandText is a message's text without the bot's mention and markup:
// "<at>Sluice</at> promote shop/web" is "promote shop/web".
func commandText(text string) string {
	text = mention.ReplaceAllString(text, " ")
	text = tag.ReplaceAllString(text, " ")
	text = html.UnescapeString(text)
	return strings.TrimSpace(strings.ReplaceAll(text, "\u00a0", " "))
}

func writeTeams(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "application/json")
	// Teams renders the reply as markdown: each line its own paragraph.
	_ = json.NewEncoder(w).Encode(map[string]string{"type": "message", "text": strings.ReplaceAll(text, "\n", "\n\n")})
}

// message answers one mention synchronously: Teams waits about 5 s for the
// reply, so a command waits up to ReplyTimeout for its answer and then
// says it was sent.
func (t *Teams) message(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := VerifyTeams(t.cfg.key, r.Header.Get("Authorization"), body); err != nil {
		t.cmd.deps.Logger.Warn("teams request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		t.cmd.done(Result{Outcome: OutcomeUnauthenticated})
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	var a activity
	if err := json.Unmarshal(body, &a); err != nil {
		http.Error(w, "not an activity", http.StatusBadRequest)
		return
	}
	if err := t.fresh(r.Context(), a, r.Header.Get("Authorization")); err != nil {
		t.cmd.deps.Logger.Warn("teams request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		if !errors.Is(err, ErrUnauthenticated) {
			t.cmd.done(Result{Outcome: OutcomeFailed})
			http.Error(w, "cannot check the request now; try again", http.StatusServiceUnavailable)
			return
		}
		t.cmd.done(Result{Outcome: OutcomeUnauthenticated})
		http.Error(w, "stale or replayed request", http.StatusUnauthorized)
		return
	}
	const prefix = "@Sluice"
	cmd, err := ParseCommand(commandText(a.Text))
	switch {
	case err != nil:
		t.cmd.done(Result{Outcome: OutcomeInvalid})
		writeTeams(w, err.Error()+"\n"+Usage(prefix))
		return
	case cmd.Name == CmdHelp:
		writeTeams(w, Usage(prefix))
		return
	case a.From.AADObjectID == "":
		writeTeams(w, "Sluice cannot tell who you are (no aadObjectId): only members of the organization may send commands")
		return
	}
	actor := "teams:" + a.From.AADObjectID
	ctx := r.Context()
	var res Result
	switch {
	case !t.cmd.allowed(actor, cmd):
		res = t.cmd.forbid(ctx, actor, cmd)
	case cmd.Name == CmdStatus:
		res = t.cmd.status(ctx, actor, cmd)
	default:
		res = t.cmd.send(ctx, actor, cmd, min(t.cfg.reply, t.cmd.deps.CommandTimeout))
	}
	t.cmd.done(res)
	text := res.Text()
	if res.Outcome == OutcomeUnanswered {
		text = fmt.Sprintf("⏳ %s sent (event %s); its outcome will appear in this channel's notifications", cmd, res.ID)
	}
	writeTeams(w, text)
}

// fresh refuses an activity signed with signature that was accepted
// before, or whose timestamp is outside TeamsTimestampWindow, with an
// error wrapping ErrUnauthenticated; any other error means it could not
// tell.
func (t *Teams) fresh(ctx context.Context, a activity, signature string) error {
	now := t.cmd.deps.Now()
	if a.Timestamp != "" {
		ts, err := time.Parse(time.RFC3339Nano, a.Timestamp)
		if err != nil {
			return fmt.Errorf("%w: timestamp %q is not RFC 3339", ErrUnauthenticated, a.Timestamp)
		}
		if age := now.Sub(ts); age > TeamsTimestampWindow || age < -TeamsTimestampWindow {
			return fmt.Errorf("%w: timestamp %s is %s from now, outside the %s window (a replay?)", ErrUnauthenticated, a.Timestamp, age.Round(time.Second), TeamsTimestampWindow)
		}
	}
	first, err := t.seen.First(ctx, signature, now)
	if err != nil {
		return fmt.Errorf("check the request is not a replay: %w", err)
	}
	if !first {
		return fmt.Errorf("%w: the same request was accepted before (a replay)", ErrUnauthenticated)
	}
	return nil
}
