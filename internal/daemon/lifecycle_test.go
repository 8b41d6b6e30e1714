package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// stops records the order parts stop in.
type stops struct {
	mu    sync.Mutex
	order []string
}

func (s *stops) part(name string) Stopper {
	return StopFunc(func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("stopped without a deadline")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.order = append(s.order, name)
		return nil
	})
}

func (s *stops) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

var testNeeds = events.Needs{Buckets: []events.Bucket{{Name: "lifecycle-test", Description: "test", History: 1}}}

func TestLifecycleOpensReadiesAndStopsInReverse(t *testing.T) {
	srv := eventstest.StartServer(t)
	client := eventstest.Connect(t, srv.ClientURL())
	var lc Lifecycle
	var st stops
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- lc.Run(ctx, Plan{Name: "test", Client: client, Needs: testNeeds, StopTimeout: time.Minute, Log: eventstest.Quiet(),
			Start: func(ctx context.Context, r *Running) error {
				if _, err := r.Bucket("lifecycle-test").Put(ctx, "k", []byte("v")); err != nil {
					return err
				}
				r.OnStop(st.part("first"))
				r.OnStop(st.part("second"))
				return nil
			}})
	}()
	poll.True(t, "the lifecycle to report ready", lc.Ready, poll.Timeout(eventstest.Wait))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if lc.Ready() {
		t.Error("ready after stop")
	}
	if got := st.got(); !slices.Equal(got, []string{"second", "first"}) {
		t.Errorf("stopped %v, want second then first", got)
	}
}

func TestLifecycleStopsWhatStartedWhenStartFails(t *testing.T) {
	srv := eventstest.StartServer(t)
	client := eventstest.Connect(t, srv.ClientURL())
	var lc Lifecycle
	var st stops
	boom := errors.New("boom")
	err := lc.Run(context.Background(), Plan{Name: "test", Client: client, Needs: testNeeds, Log: eventstest.Quiet(),
		Start: func(ctx context.Context, r *Running) error {
			r.OnStop(st.part("started"))
			return boom
		}})
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	if lc.Ready() {
		t.Error("ready after a failed start")
	}
	if got := st.got(); !slices.Equal(got, []string{"started"}) {
		t.Errorf("stopped %v, want the part that started", got)
	}
}

// A service with a clock starts deciding only once the clock tells the
// bus's time: its Start sees it synced, however far off its host is.
func TestLifecycleSyncsTheClockBeforeStart(t *testing.T) {
	srv := eventstest.StartServer(t)
	client := eventstest.Connect(t, srv.ClientURL())
	skewed := func() time.Time { return time.Now().Add(-90 * time.Second) }
	clk := clock.NewBus(clock.BusConfig{Server: clock.StreamTime(client.JetStream(), events.StreamResults), Local: skewed, Logger: eventstest.Quiet()})
	var lc Lifecycle
	started := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- lc.Run(ctx, Plan{Name: "test", Client: client, Needs: testNeeds, Log: eventstest.Quiet(), Clock: clk,
			Start: func(context.Context, *Running) error {
				if !clk.Synced() {
					return errors.New("started with an unsynced clock")
				}
				before := time.Now()
				now := clk.Now()
				after := time.Now()
				// The bus (in this process) runs on the test's clock.
				if _, unc := clk.Offset(); now.Before(before.Add(-unc)) || now.After(after.Add(unc)) {
					started <- fmt.Errorf("at Start the clock said %v, not the bus's time in [%v, %v] within %s (the host is 90s behind)", now, before, after, unc)
				}
				close(started)
				return nil
			}})
	}()
	poll.True(t, "the lifecycle to report ready", lc.Ready, poll.Timeout(eventstest.Wait))
	if err := <-started; err != nil {
		t.Error(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
