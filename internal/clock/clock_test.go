package clock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// serverTime starts a real NATS server with one stream and returns the
// reader of its time. The server runs in the test's process, so its clock
// is the test's: the correct one.
func serverTime(t *testing.T) ServerTime {
	t.Helper()
	c := eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	if _, err := c.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "TIME", Subjects: []string{"time.>"}}); err != nil {
		t.Fatal(err)
	}
	return StreamTime(c.JetStream(), "TIME")
}

// A host whose clock is minutes or seconds off tells the bus's time once
// synced: every reading of Now lies within the stated uncertainty of the
// correct time, taken just before and just after it.
func TestBusClockTellsTheBussTimeWhateverTheHostsSkew(t *testing.T) {
	server := serverTime(t)
	for _, skew := range []time.Duration{90 * time.Second, -90 * time.Second, 3 * time.Second, -3 * time.Second, 0} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			b := NewBus(BusConfig{Server: server, Local: func() time.Time { return time.Now().Add(skew) }, Logger: eventstest.Quiet()})
			if b.Synced() {
				t.Fatal("synced before Sync")
			}
			if err := b.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			offset, unc := b.Offset()
			if unc > DefaultMaxUncertainty {
				t.Fatalf("uncertainty %s above the accepted %s", unc, DefaultMaxUncertainty)
			}
			// The bus is ahead of this host by -skew.
			if d := offset + skew; d > unc || d < -unc {
				t.Errorf("offset %s, want %s within %s", offset, -skew, unc)
			}
			for range 100 {
				before := time.Now()
				now := b.Now()
				after := time.Now()
				if now.Before(before.Add(-unc)) || now.After(after.Add(unc)) {
					t.Fatalf("Now %v outside [%v, %v] widened by the uncertainty %s", now, before, after, unc)
				}
			}
			t.Logf("skew %s: offset %s, uncertainty %s", skew, offset, unc)
		})
	}
}

// script is a fake host clock and server: each reading of the server
// takes the round trip the script gives, and reports the true time at
// the middle of it plus err, the server's error for that reading.
type script struct {
	t0     time.Time
	now    time.Duration // the local clock, as an offset from t0
	rtts   []time.Duration
	errs   []time.Duration
	calls  int
	failed error
	// unavailable fails this many readings as a bus that does not answer.
	unavailable int
}

func (s *script) local() time.Time { return s.t0.Add(s.now) }

func (s *script) server(context.Context) (time.Time, error) {
	if s.failed != nil {
		return time.Time{}, s.failed
	}
	if s.unavailable > 0 {
		s.unavailable--
		return time.Time{}, nats.ErrNoResponders
	}
	i := s.calls % len(s.rtts)
	s.calls++
	at := s.t0.Add(s.now + s.rtts[i]/2 + s.errs[i])
	s.now += s.rtts[i]
	return at, nil
}

// Sync keeps the reading with the shortest round trip: a slow reading's
// server time could be anywhere within it.
func TestSyncKeepsTheFastestReading(t *testing.T) {
	s := &script{t0: time.Unix(1_000_000, 0),
		rtts: []time.Duration{300 * time.Millisecond, 20 * time.Millisecond, 100 * time.Millisecond},
		// The slow readings are off by most of their round trip.
		errs: []time.Duration{140 * time.Millisecond, 0, -45 * time.Millisecond}}
	b := NewBus(BusConfig{Server: s.server, Local: s.local, Samples: 3, Logger: eventstest.Quiet()})
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The estimate is the 20ms reading's, grown by DriftBound over the
	// 100ms reading taken after it.
	offset, unc := b.Offset()
	if want := 10*time.Millisecond + 100*time.Millisecond*DriftBound/1_000_000; offset != 0 || unc != want {
		t.Errorf("offset %s, uncertainty %s; want 0 within %s (the 20ms reading)", offset, unc, want)
	}
	s.now += time.Hour
	if got, want := b.Now(), s.local(); !got.Equal(want) {
		t.Errorf("an hour later Now is %v, want %v", got, want)
	}
}

