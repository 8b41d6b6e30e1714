package auth

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is a token bucket per caller. A bucket left alone long enough
// to refill is dropped: a new one is the same, so memory is bounded by
// the callers seen within one refill time (Burst / RatePerSecond).
type limiters struct {
	every  rate.Limit
	burst  int
	refill time.Duration

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiters(perSecond float64, burst int) *limiters {
	l := &limiters{every: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
	if perSecond < 0 {
		l.every = rate.Inf
	} else {
		l.refill = time.Duration(float64(burst) / perSecond * float64(time.Second))
	}
	return l
}

// take spends one request of key's bucket at now; when none is left it
// returns how long until there is one.
func (l *limiters) take(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l.every == rate.Inf {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[key] = b
	}
	b.last = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops the full buckets, at most once per refill time.
func (l *limiters) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < l.refill {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.refill {
			delete(l.buckets, k)
		}
	}
}

func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// retryAfterSeconds rounds d up to whole seconds, at least 1, as
// Retry-After wants.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
