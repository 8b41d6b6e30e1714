package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/slack-go/slack"
)

// ErrInvalidOption is wrapped by every error New returns for a service's
// options.
var ErrInvalidOption = errors.New("invalid slack option")

// Options is a slack service's configuration: the value of
// service.slack (or service.slack.<name>) in the notification
// configuration, with secrets resolved. The names are
// notifications-engine's where it has the option.
type Options struct {
	// Token is the bot token (xoxb-...) for Slack's Web API
	// (chat.postMessage, chat.update). Threads, updates and buttons need
	// it.
	Token string `json:"token"`
	// APIURL is the Web API's base URL (default https://slack.com/api/).
	APIURL string `json:"apiURL"`
	// Username and Icon (an emoji like :rocket: or an image URL) are the
	// defaults a template's slack.username / slack.iconEmoji /
	// slack.iconURL override. They need the chat:write.customize scope.
	Username string `json:"username"`
	Icon     string `json:"icon"`
	// InsecureSkipVerify skips TLS verification of Slack's certificate
	// (for a proxy in the middle; never for slack.com).
	InsecureSkipVerify bool `json:"insecureSkipVerify"`
	// DisableUnfurl stops Slack from expanding links in messages.
	DisableUnfurl bool `json:"disableUnfurl"`
	// Webhooks maps a recipient (a channel, as subscriptions name it) to
	// the incoming webhook that posts there; it wins over Token for that
	// recipient.
	Webhooks map[string]string `json:"webhooks"`
	// WebhookURL is the incoming webhook for every other recipient when
	// there is no Token.
	WebhookURL string `json:"webhookURL"`
	// Buttons adds Promote and Abort buttons to Web API messages about a
	// rollout that is Progressing or Paused (Sluice's addition). Needs
	// Token.
	Buttons bool `json:"buttons"`

	// Channels and SigningSecret are notifications-engine options
	// accepted so that Argo's configuration loads unchanged. They are not
	// used: subscriptions name the channels, and chat commands take their
	// signing secret from commands.slack.
	Channels      []string `json:"channels"`
	SigningSecret string   `json:"signingSecret"`
}

// options lists every option's JSON name, for the unknown-option error.
var options = []string{"token", "apiURL", "username", "icon", "insecureSkipVerify", "disableUnfurl",
	"webhooks", "webhookURL", "buttons", "channels", "signingSecret"}

// ParseOptions reads a service's options (JSON) strictly: an unknown
// option or a value of the wrong type is an error naming the option. It
// fills in the defaults and validates the result. Errors wrap
// ErrInvalidOption and never contain an option's value.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return o, o.Validate()
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return o, fmt.Errorf("%w: the options are not an object", ErrInvalidOption)
	}
	var unknown []string
	for k := range fields {
		if !slices.Contains(options, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return o, fmt.Errorf("%w: unknown option %s (known: %s)", ErrInvalidOption,
			strings.Join(quote(unknown), ", "), strings.Join(options, ", "))
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return o, fmt.Errorf("%w: option %s: want %s, not a %s", ErrInvalidOption, te.Field, te.Type, te.Value)
		}
		return o, fmt.Errorf("%w: the options do not parse", ErrInvalidOption)
	}
	o.Token = strings.TrimSpace(o.Token)
	o.WebhookURL = strings.TrimSpace(o.WebhookURL)
	for k, v := range o.Webhooks {
		o.Webhooks[k] = strings.TrimSpace(v)
	}
	if o.APIURL == "" {
		o.APIURL = slack.APIURL
	}
	return o, o.Validate()
}

// Validate reports the first problem with o, naming the option but never
// its value (a webhook URL is a secret).
func (o Options) Validate() error {
	if o.Token == "" && o.WebhookURL == "" && len(o.Webhooks) == 0 {
		return fmt.Errorf("%w: set token (a bot token, xoxb-...) to use the Web API, or webhookURL / webhooks (incoming webhook URLs)", ErrInvalidOption)
	}
	if o.Buttons && o.Token == "" {
		return fmt.Errorf("%w: buttons need token: only the Web API posts messages whose buttons the chat commands can answer in a thread", ErrInvalidOption)
	}
	if o.APIURL != "" && !isHTTPURL(o.APIURL) {
		return fmt.Errorf("%w: apiURL is not an http(s) URL", ErrInvalidOption)
	}
	if o.WebhookURL != "" && !isHTTPURL(o.WebhookURL) {
		return fmt.Errorf("%w: webhookURL is not an http(s) URL", ErrInvalidOption)
	}
	keys := make([]string, 0, len(o.Webhooks))
	for k := range o.Webhooks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !isHTTPURL(o.Webhooks[k]) {
			return fmt.Errorf("%w: webhooks[%s] is not an http(s) URL", ErrInvalidOption, k)
		}
	}
	return nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func quote(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
