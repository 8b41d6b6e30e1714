// Package slack is the notifier's Slack service: messages through Slack's
// Web API with a bot token (chat.postMessage, chat.update: threads,
// in-place updates and Promote/Abort buttons) or through incoming
// webhooks, with notifications-engine's options and template fields.
//
// The Web API has no idempotency key: a retry after an answer that was
// lost posts the message again. An update (deliveryPolicy Update) is
// idempotent.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/slack-go/slack"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Type is the service type in the configuration: service.slack or
// service.slack.<name>.
const Type = "slack"

var _ notify.Factory = New

// New builds the sender of one configured slack service. It fails, naming
// the option, when the options are unknown or invalid, or when neither a
// token nor a webhook is set; its errors wrap notify.ErrInvalidOptions.
func New(cfg notify.ServiceConfig) (notify.Sender, error) {
	var o Options
	hc, err := notify.DecodeHTTPOptions(cfg, &o)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("service", cfg.Name)
	if o.SigningSecret != "" {
		logger.Warn("slack service option signingSecret is not used: chat commands take their signing secret from commands.slack")
	}
	s := &sender{name: cfg.Name, opts: o, http: hc, logger: logger}
	if o.Token != "" {
		api := o.APIURL
		if !strings.HasSuffix(api, "/") {
			api += "/"
		}
		s.api = slack.New(o.Token, slack.OptionHTTPClient(hc), slack.OptionAPIURL(api))
	}
	for _, v := range append([]string{o.Token, o.WebhookURL}, slices.Collect(maps.Values(o.Webhooks))...) {
		if v != "" {
			s.secrets = append(s.secrets, v)
		}
	}
	return s, nil
}

type sender struct {
	name   string
	opts   Options
	api    *slack.Client // nil without a token
	http   *http.Client
	logger *slog.Logger
	// secrets are scrubbed from every error Send returns.
	secrets []string
}

// Send posts m to the channel m.Destination.Recipient names (a name like
// #deploys or an id), through the recipient's webhook when one is
// configured, else through the Web API. With a grouping key and the Web
// API, the first message's Receipt.Thread is "<channel id>:<ts>", and a
// later message carrying it as m.Thread is a reply in that thread, an
// update of the first message, or both (the template's deliveryPolicy).
func (s *sender) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	ctx, cancel := context.WithTimeout(ctx, notify.SendTimeout)
	defer cancel()
	r, err := s.send(ctx, m)
	return r, s.scrub(err)
}

func (s *sender) send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	channel := strings.TrimSpace(m.Destination.Recipient)
	c, err := s.content(m)
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("slack service %q, templates %s: %w", s.name, strings.Join(m.Templates, ","), err))
	}
	if hook, ok := s.webhook(channel); ok {
		return notify.Receipt{}, s.postWebhook(ctx, hook, channel, m, c)
	}
	if s.api == nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("slack service %q: no webhook for channel %q and no token: add it to webhooks, or set webhookURL or token", s.name, channel))
	}
	if channel == "" {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("slack service %q: no channel: subscribe with %s:<channel>", s.name, s.name))
	}
	if s.opts.Buttons && hasDecision(m.Phase) && m.Rollout.Name != "" {
		c.blocks = withButtons(c.blocks, m.Notification.Message, m.Rollout)
	}
	sl := slackPart(m)
	thread, ok := parseThread(m.Thread)
	if m.Thread != "" && !ok {
		// Only this package writes threads; a bad one starts a new thread
		// rather than stopping the grouping key's messages for good.
		s.logger.Warn("slack thread not understood, posting a new message", "thread", m.Thread, "channel", channel)
	}
	p, err := plan(sl.GroupingKey, sl.DeliveryPolicy, ok)
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("slack service %q, templates %s: %w", s.name, strings.Join(m.Templates, ","), err))
	}
	if p.update {
		err := s.update(ctx, thread, c)
		if isGone(err) {
			// The first message was deleted: start over with a new one.
			s.logger.Info("slack message to update is gone, posting a new one", "channel", thread.channel, "ts", thread.ts)
			return s.post(ctx, channel, threadRef{}, sl, c, true)
		}
		if err != nil {
			return notify.Receipt{}, s.classify("update a message in", channel, err)
		}
	}
	if p.post {
		if p.reply {
			_, err := s.post(ctx, thread.channel, thread, sl, c, false)
			return notify.Receipt{Thread: m.Thread}, err
		}
		return s.post(ctx, channel, threadRef{}, sl, c, sl.GroupingKey != "")
	}
	return notify.Receipt{Thread: m.Thread}, nil
}

// post sends a message, a reply when in is set, and returns its thread
// when keep is set.
func (s *sender) post(ctx context.Context, channel string, in threadRef, sl notify.Slack, c content, keep bool) (notify.Receipt, error) {
	opts := c.options()
	opts = append(opts, s.identity(sl)...)
	if in.ts != "" {
		opts = append(opts, slack.MsgOptionTS(in.ts))
		if sl.NotifyBroadcast {
			opts = append(opts, slack.MsgOptionBroadcast())
		}
	}
	if s.opts.DisableUnfurl {
		opts = append(opts, slack.MsgOptionDisableLinkUnfurl(), slack.MsgOptionDisableMediaUnfurl())
	}
	id, ts, err := s.api.PostMessageContext(ctx, channel, opts...)
	if err != nil {
		return notify.Receipt{}, s.classify("post to", channel, err)
	}
	s.logger.Debug("slack message posted", "channel", channel, "channelID", id, "ts", ts, "threadTS", in.ts)
	if !keep {
		return notify.Receipt{}, nil
	}
	return notify.Receipt{Thread: threadRef{channel: id, ts: ts}.String()}, nil
}

