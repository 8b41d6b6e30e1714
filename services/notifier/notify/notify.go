// Package notify holds what the notifier's parts share: a rendered
// Notification, where it goes (Destination), the Message that is queued
// on the bus and delivered, and the Sender every notification service
// implements.
//
// It also holds the one way each sender does the common steps, so that
// they do not drift apart: its New decodes the options with
// DecodeOptions (DecodeHTTPOptions when it embeds HTTPOptions: the
// client comes with them), which refuses unknown options, runs the
// options' Validate and logs IgnoredOptions; URL options are checked
// with ParseHTTPURL; a request goes out through Do (a timeout, errors
// without the URL's secret path) and its answer is classified by
// CheckResponse, or ClassifyStatus when a vendor's library reports the
// status. A sender's tests use services/notifier/sender/sendertest.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// Destination is where one notification goes: a configured service, by
// the name the configuration gives it (service.slack is "slack",
// service.webhook.github is "github"), and a recipient in that service's
// terms (a Slack channel, an email address; "" for a webhook).
type Destination struct {
	Service   string `json:"service"`
	Recipient string `json:"recipient"`
}

// String renders d as "service:recipient", as Argo's CLI does.
func (d Destination) String() string { return d.Service + ":" + d.Recipient }

// Notification is what templates render to for one destination: Argo's
// notification template fields. Every string is already rendered. The
// templates a trigger sends are merged into one Notification, later
// templates' fields winning.
type Notification struct {
	// Message is the plain text every service can send.
	Message string `json:"message,omitempty"`
	// Per-service parts, each optional.
	Slack *Slack `json:"slack,omitempty"`
	Teams *Teams `json:"teams,omitempty"`
	Email *Email `json:"email,omitempty"`
	// Webhook holds one request per webhook service name.
	Webhook map[string]Webhook `json:"webhook,omitempty"`
	GitHub  *GitHub            `json:"github,omitempty"`
}

// Slack is a template's slack part (notifications-engine's fields).
type Slack struct {
	// Attachments and Blocks are JSON arrays, as Slack's API takes them.
	Attachments string `json:"attachments,omitempty"`
	Blocks      string `json:"blocks,omitempty"`
	// GroupingKey threads messages: every message with the same key (per
	// channel) goes into the thread of the first one.
	GroupingKey string `json:"groupingKey,omitempty"`
	// NotifyBroadcast also shows a thread reply in the channel.
	NotifyBroadcast bool `json:"notifyBroadcast,omitempty"`
	// DeliveryPolicy is Post (default), PostAndUpdate or Update: with a
	// GroupingKey, Update edits the first message in place instead of
	// replying in its thread.
	DeliveryPolicy string `json:"deliveryPolicy,omitempty"`
	Username       string `json:"username,omitempty"`
	IconEmoji      string `json:"iconEmoji,omitempty"`
	IconURL        string `json:"iconURL,omitempty"`
}

// Slack delivery policies.
const (
	SlackPost          = "Post"
	SlackPostAndUpdate = "PostAndUpdate"
	SlackUpdate        = "Update"
)

// Teams is a template's teams part (notifications-engine's fields).
type Teams struct {
	// Template, when set, is the whole card as JSON and the other fields
	// are ignored.
	Template   string `json:"template,omitempty"`
	Title      string `json:"title,omitempty"`
	Summary    string `json:"summary,omitempty"`
	Text       string `json:"text,omitempty"`
	ThemeColor string `json:"themeColor,omitempty"`
	// Facts, Sections and PotentialAction are JSON arrays.
	Facts           string `json:"facts,omitempty"`
	Sections        string `json:"sections,omitempty"`
	PotentialAction string `json:"potentialAction,omitempty"`
}

// Email is a template's email part.
type Email struct {
	Subject string `json:"subject,omitempty"`
	Body    string `json:"body,omitempty"`
}

// Webhook is one request to a webhook service.
type Webhook struct {
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Body   string `json:"body,omitempty"`
}

// GitHub is a template's github part.
type GitHub struct {
	// RepoURLPath and RevisionPath are rendered: the repository URL and
	// the commit the status is for.
	RepoURLPath  string        `json:"repoURLPath,omitempty"`
	RevisionPath string        `json:"revisionPath,omitempty"`
	Status       *GitHubStatus `json:"status,omitempty"`
}

