package gateway

import (
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

	Bus         events.BusConfig
	Logger      *slog.Logger
	Metrics     *telemetry.Metrics
	StopTimeout time.Duration
}
