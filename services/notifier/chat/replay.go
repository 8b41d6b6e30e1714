package chat

import (
	"sync"
	"time"
)

// seen remembers the signatures of the requests accepted within a window,
// so that a captured request sent again within it (when its timestamp
// still passes) is refused too. Neither Slack nor Teams resends a command
// request, so a repeat is never legitimate.
type seen struct {
	window time.Duration

	mu    sync.Mutex
	until map[string]time.Time // signature -> when it may be forgotten
}

func newSeen(window time.Duration) *seen {
	return &seen{window: window, until: map[string]time.Time{}}
}

// first records sig at now and reports whether it was not seen within
// the window.
func (s *seen) first(sig string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.until[sig]; ok && now.Before(t) {
		return false
	}
	if len(s.until) > 1024 {
		for k, t := range s.until {
			if !now.Before(t) {
				delete(s.until, k)
			}
		}
	}
	s.until[sig] = now.Add(s.window)
	return true
}
