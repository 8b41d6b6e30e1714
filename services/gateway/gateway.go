package gateway

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// Defaults.
const (
	DefaultListen         = ":3100"
	DefaultCommandTimeout = 10 * time.Second
	DefaultMaxWait        = 30 * time.Minute
	DefaultHeartbeat      = 15 * time.Second
)

// Config configures the gateway. The zero value of each field means its
// default.
type Config struct {
	// Listen is where the API and the dashboard are served (--listen;
	// sluice dev: --dashboard-listen, 127.0.0.1:3100).
	Listen string
	// Auth says who may call and what they may do.
	Auth auth.Config
	// CommandTimeout bounds how long a command waits for its answer.
	CommandTimeout time.Duration
	// MaxWait bounds ?wait=completed.
	MaxWait time.Duration
	// StateDir is the local platform's state directory, read for a
	// rollout's processes when the gateway runs on the same machine (sluice
	// dev); empty when it does not.
	StateDir string
	// Pods reads the pods (or processes) of a rollout's revisions; default
	// the local platform's processes under StateDir, none without one.
	Pods Pods
	// Heartbeat is how often the event stream sends a comment to keep
	// idle connections open (default 15s).
	Heartbeat time.Duration

	Bus         events.BusConfig
	Logger      *slog.Logger
	Metrics     *telemetry.Metrics
	StopTimeout time.Duration
}

// Defaults sets every zero field to its default.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Pods == nil {
		c.Pods = LocalPods{StateDir: c.StateDir}
	}
	if c.Metrics == nil {
		c.Metrics = telemetry.Default()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first field that cannot work, wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.CommandTimeout < 0:
		return fmt.Errorf("%w: command timeout %s must be positive", events.ErrInvalidConfig, c.CommandTimeout)
	case c.MaxWait < 0:
		return fmt.Errorf("%w: max wait %s must be positive", events.ErrInvalidConfig, c.MaxWait)
	case c.Heartbeat < 0:
		return fmt.Errorf("%w: heartbeat %s must be positive", events.ErrInvalidConfig, c.Heartbeat)
	}
	return nil
}
