// Package clock gives every Sluice service one time: the bus's.
//
// A rollout's deadlines (a pause's end, a progress deadline, a task's
// start timeout, an analysis's next measurement) are wall times written
// into records on the bus by one replica and compared with the clock of
// whichever replica reads them next. Two hosts whose clocks disagree by
// S seconds would end a pause up to S seconds early. A Bus clock removes
// the disagreement instead of hiding it: it reads the time of the NATS
// server that stores the records (the JetStream stream leader stamps its
// answers with its own clock), estimates how far ahead or behind the
// local host is, and from then on counts with the local monotonic clock
// from that estimate. Every service that reads a Bus clock tells the same
// time as the bus, to within its Uncertainty, however wrong its host's
// wall clock is, and a host clock stepped by NTP or by hand between two
// syncs does not move it.
package clock

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// Defaults of BusConfig.
const (
	DefaultSamples        = 5
	DefaultMaxUncertainty = 250 * time.Millisecond
	DefaultResync         = 30 * time.Second
	// DefaultSyncTimeout bounds one Sync when its context has no
	// deadline.
	DefaultSyncTimeout = 30 * time.Second
)

// ErrUncertain is returned by Sync when no reading of the server's time
// came back fast enough to know it within BusConfig.MaxUncertainty. It
// wraps context.DeadlineExceeded: the bus answered, but too slowly.
var ErrUncertain = fmt.Errorf("the bus's time could not be read precisely enough: %w", context.DeadlineExceeded)

// DriftBound is how fast, at most, the local monotonic clock may drift
// from the bus's, in parts per million: the kernel's limit on how fast NTP
// may slew it (500 ppm), which is also well above a quartz oscillator's
// error. An estimate's uncertainty grows by it between syncs, so that an
// old precise reading and a fresh coarse one compare fairly.
const DriftBound = 500

// uncertainError is Sync's ErrUncertain: what was seen and what would
// have been accepted, so that an operator can tell a distant bus from a
// slow one and knows what to change.
type uncertainError struct {
	best     time.Duration // the shortest round trip of every reading of the Sync
	readings int
	bound    time.Duration
	name     string // how the operator sets bound
}

func (e *uncertainError) Unwrap() error { return ErrUncertain }

func (e *uncertainError) Error() string {
	// Suggest the uncertainty seen, rounded up to the next 50ms: a bound
	// just at it would refuse the next reading a little slower.
	suggest := (e.best/2 + 50*time.Millisecond).Truncate(50 * time.Millisecond)
	return fmt.Sprintf("the bus's time could not be read precisely enough: the best round trip of %d readings was %s, "+
		"so the bus's time is known only within half of it, %s, and %s is %s; "+
		"if the bus is this far away (another region, a slow link), set %s to %s or more, "+
		"at the cost of a larger tolerance: a timed wait recorded by one replica and ended by another may then end early by the sum of their uncertainties, up to twice %s (docs/reliability.md, Clocks)",
		e.readings, e.best.Round(time.Millisecond), (e.best / 2).Round(time.Millisecond), e.name, e.bound, e.name, suggest, e.name)
}

// ServerTime reads the bus's time. It is called with nothing else in
// between two readings of the local clock, so its round trip bounds the
// error of the estimate.
type ServerTime func(ctx context.Context) (time.Time, error)

// StreamTime reads the time of the server leading stream: the "ts" of a
// stream info answer (NATS server 2.10 and later). Every Sluice service
// may look up the Sluice streams, and all its services read the same one,
// so they share one reference even on a cluster.
func StreamTime(js jetstream.JetStream, stream string) ServerTime {
	return func(ctx context.Context) (time.Time, error) {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return time.Time{}, fmt.Errorf("read the bus's time from stream %s: %w", stream, err)
		}
		ts := s.CachedInfo().TimeStamp
		if ts.IsZero() {
			return time.Time{}, fmt.Errorf("read the bus's time from stream %s: the server does not report its time (NATS server 2.10 or later is needed)", stream)
		}
		return ts, nil
	}
}

