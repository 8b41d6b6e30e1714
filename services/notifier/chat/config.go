package chat

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// ErrInvalidConfig is wrapped by every problem of a commands.slack or
// commands.teams value.
var ErrInvalidConfig = errors.New("invalid chat commands configuration")

// Defaults.
const (
	// DefaultTimestampWindow is how old a Slack request may be: Slack's
	// documented replay window.
	DefaultTimestampWindow = 5 * time.Minute
	// DefaultTeamsReplyTimeout is how long a Teams command waits for its
	// answer before replying that it was sent: Teams gives an outgoing
	// webhook about 5 s.
	DefaultTeamsReplyTimeout = 4 * time.Second
)

// SlackConfig is the value of the configuration's commands.slack: the
// Slack app whose slash command and buttons send commands, and who may
// send which.
type SlackConfig struct {
	// SigningSecret is the app's signing secret ("$slack-signing-secret"
	// in the ConfigMap), which every request is verified with.
	SigningSecret string `json:"signingSecret"`
	// Token is the app's bot token (xoxb-...). With it, the outcome of a
	// button press is posted in the message's thread (chat.postMessage,
	// scope chat:write); without it, through the request's response_url.
	Token string `json:"token,omitempty"`
	// APIURL is Slack's Web API base URL; default https://slack.com/api/.
	APIURL string `json:"apiURL,omitempty"`
	// TimestampWindow is how old a request may be before it is refused as
	// a replay; default 5m.
	TimestampWindow spec.DurationString `json:"timestampWindow,omitempty"`
	// Roles give Slack users ("slack:<user id>", or "*" for every user of
	// the workspace) a role per namespace: viewer for status, operator for
	// the commands that change a rollout.
	Roles auth.Bindings `json:"roles"`

	window time.Duration
}

// TeamsConfig is the value of commands.teams: a Teams outgoing webhook
// and who may send which command.
type TeamsConfig struct {
	// SecurityToken is the outgoing webhook's security token (base64), the
	// HMAC key Teams signs each request with.
	SecurityToken string `json:"securityToken"`
	// ReplyTimeout is how long a command waits for its answer before the
	// reply says it was sent; default 4s, at most 4.5s (Teams waits 5 s).
	ReplyTimeout spec.DurationString `json:"replyTimeout,omitempty"`
	// Roles give Teams users ("teams:<aadObjectId>", or "*") a role per
	// namespace.
	Roles auth.Bindings `json:"roles"`

	key   []byte
	reply time.Duration
}

// ParseSlack reads commands.slack (JSON, secrets resolved), sets its
// defaults and validates it.
func ParseSlack(raw json.RawMessage) (SlackConfig, error) {
	var c SlackConfig
	if err := decodeStrict(raw, &c); err != nil {
		return c, fmt.Errorf("commands.slack: %w: %v", ErrInvalidConfig, err)
	}
	c.Defaults()
	return c, c.Validate()
}

// ParseTeams reads commands.teams (JSON, secrets resolved), sets its
// defaults and validates it.
func ParseTeams(raw json.RawMessage) (TeamsConfig, error) {
	var c TeamsConfig
	if err := decodeStrict(raw, &c); err != nil {
		return c, fmt.Errorf("commands.teams: %w: %v", ErrInvalidConfig, err)
	}
	c.Defaults()
	return c, c.Validate()
}

func decodeStrict(raw json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// Defaults fills what is unset.
func (c *SlackConfig) Defaults() {
	if c.APIURL == "" {
		c.APIURL = "https://slack.com/api/"
	}
	if c.TimestampWindow == "" {
		c.TimestampWindow = spec.DurationString(DefaultTimestampWindow.String())
	}
}

// Validate reports every problem, each with its field path under
// commands.slack, wrapping ErrInvalidConfig. Error texts never hold the
// secret or the token.
func (c *SlackConfig) Validate() error {
	const p = "commands.slack"
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %w: %s", p, field, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.SigningSecret == "" {
		bad("signingSecret", "required: the Slack app's signing secret (a $name reference to a secret)")
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("apiURL", "%q is not an http(s) URL", c.APIURL)
	}
	if d, err := c.TimestampWindow.Duration(); err != nil {
		bad("timestampWindow", "%v", err)
	} else if d <= 0 {
		bad("timestampWindow", "must be more than 0")
	} else {
		c.window = d
	}
	errs = append(errs, validateRoles(p+".roles", c.Roles, "slack:"))
	return errors.Join(errs...)
}

// Defaults fills what is unset.
func (c *TeamsConfig) Defaults() {
	if c.ReplyTimeout == "" {
		c.ReplyTimeout = spec.DurationString(DefaultTeamsReplyTimeout.String())
	}
}

// Validate reports every problem, each with its field path under
// commands.teams, wrapping ErrInvalidConfig.
func (c *TeamsConfig) Validate() error {
	const p = "commands.teams"
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %w: %s", p, field, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.SecurityToken == "" {
		bad("securityToken", "required: the outgoing webhook's security token (a $name reference to a secret)")
	} else if k, err := base64.StdEncoding.DecodeString(c.SecurityToken); err != nil || len(k) == 0 {
		bad("securityToken", "not base64, as Teams shows it when the outgoing webhook is created")
	} else {
		c.key = k
	}
	if d, err := c.ReplyTimeout.Duration(); err != nil {
		bad("replyTimeout", "%v", err)
	} else if d <= 0 || d > 4500*time.Millisecond {
		bad("replyTimeout", "%s: want more than 0 and at most 4.5s (Teams waits 5 s for the reply)", d)
	} else {
		c.reply = d
	}
	errs = append(errs, validateRoles(p+".roles", c.Roles, "teams:"))
	return errors.Join(errs...)
}

// validateRoles checks the bindings as the auth file's, and that each
// subject is "*" or an actor of this chat (prefix): another actor could
// never send a command here, so it is a mistake.
func validateRoles(path string, roles auth.Bindings, prefix string) error {
	var errs []error
	if len(roles) == 0 {
		errs = append(errs, fmt.Errorf("%s: %w: no role bindings: every command would be refused", path, ErrInvalidConfig))
	}
	if err := roles.Validate(path); err != nil {
		errs = append(errs, invalid{err})
	}
	for i, b := range roles {
		for k, s := range b.Subjects {
			if s != "*" && !strings.HasPrefix(s, prefix) {
				errs = append(errs, fmt.Errorf("%s[%d].subjects[%d]: %w: %q: want %s<id> or \"*\"", path, i, k, ErrInvalidConfig, s, prefix))
			}
		}
	}
	return errors.Join(errs...)
}

// invalid is a problem found by another package's validation (the role
// bindings'), its text unchanged, that also wraps ErrInvalidConfig.
type invalid struct{ err error }

func (e invalid) Error() string   { return e.err.Error() }
func (e invalid) Unwrap() []error { return []error{e.err, ErrInvalidConfig} }
