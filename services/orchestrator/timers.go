package orchestrator

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/deadlines"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
)

// timerRetry is how soon a timer event that was not published is tried
// again, unless the bucket moves the deadline meanwhile.
const timerRetry = time.Second

// newTimers returns the scheduler that keeps every rollout's next deadline,
// learnt by watching the state bucket, and fires each once when it is due,
// in order. A deadline fires once; the next one for the rollout comes from
// the bucket.
func newTimers(log *slog.Logger, now func() time.Time, fire func(context.Context, events.Ref, time.Time) error) *deadlines.Scheduler {
	return deadlines.NewScheduler(deadlines.SchedulerConfig{
		Logger: log,
		Now:    now,
		Work: func(ctx context.Context, key string, due time.Time) time.Time {
			r, err := records.RefOf(key)
			if err != nil {
				log.Warn("bucket key is not a rollout", "key", key, "error", err)
				return time.Time{}
			}
			if err := fire(ctx, r, due); err != nil && ctx.Err() == nil {
				log.Warn("timer event not published; retrying in 1s", "rollout", r.String(), "error", err)
				return now().Add(timerRetry)
			}
			return time.Time{}
		},
	})
}