// A bus that answers only slowly is no reference: Sync says so, wrapping
// ErrUncertain and context.DeadlineExceeded (a service retries it as a
// bus that did not answer), and the clock stays unsynced.
func TestSyncRefusesReadingsTooSlowToTrust(t *testing.T) {
	s := &script{t0: time.Unix(1_000_000, 0), rtts: []time.Duration{time.Second}, errs: []time.Duration{0}}
	b := NewBus(BusConfig{Server: s.server, Local: s.local, Logger: eventstest.Quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := b.Sync(ctx)
	if !errors.Is(err, ErrUncertain) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync = %v, want ErrUncertain", err)
	}
	if b.Synced() {
		t.Error("a refused sync left the clock synced")
	}
}

// A bus too far away for the bound is refused with what the operator
// needs to act: the best round trip of every reading the Sync took, the
// bound, the flag that raises it and its cost. The service's readiness
// hears it after each round, before the Sync gives up.
func TestSyncSaysWhatToDoWhenTheBusIsTooFar(t *testing.T) {
	s := &script{t0: time.Unix(1_000_000, 0),
		rtts: []time.Duration{900 * time.Millisecond, 620 * time.Millisecond, 800 * time.Millisecond},
		errs: []time.Duration{0, 0, 0}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var told []error
	b := NewBus(BusConfig{Server: s.server, Local: s.local, Samples: 1, BoundName: "--clock-max-uncertainty", Logger: eventstest.Quiet(),
		Waiting: func(err error) {
			if told = append(told, err); len(told) == 3 {
				cancel() // three rounds: 900ms, 620ms, 800ms
			}
		}})
	err := b.Sync(ctx)
	if !errors.Is(err, ErrUncertain) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync = %v, want ErrUncertain", err)
	}
	for _, want := range []string{
		"the best round trip of 3 readings was 620ms", "known only within half of it, 310ms",
		"--clock-max-uncertainty is 250ms", "set --clock-max-uncertainty to 350ms or more",
		"may then end early by the sum of their uncertainties, up to twice --clock-max-uncertainty",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Sync's error does not say %q:\n%v", want, err)
		}
	}
	if len(told) != 3 || !errors.Is(told[0], ErrUncertain) || !strings.Contains(told[0].Error(), "was 900ms") || told[2].Error() != err.Error() {
		t.Errorf("Waiting heard %v; want each round's refusal, the last one Sync's error", told)
	}
	if b.Synced() {
		t.Error("a refused sync left the clock synced")
	}
}