// BusConfig configures a Bus clock.
type BusConfig struct {
	// Server reads the bus's time (required; StreamTime).
	Server ServerTime
	// Local is the host's clock (default Local, which is time.Now).
	Local func() time.Time
	// Samples is how many readings one Sync takes; it keeps the one with
	// the shortest round trip (default DefaultSamples).
	Samples int
	// MaxUncertainty is the largest error Sync accepts: half the round
	// trip of its best reading (default DefaultMaxUncertainty).
	MaxUncertainty time.Duration
	// BoundName is how Sync's errors name MaxUncertainty, for the
	// operator who sets it: the flag, "--clock-max-uncertainty" (default
	// "the clock's MaxUncertainty").
	BoundName string
	// Waiting, when set, is told why the clock is not synced yet after
	// each round of readings the first Sync could not use (too slow, or
	// the bus did not answer), so that a service's readiness says what it
	// waits for before the Sync gives up.
	Waiting func(error)
	// Observe, when set, receives the estimate's offset and uncertainty
	// (see Offset) after every sync, successful or not, and each Run
	// resync: a service's gauges.
	Observe func(offset, uncertainty time.Duration)
	// Resync is how often Run reads the bus's time again (default
	// DefaultResync). Between syncs the clock counts on the local
	// monotonic clock, whose rate errs by parts per million.
	Resync time.Duration
	// Logger receives the first sync, a large offset and failed resyncs
	// (default slog.Default()).
	Logger *slog.Logger
}

// Defaults fills unset fields.
func (c *BusConfig) Defaults() {
	if c.Local == nil {
		c.Local = Local
	}
	if c.Samples <= 0 {
		c.Samples = DefaultSamples
	}
	if c.MaxUncertainty <= 0 {
		c.MaxUncertainty = DefaultMaxUncertainty
	}
	if c.Resync <= 0 {
		c.Resync = DefaultResync
	}
	if c.BoundName == "" {
		c.BoundName = "the clock's MaxUncertainty"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Bus is the bus's time, as estimated on this host. Its Now is usable
// once Sync has succeeded; before, it is the local clock. It is safe for
// concurrent use.
type Bus struct {
	cfg BusConfig

	mu          sync.Mutex
	synced      bool
	base        time.Time // the bus's time at anchor
	anchor      time.Time // the local clock's reading (with its monotonic part) at base
	uncertainty time.Duration
	offset      time.Duration // bus minus local wall clock at the last sync
}

// NewBus returns an unsynced Bus clock.
func NewBus(cfg BusConfig) *Bus {
	cfg.Defaults()
	return &Bus{cfg: cfg}
}

// Now returns the bus's time: the estimate of the last Sync advanced by
// the local monotonic clock since. Before the first Sync it is the local
// clock.
func (b *Bus) Now() time.Time {
	local := b.cfg.Local()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.synced {
		return local
	}
	return b.base.Add(local.Sub(b.anchor))
}

// Synced reports whether a Sync has succeeded.
func (b *Bus) Synced() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.synced
}

// Offset returns how far the bus's time was ahead of the local wall
// clock at the last sync (negative: behind), and the estimate's
// uncertainty now: half the round trip of the reading it came from, grown
// by DriftBound since. Now is within it of the bus's time.
func (b *Bus) Offset() (offset, uncertainty time.Duration) {
	local := b.cfg.Local()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.offset, b.uncertaintyAt(local)
}

// uncertaintyAt is the estimate's uncertainty at the local reading at;
// b.mu is held.
func (b *Bus) uncertaintyAt(at time.Time) time.Duration {
	if !b.synced {
		return 0
	}
	return b.uncertainty + max(at.Sub(b.anchor), 0)/(1_000_000/DriftBound)
}

// Sync reads the bus's time BusConfig.Samples times and keeps the reading
// with the shortest round trip, when half of it is within
// MaxUncertainty, and, on a clock already synced, no larger than the
// uncertainty the last estimate has grown to: a resync never makes the
// clock worse. Readings that take longer are tried again until ctx ends
// (DefaultSyncTimeout when ctx has no deadline), as are readings that
// fail because the bus did not answer (events.Unavailable); then it
// returns ErrUncertain, saying the best round trip seen and the bound, or
// the last error of the server. Any other error of the server is returned
// at once. A failed Sync keeps the previous estimate.
func (b *Bus) Sync(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSyncTimeout)
		defer cancel()
	}
	defer b.observe()
	var (
		lastErr error
		slow    int           // rounds whose best reading was too slow
		fastest time.Duration // the shortest round trip of those rounds
	)
	for ctx.Err() == nil {
		s, err := b.best(ctx)
		switch {
		case err != nil && !events.Unavailable(err):
			return err // a permission refused, a server too old: waiting cannot cure it
		case err != nil:
			lastErr = err
		case s.uncertainty() > b.cfg.MaxUncertainty:
			if slow++; slow == 1 || s.rtt() < fastest {
				fastest = s.rtt()
			}
			lastErr = &uncertainError{best: fastest, readings: slow * b.cfg.Samples, bound: b.cfg.MaxUncertainty, name: b.cfg.BoundName}
		default:
			b.set(s)
			return nil
		}
		if b.cfg.Waiting != nil && !b.Synced() {
			b.cfg.Waiting(lastErr)
		}
		// A busy or absent bus: let it settle rather than add to it.
		select {
		case <-ctx.Done():
		case <-time.After(syncRetry):
		}
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return lastErr
}

