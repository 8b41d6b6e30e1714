package poll_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
)

func TestWaitReturnsOnceTheCheckHolds(t *testing.T) {
	n := 0
	err := poll.Wait("the third call", func() error {
		n++
		if n < 3 {
			return errors.New("too early")
		}
		return nil
	}, poll.Every(time.Millisecond))
	if err != nil || n != 3 {
		t.Fatalf("Wait = %v after %d calls, want nil after 3", err, n)
	}
}

func TestWaitSaysWhatWasAwaitedAndWhatItLastSaw(t *testing.T) {
	last := errors.New("weight 20, want 40")
	err := poll.Wait("canary weight 40", func() error { return last }, poll.Timeout(20*time.Millisecond), poll.Every(time.Millisecond))
	if !errors.Is(err, last) {
		t.Fatalf("Wait = %v, want it to wrap the last error", err)
	}
	if !strings.Contains(err.Error(), "waiting for canary weight 40") {
		t.Errorf("Wait = %q, want it to name what was awaited", err)
	}
}

func TestWaitStopsWhenTheContextIsDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := poll.Wait("nothing", func() error { return errors.New("never") }, poll.Context(ctx))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
}

func TestTrueAndUntilPassOnAHoldingCondition(t *testing.T) {
	poll.True(t, "a true condition", func() bool { return true })
	poll.Until(t, "a nil check", func() error { return nil })
}
