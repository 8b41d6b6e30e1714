package notifier

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/sender/email"
	"github.com/sluicehq/sluice/services/notifier/sender/github"
	"github.com/sluicehq/sluice/services/notifier/sender/slack"
	"github.com/sluicehq/sluice/services/notifier/sender/teams"
	"github.com/sluicehq/sluice/services/notifier/sender/webhook"
)

// Senders are the notification services the notifier can send through,
// by configured type (service.<type> and service.<type>.<name>). Each
// sender package's New is a notify.Factory.
var Senders = map[string]notify.Factory{
	"slack":   slack.New,
	"teams":   teams.New,
	"webhook": webhook.New,
	"email":   email.New,
	"github":  github.New,
}

// BuildSenders builds the sender of each configured service with
// factories (nil: Senders), by service name. Every service that cannot be
// built is reported at once; an unknown type names the ones there are.
func BuildSenders(services []notify.ServiceConfig, factories map[string]notify.Factory, client *http.Client, log *slog.Logger) (map[string]notify.Sender, error) {
	if factories == nil {
		factories = Senders
	}
	out := map[string]notify.Sender{}
	var errs []error
	for _, sc := range services {
		f, ok := factories[sc.Type]
		if !ok {
			errs = append(errs, fmt.Errorf("service %s: %w of type %q in this build (have: %s)", sc.Name, ErrNoService, sc.Type, strings.Join(sortedKeys(factories), ", ")))
			continue
		}
		if sc.HTTPClient == nil {
			sc.HTTPClient = client
		}
		if sc.Logger == nil && log != nil {
			sc.Logger = log.With("notification_service", sc.Name)
		}
		snd, err := f(sc)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", sc.Name, err))
			continue
		}
		out[sc.Name] = snd
	}
	return out, errors.Join(errs...)
}
