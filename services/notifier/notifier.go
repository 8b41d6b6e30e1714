package notifier

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
)

// Names on the bus (docs/notifications.md, "Delivery").
const (
	// Source is the CloudEvents source of what the notifier publishes.
	Source = "/sluice/notifier"
	// TaskService is the <service> token of the delivery queue's subjects:
	// sluice.task.notifier.<namespace>.<rollout>.
	TaskService = "notifier"
	// DurableStatus reads the status stream and queues notifications.
	DurableStatus = "notifier"
	// DurableDelivery delivers the queue.
	DurableDelivery = "notifier-delivery"
	// DurableCDEvents turns status events into CDEvents.
	DurableCDEvents = "notifier-cdevents"
	// BucketState holds what was sent, Slack threads, oncePer marks and
	// each rollout's previous snapshot.
	BucketState = "sluice-notifier"
	// TypeNotification is the queued event: its data is a notify.Message
	// and its id the message's ID.
	TypeNotification = "io.sluice.notifier.notification.v1"
)

// Defaults of Config.
const (
	DefaultListen      = ":3101"
	DefaultMaxAttempts = 10
	// StateTTL is how long the state bucket keeps an entry: sent marks,
	// threads and oncePer marks not written for that long are forgotten.
	StateTTL = 30 * 24 * time.Hour
)

// ErrNoService is wrapped by the dead letter of a message whose
// destination names a service the configuration does not have.
var ErrNoService = errors.New("no notification service")

// Config configures the notifier. The zero value of each field means its
// default, but Source is required.
type Config struct {
	// Config gives the configuration and reports its changes (a file, the
	// ConfigMap on Kubernetes, or a fixed Setup in tests).
	Config ConfigSource
	// Listen is where the chat endpoints are served (--listen; "off":
	// not served).
	Listen string
	// DashboardURL is the dashboard's base URL, for links in messages.
	DashboardURL string
	// MaxAttempts is how many times a notification is tried before it is
	// dead-lettered (--max-attempts, default 10).
	MaxAttempts int
	// Status and Delivery tune the consumers; their Stream, Durable,
	// FilterSubjects (and the delivery's MaxDeliver) are set by the
	// service.
	Status, Delivery events.ConsumerConfig

	Bus         events.BusConfig
	Logger      *slog.Logger
	Metrics     *telemetry.Metrics
	StopTimeout time.Duration
}

// Defaults sets every zero field to its default.
func (c *Config) Defaults() {
	c.Bus.Defaults()
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Default()
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = daemon.DefaultStopTimeout
	}
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: notifier: %s", events.ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if err := c.Bus.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Config == nil {
		bad("no configuration: give --config FILE (or, on --platform kube, the ConfigMap argo-rollouts-notification-configmap)")
	}
	if c.MaxAttempts < 1 {
		bad("max attempts %d must be at least 1", c.MaxAttempts)
	}
	if c.StopTimeout < 0 {
		bad("stop timeout %s must not be negative", c.StopTimeout)
	}
	return errors.Join(errs...)
}
