package chat

import (
	"context"
	"sync"
	"time"
)

// Replays remembers the requests accepted, so that a captured request
// sent again (while its timestamp still passes) is refused. Neither Slack
// nor Teams resends a command request, so a repeat is never legitimate.
// The default remembers in this process; the notifier passes one shared
// by every replica (its state bucket), so a request replayed to another
// replica behind the same URL is refused too.
type Replays interface {
	// First records the request signed sig, accepted at now, and reports
	// whether no request with that signature was accepted before. An
	// error means it could not tell: the request is refused for now.
	First(ctx context.Context, sig string, now time.Time) (bool, error)
}

// seen is the in-process Replays: it remembers signatures for a window
// (twice the timestamp window: a request may be up to one window old or
// ahead), after which the timestamp check refuses a repeat on its own.
type seen struct {
	window time.Duration

	mu    sync.Mutex
	until map[string]time.Time // signature -> when it may be forgotten
}

var _ Replays = (*seen)(nil)

func newSeen(window time.Duration) *seen {
	return &seen{window: window, until: map[string]time.Time{}}
}

// First records sig at now and reports whether it was not seen within
// the window.
func (s *seen) First(_ context.Context, sig string, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.until[sig]; ok && now.Before(t) {
		return false, nil
	}
	if len(s.until) > 1024 {
		for k, t := range s.until {
			if !now.Before(t) {
				delete(s.until, k)
			}
		}
	}
	s.until[sig] = now.Add(s.window)
	return true, nil
}
