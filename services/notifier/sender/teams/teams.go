// Package teams is the notifier's Microsoft Teams service (service.teams):
// it posts to Teams workflow webhooks (Power Automate's "When a Teams
// webhook request is received") an Adaptive Card built from a template's
// teams part, and to legacy Office 365 connector URLs the MessageCard
// notifications-engine sends.
package teams

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Type is the service type: service.teams.
const Type = "teams"

// maxPayload is the largest message Teams takes (about 28 KB).
const maxPayload = 28 << 10

// Options are the service's options, with notifications-engine's names.
type Options struct {
	// RecipientUrls maps a subscription's recipient to its webhook URL:
	// a workflow webhook, or a legacy connector URL (…/webhookb2/…).
	RecipientUrls map[string]string `json:"recipientUrls"`
	notify.HTTPOptions
	notify.IgnoredOptions
}

// Validate checks o. Its errors name the recipient, never the URL: a
// webhook URL carries its own signature.
func (o *Options) Validate() error {
	if len(o.RecipientUrls) == 0 {
		return fmt.Errorf("option \"recipientUrls\" is required: a mapping of recipient names to webhook URLs")
	}
	for _, r := range slices.Sorted(maps.Keys(o.RecipientUrls)) {
		if _, err := notify.ParseHTTPURL("recipientUrls."+r, o.RecipientUrls[r]); err != nil {
			return err
		}
	}
	return nil
}

// Sender sends a service's notifications.
type Sender struct {
	name   string
	urls   map[string]*url.URL
	client *http.Client
}

var _ notify.Sender = (*Sender)(nil)

// New builds the sender of one service.teams (a notify.Factory).
func New(cfg notify.ServiceConfig) (notify.Sender, error) {
	var o Options
	client, err := notify.DecodeHTTPOptions(cfg, &o)
	if err != nil {
		return nil, err
	}
	urls := make(map[string]*url.URL, len(o.RecipientUrls))
	for r, raw := range o.RecipientUrls {
		urls[r], _ = url.Parse(raw)
	}
	return &Sender{name: cfg.Name, urls: urls, client: client}, nil
}

// Send posts m to the URL of its recipient: an Adaptive Card to a
// workflow webhook, a MessageCard to a legacy connector.
func (s *Sender) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	service := "teams " + s.name
	u, ok := s.urls[m.Destination.Recipient]
	if !ok {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: no URL for recipient %q in recipientUrls (it has %s)",
			service, m.Destination.Recipient, strings.Join(slices.Sorted(maps.Keys(s.urls)), ", ")))
	}
	legacy := IsConnectorURL(u)
	var payload []byte
	var err error
	if legacy {
		payload, err = MessageCard(m.Notification)
	} else {
		payload, err = WorkflowMessage(m.Notification)
	}
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: %w", service, err))
	}
	if len(payload) > maxPayload {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: the message is %d KB; Teams takes at most 28 KB", service, len(payload)>>10))
	}
	req, err := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(payload))
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: recipient %q: cannot make a request", service, m.Destination.Recipient))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := notify.Do(ctx, s.client, service, req)
	if err != nil {
		return notify.Receipt{}, err
	}
	defer resp.Body.Close()
	if err := notify.CheckResponse(service, resp); err != nil {
		return notify.Receipt{}, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// A legacy connector answers "1"; anything else in a 2xx is its
	// complaint about the card.
	if text := strings.TrimSpace(string(body)); legacy && text != "" && text != "1" {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: the connector refused the card: %s", service, text))
	}
	return notify.Receipt{}, nil
}

// IsConnectorURL reports whether u is a legacy Office 365 connector
// (incoming webhook) URL rather than a workflow webhook.
func IsConnectorURL(u *url.URL) bool {
	return strings.Contains(u.Path, "/webhookb2/") || strings.HasPrefix(u.Path, "/webhook/") ||
		strings.Contains(u.Path, "/IncomingWebhook/")
}
