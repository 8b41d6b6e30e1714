package analyzer

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/deadlines"
)

// newScheduler returns the scheduler of the runs bucket: it keeps every
// run record's wakeup and hands each record to work when its wakeup is
// due, at most one work call per key at a time, at most limit at once.
// work returns a time to try the key again, or zero when the bucket will
// say.
func newScheduler(log *slog.Logger, now func() time.Time, limit int, work func(context.Context, string) time.Time) *deadlines.Scheduler {
	return deadlines.NewScheduler(deadlines.SchedulerConfig{
		Logger:  log,
		Now:     now,
		Workers: limit,
		Work:    func(ctx context.Context, key string, _ time.Time) time.Time { return work(ctx, key) },
	})
}