// observe reports the estimate to BusConfig.Observe, once synced.
func (b *Bus) observe() {
	if b.cfg.Observe == nil || !b.Synced() {
		return
	}
	b.cfg.Observe(b.Offset())
}

// syncRetry is how long Sync waits before it reads again after a round
// whose readings failed or were all too slow.
const syncRetry = 100 * time.Millisecond

// sample is one reading of the server's time between two local readings.
type sample struct {
	sent, received, server time.Time
}

func (s sample) rtt() time.Duration         { return s.received.Sub(s.sent) }
func (s sample) uncertainty() time.Duration { return s.rtt() / 2 }

// best takes the configured number of readings and returns the one with
// the shortest round trip; it fails only when none succeeded.
func (b *Bus) best(ctx context.Context) (sample, error) {
	var (
		best    sample
		have    bool
		lastErr error
	)
	for range b.cfg.Samples {
		s := sample{sent: b.cfg.Local()}
		server, err := b.cfg.Server(ctx)
		s.received = b.cfg.Local()
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		s.server = server
		if !have || s.rtt() < best.rtt() {
			best, have = s, true
		}
	}
	if !have {
		return best, lastErr
	}
	return best, nil
}

// bigOffset is the offset from which a sync is logged as a warning (the
// host's clock is wrong enough that anything else on it is suspect), when
// it is the first or the offset moved by as much since the last.
const bigOffset = time.Second

// set makes s the estimate: the server read its clock somewhere within
// the round trip, so at the local reading s.received the bus's time is
// within half of it of s.server plus that half.
//
// A clock already synced keeps its estimate when s is less certain than
// the estimate has grown to (a bus that answers more slowly now than it
// did), and only measures the host's wall clock against it again.
func (b *Bus) set(s sample) {
	half := s.uncertainty()
	b.mu.Lock()
	first := !b.synced
	kept := b.uncertaintyAt(s.received)
	keep := !first && half > kept
	if !keep {
		b.synced, b.base, b.anchor, b.uncertainty = true, s.server.Add(half), s.received, half
	} else {
		half = kept
	}
	// The bus's time by the estimate, against the host's wall clock.
	offset := b.base.Add(s.received.Sub(b.anchor)).Sub(s.received.Round(0))
	moved := offset - b.offset
	b.offset = offset
	b.mu.Unlock()
	if keep {
		b.cfg.Logger.Debug("clock resync less certain than the estimate; keeping the estimate", "reading", s.uncertainty(), "estimate", kept)
	}
	switch {
	case (first || moved > bigOffset || moved < -bigOffset) && (offset > bigOffset || offset < -bigOffset):
		b.cfg.Logger.Warn("this host's clock is off the bus's; Sluice keeps the bus's time", "offset", offset, "uncertainty", half)
	case first:
		b.cfg.Logger.Info("clock synced to the bus", "offset", offset, "uncertainty", half)
	case moved > bigOffset || moved < -bigOffset:
		b.cfg.Logger.Info("this host's clock moved against the bus's", "by", moved, "offset", offset, "uncertainty", half)
	}
}

// Run syncs every BusConfig.Resync until ctx ends. A failed sync is
// logged and the previous estimate kept: the local monotonic clock
// drifts from the bus's by parts per million (at most DriftBound, which
// the estimate's uncertainty grows by), so a missed resync costs little.
func (b *Bus) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, b.cfg.Resync)
		err := b.Sync(sctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			_, unc := b.Offset()
			b.cfg.Logger.Warn("clock not synced to the bus; keeping the last estimate", "uncertainty", unc, "error", err)
		}
	}
}

// Start syncs b and keeps it synced until ctx ends or the returned stop is
// called (which waits for the resync loop to end).
func (b *Bus) Start(ctx context.Context) (stop func(), err error) {
	if err := b.Sync(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	return func() { cancel(); <-done }, nil
}