// GitHubStatus is a commit status.
type GitHubStatus struct {
	// State is error, failure, pending or success.
	State     string `json:"state"`
	Label     string `json:"label,omitempty"`
	TargetURL string `json:"targetURL,omitempty"`
}

// Message is one notification for one destination: what is queued on the
// bus and delivered. It is JSON on the bus.
type Message struct {
	// ID is stable: rendering the same status event for the same trigger
	// condition and destination again gives the same ID. It is the queued
	// event's id (so the bus drops a repeat) and the idempotency key a
	// sender passes on where the vendor takes one.
	ID           string       `json:"id"`
	Rollout      events.Ref   `json:"rollout"`
	Trigger      string       `json:"trigger"`
	Templates    []string     `json:"templates"`
	Destination  Destination  `json:"destination"`
	Notification Notification `json:"notification"`
	// Event is the status event the message was rendered from.
	Event EventRef `json:"event"`
	// Phase is the rollout's phase in that event: a sender that offers
	// chat buttons offers them only while there is something to decide
	// (Progressing or Paused).
	Phase string `json:"phase,omitempty"`
	// Thread is set at delivery, not when queued: the Receipt.Thread an
	// earlier message with the same destination and grouping key returned
	// ("" for the first). Slack threads and updates use it.
	Thread string `json:"thread,omitempty"`
	// Once, when set, is the key of the trigger condition's oncePer value
	// for this destination: the notifier queues the message only when no
	// other message claimed that key first (Argo's oncePer).
	Once string `json:"once,omitempty"`
}

// EventRef names the status event a message comes from.
type EventRef struct {
	ID    string    `json:"id"`
	Type  string    `json:"type"`
	Actor string    `json:"actor,omitempty"`
	Time  time.Time `json:"time"`
}

// Receipt is what a sender reports of a delivered message.
type Receipt struct {
	// Thread, when not "", is kept by the notifier for the message's
	// destination and grouping key and handed to later messages as
	// Message.Thread (Slack: "<channel id>:<ts>" of the first message).
	Thread string
}

// Sender delivers messages to one configured notification service.
//
// Send delivers m once. It returns an error wrapped with Permanent when
// retrying cannot help (a 4xx other than 408 and 429, a channel that does
// not exist), with RetryAfter when the vendor said when to come back (429
// with Retry-After), and a plain error for anything worth retrying later
// (a network error, a 5xx). Errors never contain a secret. Send must be
// safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, m Message) (Receipt, error)
}

// ServiceConfig is one configured notification service, as a sender
// package's New takes it.
type ServiceConfig struct {
	// Name is the service's name (service.webhook.github: "github");
	// Type is its kind ("webhook").
	Name, Type string
	// Options is the service's configuration as JSON, every $secret
	// reference already replaced by its value.
	Options json.RawMessage
	// HTTPClient is the client to call the vendor with (default
	// http.DefaultClient); tests point it at their server.
	HTTPClient *http.Client
	// Logger receives the sender's logs (never a secret).
	Logger *slog.Logger
}

// Factory builds the Sender of one configured service. It fails, naming
// the option, when the options are invalid or unknown.
type Factory func(ServiceConfig) (Sender, error)

// permanent marks an error that retrying cannot help.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as final: the message is dead-lettered with err's
// text as the reason. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

type retryAfter struct {
	err   error
	after time.Duration
}

func (r retryAfter) Error() string { return r.err.Error() }
func (r retryAfter) Unwrap() error { return r.err }

// RetryAfter asks for the message to be tried again after d (a vendor's
// Retry-After) instead of the delivery's backoff. RetryAfter(nil, d) is
// nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return retryAfter{err, d}
}

// RetryDelay returns the delay asked for with RetryAfter, if any.
func RetryDelay(err error) (time.Duration, bool) {
	var r retryAfter
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}

// Chat buttons. A sender that offers buttons on a message (Slack's
// Promote and Abort) gives each one of these action ids and the value
// "<namespace>/<rollout>"; the chat handler acts on them.
const (
	ActionPromote = "sluice.promote"
	ActionAbort   = "sluice.abort"
)