func (s *sender) update(ctx context.Context, t threadRef, c content) error {
	_, _, _, err := s.api.UpdateMessageContext(ctx, t.channel, t.ts, c.options()...)
	if err == nil {
		s.logger.Debug("slack message updated", "channelID", t.channel, "ts", t.ts)
	}
	return err
}

// identity is the username and icon a message is posted with: the
// template's, else the service's.
func (s *sender) identity(sl notify.Slack) []slack.MsgOption {
	var opts []slack.MsgOption
	username := sl.Username
	if username == "" {
		username = s.opts.Username
	}
	if username != "" {
		opts = append(opts, slack.MsgOptionUsername(username))
	}
	emoji, iconURL := splitIcon(s.opts.Icon)
	if sl.IconEmoji != "" || sl.IconURL != "" {
		emoji, iconURL = sl.IconEmoji, sl.IconURL
	}
	if emoji != "" {
		opts = append(opts, slack.MsgOptionIconEmoji(emoji))
	}
	if iconURL != "" {
		opts = append(opts, slack.MsgOptionIconURL(iconURL))
	}
	return opts
}

// splitIcon reads the icon option: a URL, else an emoji.
func splitIcon(icon string) (emoji, iconURL string) {
	if strings.HasPrefix(icon, "https://") || strings.HasPrefix(icon, "http://") {
		return "", icon
	}
	return icon, ""
}

// webhook returns the incoming webhook for channel: its own, else the
// default one when there is no token.
func (s *sender) webhook(channel string) (string, bool) {
	if u, ok := s.opts.Webhooks[channel]; ok {
		return u, true
	}
	if u, ok := s.opts.Webhooks[strings.TrimPrefix(channel, "#")]; ok {
		return u, true
	}
	if s.api == nil && s.opts.WebhookURL != "" {
		return s.opts.WebhookURL, true
	}
	return "", false
}

// postWebhook sends m through an incoming webhook. A webhook posts to the
// channel it was made for; it cannot thread, update or carry buttons
// that are answered in a thread.
func (s *sender) postWebhook(ctx context.Context, hook, channel string, m notify.Message, c content) error {
	sl := slackPart(m)
	msg := slack.WebhookMessage{Text: c.text, Attachments: c.attachments}
	if len(c.blocks) > 0 {
		msg.Blocks = &slack.Blocks{BlockSet: c.blocks}
	}
	msg.Username = sl.Username
	if msg.Username == "" {
		msg.Username = s.opts.Username
	}
	msg.IconEmoji, msg.IconURL = splitIcon(s.opts.Icon)
	if sl.IconEmoji != "" || sl.IconURL != "" {
		msg.IconEmoji, msg.IconURL = sl.IconEmoji, sl.IconURL
	}
	if s.opts.DisableUnfurl {
		f := false
		msg.UnfurlLinks, msg.UnfurlMedia = &f, &f
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return notify.Permanent(fmt.Errorf("slack service %q: encode the webhook message: %w", s.name, err))
	}
	service := fmt.Sprintf("slack service %q: %s", s.name, hookName(channel))
	req, err := http.NewRequest(http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("%s is not a valid URL", service))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := notify.Do(ctx, s.http, service, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := notify.CheckResponse(service, resp); err != nil {
		return err
	}
	if slackPart(m).GroupingKey != "" {
		s.logger.Debug("slack webhook message posted without a thread: threads need token", "channel", channel)
	} else {
		s.logger.Debug("slack webhook message posted", "channel", channel)
	}
	return nil
}

// hookName names the webhook for channel in errors (never its URL).
func hookName(channel string) string {
	if channel == "" {
		return "webhookURL"
	}
	return fmt.Sprintf("the webhook for %q", channel)
}

// scrub removes every secret of the service from err's text, keeping what
// it wraps (so IsPermanent and RetryDelay still see through it).
func (s *sender) scrub(err error) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	clean := text
	for _, v := range s.secrets {
		clean = strings.ReplaceAll(clean, v, "[redacted]")
	}
	if clean == text {
		return err
	}
	return scrubbed{err: err, text: clean}
}

type scrubbed struct {
	err  error
	text string
}

func (e scrubbed) Error() string { return e.text }
func (e scrubbed) Unwrap() error { return e.err }

// hasDecision reports whether a rollout in phase has something for a
// person to decide: promote or abort.
func hasDecision(phase string) bool {
	return phase == events.PhaseProgressing || phase == events.PhasePaused
}

func slackPart(m notify.Message) notify.Slack {
	if m.Notification.Slack == nil {
		return notify.Slack{}
	}
	return *m.Notification.Slack
}
