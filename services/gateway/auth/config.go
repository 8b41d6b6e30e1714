package auth

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is wrapped by every problem Config.Validate, LoadFile
// and File.Validate report.
var ErrInvalidConfig = errors.New("invalid auth configuration")

// Defaults.
const (
	DefaultRatePerSecond  = 20
	DefaultBurst          = 40
	DefaultAnonymousActor = "anonymous"
	DefaultSessionTTL     = 12 * time.Hour
)

// Config configures authentication and authorization. The zero value of
// each field means its default.
type Config struct {
	// File is the auth file (--auth-config; sluice dev --dashboard-auth):
	// users, tokens, OIDC and role bindings (docs/gateway.md). Empty with
	// Anonymous set means no sign-in.
	File string
	// Anonymous, when not RoleNone, lets callers in without credentials
	// with that role in every namespace, as AnonymousActor: sluice dev
	// without --dashboard-auth on loopback, as Argo's
	// `kubectl argo rollouts dashboard` does.
	Anonymous      Role
	AnonymousActor string
	// ReadOnly refuses every command, whatever the caller's role.
	ReadOnly bool
	// RatePerSecond and Burst limit each caller's requests (defaults 20
	// and 40); a caller over the limit gets 429 with Retry-After. A
	// negative RatePerSecond turns the limits off.
	RatePerSecond float64
	Burst         int
	// SessionKey signs session cookies (HMAC-SHA256, at least 32 bytes).
	// Empty means a random key per process: sessions end when the gateway
	// restarts, and replicas behind one address need a shared key.
	SessionKey []byte
	// Now is the clock; tests set it. Default time.Now.
	Now func() time.Time
}

// Defaults fills in the zero fields.
func (c *Config) Defaults() {
	if c.AnonymousActor == "" {
		c.AnonymousActor = DefaultAnonymousActor
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = DefaultRatePerSecond
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem at once, each wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.Anonymous < RoleNone || c.Anonymous > RoleAdmin {
		bad("Anonymous %v: want none, viewer, operator or admin", c.Anonymous)
	}
	if c.Burst < 1 {
		bad("Burst %d must be at least 1", c.Burst)
	}
	if n := len(c.SessionKey); n > 0 && n < 32 {
		bad("SessionKey has %d bytes; want at least 32", n)
	}
	return errors.Join(errs...)
}
