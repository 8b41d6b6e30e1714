// Package poll is the one way a Sluice test waits for something to come
// about: it checks a condition again and again until the condition holds or
// a deadline passes, and then fails the test saying what it waited for and
// what it last saw.
//
// Tests wait for conditions, not for time. A test that must show that
// something did not happen waits for a later event that can only come after
// it (a marker published behind it, a sequence number past it) instead of
// sleeping; poll is for the waiting, never for the sleeping.
package poll

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Default is how long Until waits unless told otherwise. Healthy runs take
// milliseconds; the margin is for a loaded two-core machine, and a
// deadline this long only matters when the test is failing anyway.
const Default = 30 * time.Second

// Interval is how long Until sleeps between two checks unless told
// otherwise.
const Interval = 10 * time.Millisecond

// An Option changes how Until waits.
type Option func(*config)

type config struct {
	timeout  time.Duration
	timed    bool // timeout set by Timeout
	interval time.Duration
	ctx      context.Context
}

// Timeout makes Until give up after d instead of Default. A d of zero or
// less leaves Default in place.
func Timeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout, c.timed = d, true
		}
	}
}

// Every makes Until check every d instead of every Interval. A d of zero
// or less leaves Interval in place.
func Every(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.interval = d
		}
	}
}

// Context makes Until also give up when ctx is done. A deadline of ctx
// replaces Default; with Timeout as well, whichever comes first counts.
func Context(ctx context.Context) Option {
	return func(c *config) { c.ctx = ctx }
}

// Until calls check until it returns nil. If that has not happened by the
// deadline, it fails the test with what was awaited and the last error
// check returned. check runs on the test's goroutine, so it may call
// t.Fatal itself for errors that waiting cannot cure.
func Until(t testing.TB, what string, check func() error, opts ...Option) {
	t.Helper()
	if err := Wait(what, check, opts...); err != nil {
		t.Fatal(err)
	}
}

// True is Until for a condition that has nothing to say about why it does
// not hold yet.
func True(t testing.TB, what string, cond func() bool, opts ...Option) {
	t.Helper()
	Until(t, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}, opts...)
}

// Wait is Until for code that cannot fail a test itself (test-support
// packages, goroutines other than the test's): it returns the error Until
// would have failed the test with, or nil once check returned nil.
func Wait(what string, check func() error, opts ...Option) error {
	c := config{timeout: Default, interval: Interval, ctx: context.Background()}
	for _, o := range opts {
		o(&c)
	}
	if d, ok := c.ctx.Deadline(); ok && !c.timed {
		c.timeout = time.Until(d) + time.Second // ctx ends it first, with its own error
	}
	start := time.Now()
	deadline := time.NewTimer(c.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-deadline.C:
			return failure(what, time.Since(start), err)
		case <-c.ctx.Done():
			return failure(what, time.Since(start), fmt.Errorf("%w; last: %w", c.ctx.Err(), err))
		case <-tick.C:
		}
	}
}

// errNotYet is what True reports for a condition that does not hold: the
// failure then reads "timed out after 30s waiting for X".
var errNotYet = fmt.Errorf("not yet")

func failure(what string, waited time.Duration, last error) error {
	if last == errNotYet {
		return fmt.Errorf("timed out after %s waiting for %s", waited.Round(time.Millisecond), what)
	}
	return fmt.Errorf("timed out after %s waiting for %s: %w", waited.Round(time.Millisecond), what, last)
}
