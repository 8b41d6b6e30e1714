package slack

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/slack-go/slack"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

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
	// HTTPOptions has insecureSkipVerify: for a proxy in the middle,
	// never for slack.com.
	notify.HTTPOptions
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

// Validate fills in the defaults (apiURL; token and webhook URLs
// trimmed) and reports the first problem with o, naming the option but
// never its value (a webhook URL is a secret). New runs it through
// notify.DecodeOptions.
func (o *Options) Validate() error {
	o.Token = strings.TrimSpace(o.Token)
	o.WebhookURL = strings.TrimSpace(o.WebhookURL)
	for k, v := range o.Webhooks {
		o.Webhooks[k] = strings.TrimSpace(v)
	}
	if o.APIURL == "" {
		o.APIURL = slack.APIURL
	}
	if o.Token == "" && o.WebhookURL == "" && len(o.Webhooks) == 0 {
		return errors.New(`set option "token" (a bot token, xoxb-...) to use the Web API, or "webhookURL" / "webhooks" (incoming webhook URLs)`)
	}
	if o.Buttons && o.Token == "" {
		return errors.New(`option "buttons" needs "token": only the Web API posts messages whose buttons the chat commands can answer in a thread`)
	}
	if _, err := notify.ParseHTTPURL("apiURL", o.APIURL); err != nil {
		return err
	}
	if o.WebhookURL != "" {
		if _, err := notify.ParseHTTPURL("webhookURL", o.WebhookURL); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Webhooks)) {
		if _, err := notify.ParseHTTPURL("webhooks."+k, o.Webhooks[k]); err != nil {
			return err
		}
	}
	return nil
}
