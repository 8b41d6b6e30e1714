package analyzer

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
)

// BucketRuns holds one entry per analysis run, keyed
// <namespace>.<rollout>.<run name>.
const BucketRuns = "sluice-analysisruns"

// runRecord is what the runs bucket stores for one run.
type runRecord struct {
	// Wakeup is when a replica should next look at the record (null:
	// never). Watchers read only this field; it comes first so that they
	// need not scan the rest (jsonlead.Fields).
	Wakeup *time.Time `json:"wakeup"`
	// Task is the analysis.run task the run reports to, at its latest
	// attempt, without the templates it carried.
	Task tasks.Task `json:"task"`
	// Run is the run's state; nil for a run terminated before its task
	// arrived (a tombstone that makes the late task Stale).
	Run *analysis.Run `json:"run,omitempty"`
	// TerminatedSeq is the seq of the terminate task applied to the run.
	TerminatedSeq int64 `json:"terminatedSeq,omitempty"`
	// Lease is held by the replica measuring the run.
	Lease *lease `json:"lease,omitempty"`
	// Outbox holds the reports written with the run but not yet known to
	// be published; OutboxAt is when the oldest was written.
	Outbox   []report  `json:"outbox,omitempty"`
	OutboxAt time.Time `json:"outboxAt,omitzero"`
	// DoneAt is when the verdict was published (or the tombstone written);
	// the record is deleted Retention later.
	DoneAt time.Time `json:"doneAt,omitzero"`
}

// lease is a replica's claim to take the measurements of Metrics.
type lease struct {
	Owner string `json:"owner"`
	// Token identifies this claim: the owner writes its results only while
	// the record holds the same token.
	Token   string    `json:"token"`
	Metrics []string  `json:"metrics"`
	Expires time.Time `json:"expires"`
}

// report is an event the run owes the orchestrator. ID is the measured
// event's id; the finished event's id is the worker's,
// finished/<task>#<attempt>, taken at publication.
type report struct {
	ID       string          `json:"id"`
	Measured *tasks.Measured `json:"measured,omitempty"`
	Finished *tasks.Finished `json:"finished,omitempty"`
}

// wakeup is when a replica must look at rec: when its retention ends once
// done; otherwise the earliest of its outbox's grace, its lease's expiry
// and, without a lease, the run's next measurement.
func (rec runRecord) wakeup(margin, retention time.Duration) *time.Time {
	if !rec.DoneAt.IsZero() {
		t := rec.DoneAt.Add(retention)
		return &t
	}
	var best time.Time
	consider := func(t time.Time) {
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	if len(rec.Outbox) > 0 {
		consider(rec.OutboxAt.Add(margin))
	}
	switch {
	case rec.Lease != nil:
		consider(rec.Lease.Expires)
	case rec.Run != nil:
		if t, ok := rec.Run.NextWakeup(); ok {
			consider(t)
		}
	}
	if best.IsZero() {
		return nil
	}
	return &best
}

// addVerdict puts the finished report in the outbox once the run is
// completed.
func (rec *runRecord) addVerdict(now time.Time) {
	if rec.Run == nil || !rec.Run.Completed() || !rec.DoneAt.IsZero() {
		return
	}
	for _, r := range rec.Outbox {
		if r.Finished != nil {
			return
		}
	}
	fin := verdict(*rec.Run)
	rec.addReport(report{ID: "finished", Finished: &fin}, now)
}

func (rec *runRecord) addReport(r report, now time.Time) {
	if len(rec.Outbox) == 0 {
		rec.OutboxAt = now
	}
	rec.Outbox = append(rec.Outbox, r)
}

// verdict is the finished report of a completed run.
func verdict(run analysis.Run) tasks.Finished {
	sum := run.Summary()
	return tasks.Finished{Outcome: tasks.OutcomeSucceeded, Message: sum.Message, Analysis: &sum}
}

// kvToken is what a run name must look like to be part of a bucket key.
var kvToken = regexp.MustCompile(`^[-_=a-zA-Z0-9]+(\.[-_=a-zA-Z0-9]+)*$`)

// runKey is the bucket key of run name of rollout r.
func runKey(r events.Ref, name string) (string, error) {
	if len(name) > 253 || !kvToken.MatchString(name) {
		return "", fmt.Errorf("analysis run name %q cannot be stored: use letters, digits, '-', '_', '=' and single inner dots, at most 253 characters", name)
	}
	return records.KeyOf(r) + "." + name, nil
}

// runStore reads and writes run records with compare-and-swap.
type runStore = *records.Store[runRecord]

// newRunStore returns the store of the runs bucket kv. Each record is
// written with its wakeup (see runRecord.wakeup). leader, when not nil, is
// the connection through which it reads the leader's records (Latest).
func newRunStore(kv jetstream.KeyValue, margin, retention time.Duration, leader records.Requester) runStore {
	return records.New(kv, records.Config[runRecord]{
		Name:    "analysis run",
		Prepare: func(rec *runRecord) { rec.Wakeup = rec.wakeup(margin, retention) },
		Leader:  leader,
	})
}

// measuredID is the deterministic event id of the n-th measurement (from 1)
// of metric in run.
func measuredID(r events.Ref, run, metric string, n int32) string {
	return strings.Join([]string{"measured", r.Namespace, r.Name, run, metric, fmt.Sprint(n)}, "/")
}