// A resync never makes the clock worse. Readings over the bound leave the
// estimate as it was; readings within the bound but less certain than
// the estimate has grown to (a bus that now answers slowly) do too, here
// with a reading 80ms off that would have moved Now. Once the estimate
// has aged past them (DriftBound), the fresher reading wins. Observe
// hears every sync.
func TestResyncNeverMakesTheClockWorse(t *testing.T) {
	s := &script{t0: time.Unix(1_000_000, 0), rtts: []time.Duration{10 * time.Millisecond}, errs: []time.Duration{0}}
	var observed []time.Duration
	b := NewBus(BusConfig{Server: s.server, Local: s.local, Samples: 1, MaxUncertainty: time.Second, Logger: eventstest.Quiet(),
		Observe: func(_, unc time.Duration) { observed = append(observed, unc) }})
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	check := func(when string, wantNow time.Time, wantUnc time.Duration) {
		t.Helper()
		if got := b.Now(); !got.Equal(wantNow) {
			t.Errorf("%s: Now is %v, want %v", when, got, wantNow)
		}
		if _, unc := b.Offset(); unc != wantUnc {
			t.Errorf("%s: uncertainty %s, want %s", when, unc, wantUnc)
		}
	}
	check("synced", s.local(), 5*time.Millisecond)

	// Over the bound: refused, estimate kept.
	s.rtts, s.errs = []time.Duration{3 * time.Second}, []time.Duration{time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Sync(ctx); !errors.Is(err, ErrUncertain) {
		t.Fatalf("Sync = %v, want ErrUncertain", err)
	}
	aged := func() time.Duration { return 5*time.Millisecond + (s.now-10*time.Millisecond)*DriftBound/1_000_000 } // since the first reading came back
	check("after readings over the bound", s.local(), aged())

	// Within the bound, less certain than the estimate: kept.
	s.rtts, s.errs = []time.Duration{400 * time.Millisecond}, []time.Duration{80 * time.Millisecond}
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after a slower reading within the bound", s.local(), aged())

	// An hour later the estimate is less certain (by 1.8s) than a 400ms
	// round trip: the reading is taken, 80ms off as it is.
	s.now += time.Hour
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("an hour later", s.local().Add(80*time.Millisecond), 200*time.Millisecond)
	if len(observed) != 4 || observed[0] != 5*time.Millisecond || observed[3] != 200*time.Millisecond {
		t.Errorf("Observe heard uncertainties %v; want one per sync, 5ms first and 200ms last", observed)
	}
}

// A resync that finds the bus too slow is logged with what to do, and the
// clock keeps its estimate.
func TestFailedResyncWarnsWithWhatToDo(t *testing.T) {
	rtts := make([]time.Duration, 1000)
	for i := range rtts {
		rtts[i] = time.Second // after the first reading, the bus is far
	}
	rtts[0] = 10 * time.Millisecond
	s := &script{t0: time.Unix(1_000_000, 0), rtts: rtts, errs: make([]time.Duration, len(rtts))}
	var logs lockedBuffer
	b := NewBus(BusConfig{Server: s.server, Local: s.local, Samples: 1, Resync: 20 * time.Millisecond, BoundName: "--clock-max-uncertainty",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	stop, err := b.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	poll.Until(t, "a warning that the resync failed, naming the flag", func() error {
		for _, want := range []string{`msg="clock not synced to the bus; keeping the last estimate"`, "the best round trip of", "set --clock-max-uncertainty to"} {
			if !strings.Contains(logs.String(), want) {
				return fmt.Errorf("the log does not say %q:\n%s", want, logs.String())
			}
		}
		return nil
	}, poll.Timeout(time.Minute))
	stop()
	if _, unc := b.Offset(); unc > 6*time.Millisecond {
		t.Errorf("uncertainty %s after the failed resyncs, want the first reading's 5ms (grown by drift)", unc)
	}
}

// lockedBuffer is a log sink read while the clock writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// A bus that does not answer yet is waited for; one that refuses (here,
// an error that is not events.Unavailable) is reported at once.
func TestSyncWaitsForABusThatDoesNotAnswerYet(t *testing.T) {
	s := &script{t0: time.Unix(1_000_000, 0), rtts: []time.Duration{10 * time.Millisecond}, errs: []time.Duration{0}, unavailable: 12}
	b := NewBus(BusConfig{Server: s.server, Local: s.local, Logger: eventstest.Quiet()})
	if err := b.Sync(context.Background()); err != nil {
		t.Fatalf("Sync = %v, want it to wait for the bus", err)
	}
	if !b.Synced() {
		t.Error("not synced")
	}
}

// A failed resync keeps the last estimate: the server's error is
// returned, and Now still tells the bus's time.
func TestFailedSyncKeepsTheLastEstimate(t *testing.T) {
	s := &script{t0: time.Unix(1_000_000, 0), rtts: []time.Duration{10 * time.Millisecond}, errs: []time.Duration{0}}
	ahead := func() time.Time { return s.local().Add(-90 * time.Second) } // this host is 90s behind
	b := NewBus(BusConfig{Server: s.server, Local: ahead, Samples: 1, Logger: eventstest.Quiet()})
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.failed = errors.New("no responders")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Sync(ctx); err == nil || err.Error() != "no responders" {
		t.Fatalf("Sync = %v, want the server's error", err)
	}
	s.now += time.Minute
	if got, want := b.Now(), s.local(); !got.Equal(want) {
		t.Errorf("Now %v after a failed resync, want the bus's %v", got, want)
	}
}

func TestParseSkew(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  bool
	}{{"", 0, false}, {"90s", 90 * time.Second, false}, {"-3s", -3 * time.Second, false}, {"soon", 0, true}} {
		got, err := parseSkew(c.in)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("parseSkew(%q) = %s, %v; want %s, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

// A release binary cannot be skewed: the variable is reported as ignored.
func TestReleaseBuildIgnoresTheTestSkew(t *testing.T) {
	if TestBuild {
		t.Log("this is a test build (tag sluicetest): the release behaviour is checked without the tag")
		return
	}
	t.Setenv(EnvTestSkew, "90s")
	if d, err := readTestSkew(); d != 0 || err == nil {
		t.Errorf("release build read skew %s, %v; want 0 and an error saying it is ignored", d, err)
	}
}
