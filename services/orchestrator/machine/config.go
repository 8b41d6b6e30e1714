package machine

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Config.
const (
	DefaultTaskStartTimeout   = 30 * time.Second
	DefaultTaskMaxAttempts    = 3
	DefaultRouteFinishTimeout = 60 * time.Second
)

// ErrInvalidConfig is wrapped by Config.Validate.
var ErrInvalidConfig = errors.New("invalid machine configuration")

// Config holds the machine's timeouts. The zero value means every default.
type Config struct {
	// TaskStartTimeout is how long a task may wait for a worker to report
	// it started; past it the task is sent again with Attempt+1. Default 30s.
	TaskStartTimeout time.Duration `json:"taskStartTimeout,omitempty"`
	// TaskMaxAttempts is how many times a task is sent (after start timeouts
	// or failures) before the step fails with a message. Default 3.
	TaskMaxAttempts int `json:"taskMaxAttempts,omitempty"`
	// RouteFinishTimeout is how long a started route task may take to
	// finish before it is retried, and after the last attempt fails the
	// step. Default 60s. Scale tasks use the rollout's
	// progressDeadlineSeconds instead; analysis runs have no finish timeout.
	RouteFinishTimeout time.Duration `json:"routeFinishTimeout,omitempty"`
}

// Defaults sets every zero field to its default.
func (c *Config) Defaults() {
	if c.TaskStartTimeout == 0 {
		c.TaskStartTimeout = DefaultTaskStartTimeout
	}
	if c.TaskMaxAttempts == 0 {
		c.TaskMaxAttempts = DefaultTaskMaxAttempts
	}
	if c.RouteFinishTimeout == 0 {
		c.RouteFinishTimeout = DefaultRouteFinishTimeout
	}
}

// Validate returns an error wrapping ErrInvalidConfig when a field is
// negative. Zero fields are valid: they mean the default.
func (c Config) Validate() error {
	var errs []error
	if c.TaskStartTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: taskStartTimeout %s must not be negative", ErrInvalidConfig, c.TaskStartTimeout))
	}
	if c.TaskMaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("%w: taskMaxAttempts %d must not be negative", ErrInvalidConfig, c.TaskMaxAttempts))
	}
	if c.RouteFinishTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: routeFinishTimeout %s must not be negative", ErrInvalidConfig, c.RouteFinishTimeout))
	}
	return errors.Join(errs...)
}

// effective returns c with defaults, and with defaults in place of invalid
// values, so that Next works whatever it is given.
func (c Config) effective() Config {
	if c.TaskStartTimeout < 0 {
		c.TaskStartTimeout = 0
	}
	if c.TaskMaxAttempts < 0 {
		c.TaskMaxAttempts = 0
	}
	if c.RouteFinishTimeout < 0 {
		c.RouteFinishTimeout = 0
	}
	c.Defaults()
	return c
}
