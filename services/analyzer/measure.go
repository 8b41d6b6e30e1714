package analyzer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// retryAfter is how soon a replica looks at a record again after the bus
// failed it.
const retryAfter = time.Second

// process does what is due on one run record: it publishes the reports
// left in its outbox, deletes it once its retention has passed, or claims
// and takes the measurements that are due. It returns when to look at the
// record again if the bucket will not say so (zero when it will).
//
// It reads the leader's record (Latest): the bucket says when a record
// is due once, and a replica that lags behind answers with an older
// record, or none, on which process would find nothing to do (or lose
// its claim to a record the bucket has moved past) and the run would
// wait for its next change, which may never come.
func (s *Service) process(ctx context.Context, key string) time.Time {
	rec, rev, err := s.runs.Latest(ctx, key)
	if err != nil {
		return s.retry(ctx, key, "load", err)
	}
	if rev == 0 {
		return time.Time{}
	}
	if len(rec.Outbox) > 0 {
		if err := s.flush(ctx, key); err != nil {
			return s.retry(ctx, key, "publish reports", err)
		}
		if rec, rev, err = s.runs.Latest(ctx, key); err != nil {
			return s.retry(ctx, key, "load", err)
		}
		if rev == 0 {
			return time.Time{}
		}
	}
	now := s.cfg.Now()
	switch {
	case !rec.DoneAt.IsZero():
		if end := rec.DoneAt.Add(s.cfg.Retention); now.Before(end) {
			return end
		}
		if err := s.runs.Delete(ctx, key, rev); err != nil && !errors.Is(err, records.ErrConflict) {
			return s.retry(ctx, key, "delete", err)
		}
		return time.Time{}
	case rec.Run == nil:
		return time.Time{}
	case rec.Lease != nil && now.Before(rec.Lease.Expires):
		return rec.Lease.Expires // another replica measures until then
	}
	due := rec.Run.Due(now)
	if len(due) == 0 {
		// The wakeup was computed on another replica's clock.
		t, _ := rec.Run.NextWakeup()
		return t
	}
	if old := rec.Lease; old != nil {
		s.log.Warn("measurement lease expired; measuring in its place", "run", key, "owner", old.Owner, "metrics", old.Metrics, "expired", old.Expires)
	}
	l := lease{Owner: s.cfg.ID, Token: uuid.NewString(), Expires: now.Add(s.leaseFor(due))}
	for _, m := range due {
		l.Metrics = append(l.Metrics, m.Name)
	}
	rec.Lease = &l
	rev, err = s.runs.Put(ctx, key, rec, rev)
	if errors.Is(err, records.ErrConflict) {
		return time.Time{} // another replica claimed it, or the run changed: the watch says how
	}
	if err != nil {
		return s.retry(ctx, key, "claim", err)
	}

	taken := s.measure(ctx, rec.Task, *rec.Run, due)
	if ctx.Err() != nil {
		// Shutting down: let another replica take the slot at once.
		s.release(key, l.Token)
		return time.Time{}
	}
	if err := s.commit(ctx, key, rec, rev, l.Token, taken); err != nil {
		return s.retry(ctx, key, "write measurements", err)
	}
	if err := s.flush(ctx, key); err != nil {
		s.log.Warn("reports written but not published yet; they will be", "run", key, "error", err)
	}
	return time.Time{}
}

func (s *Service) retry(ctx context.Context, key, what string, err error) time.Time {
	if ctx.Err() != nil {
		return time.Time{}
	}
	if events.IsPermanent(err) {
		// An unreadable entry: retrying will not help; a new write will
		// bring it back.
		s.log.Error("analysis run: "+what+" failed", "run", key, "error", err)
		return time.Time{}
	}
	s.log.Warn("analysis run: "+what+" failed; will retry", "run", key, "error", err)
	return s.cfg.Now().Add(retryAfter)
}

// leaseFor is how long a claim on metrics lasts: the longest provider
// timeout among them plus LeaseMargin.
func (s *Service) leaseFor(metrics []spec.Metric) time.Duration {
	var longest time.Duration
	for _, m := range metrics {
		longest = max(longest, s.cfg.Providers.Timeout(m))
	}
	return longest + s.cfg.LeaseMargin
}

// taken is one measurement of one metric.
type taken struct {
	metric string
	m      metrics.Measurement
}

// measure takes one measurement of each due metric of a run of task t's
// rollout (or experiment), at once. Every secret read for it, as an argument or by a
// provider, is redacted from the measurements.
func (s *Service) measure(ctx context.Context, t tasks.Task, run analysis.Run, due []spec.Metric) []taken {
	ref := t.Ref
	values, secretErr := s.secretValues(ctx, ref.Namespace, run.SecretArgs)
	read := &secretsRead{}
	for _, v := range values {
		read.add(v)
	}
	out := make([]taken, len(due))
	var wg sync.WaitGroup
	for i, m := range due {
		res, _ := run.Result(m.Name)
		req := metrics.Request{
			Namespace: ref.Namespace, Rollout: ref.Name, OwnerKind: t.OwnerKind, Run: run.Name,
			ID: fmt.Sprintf("%s.%s.%d", run.Name, m.Name, total(res)+1),
			Secret: func(ctx context.Context, name, key string) (string, error) {
				v, err := s.cfg.Secrets.Value(ctx, ref.Namespace, spec.SecretKeyRef{Name: name, Key: key})
				if err == nil {
					read.add(v)
				}
				return v, err
			},
			Setting: func(ctx context.Context, name, key string) (string, error) {
				return s.cfg.Secrets.Value(ctx, ref.Namespace, spec.SecretKeyRef{Name: name, Key: key})
			},
		}
		wg.Go(func() {
			got := s.measureOne(ctx, m, req, values, secretErr)
			out[i] = taken{metric: m.Name, m: got.Redact(read.all()...)}
		})
	}
	wg.Wait()
	return out
}

// secretsRead collects the secret values read for one set of measurements.
type secretsRead struct {
	mu     sync.Mutex
	values []string
}

func (r *secretsRead) add(v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values = append(r.values, v)
}

func (r *secretsRead) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.values)
}

// measureOne measures metric through its provider. The measurement's times
// are the analyzer's, which schedules the run, whatever clock the provider
// keeps. A provider that panics gives an Error measurement.
func (s *Service) measureOne(ctx context.Context, metric spec.Metric, req metrics.Request, secrets map[string]string, secretErr error) (m metrics.Measurement) {
	start := s.cfg.Now()
	req.Metric = metric
	defer func() { s.cfg.Metrics.Measurement(string(m.Provider), string(m.Phase)) }()
	fail := func(format string, args ...any) metrics.Measurement {
		typ, _ := metrics.Type(metric.Provider)
		return metrics.Measurement{Phase: spec.AnalysisPhaseError, Provider: typ, Message: fmt.Sprintf(format, args...), StartedAt: start, FinishedAt: s.cfg.Now()}
	}
	if secretErr != nil {
		return fail("%v", secretErr)
	}
	if len(secrets) > 0 {
		var err error
		if req.Metric, err = analysis.Substitute(metric, secrets); err != nil {
			return fail("%v", err)
		}
	}
	p, err := s.cfg.Providers.Provider(req.Metric)
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("metric provider panicked", "provider", p.Type(), "metric", metric.Name, "panic", r)
			m = fail("the %s provider failed unexpectedly", p.Type())
		}
	}()
	// The provider bounds the request with the metric's timeout; this
	// bounds a provider that does not, before the lease ends.
	mctx, cancel := context.WithTimeout(ctx, p.Timeout(req.Metric)+s.cfg.LeaseMargin/2)
	defer cancel()
	m = p.Measure(mctx, req)
	m.StartedAt, m.FinishedAt = start, s.cfg.Now()
	if m.Provider == "" {
		m.Provider = p.Type()
	}
	return m
}

// commit records the measurements taken under the lease token in the run
// and writes it back without the lease, with a report per recorded
// measurement (and the verdict once the run is completed) in its outbox.
// Measurements are dropped when the lease is no longer the record's: the
// lease expired and another replica measures in this one's place. That is
// decided on the leader's record (records.Checked): on an older one a
// replica that lags answers, the lease may look lost when it is not.
func (s *Service) commit(ctx context.Context, key string, rec runRecord, rev uint64, token string, measured []taken) error {
	var finished *analysis.Run
	_, err := s.runs.UpdateFrom(ctx, key, rec, rev, records.Checked(func(rec *runRecord, rev uint64) error {
		// A conflict means someone else wrote (a terminate, a later attempt
		// of the task): record again on what they wrote, if the lease is
		// still ours.
		finished = nil
		if rev == 0 {
			return records.Unchanged
		}
		if rec.Lease == nil || rec.Lease.Token != token || rec.Run == nil {
			s.log.Warn("measurement lease lost before the measurements were written; they are dropped and taken again", "run", key)
			return records.Unchanged
		}
		now := s.cfg.Now()
		run := *rec.Run
		for _, tk := range measured {
			before, _ := run.Result(tk.metric)
			run = analysis.Record(run, tk.metric, tk.m)
			res, _ := run.Result(tk.metric)
			n := total(res)
			if n == total(before) || len(res.Measurements) == 0 {
				continue // dropped: the run was terminated or decided meanwhile
			}
			last := res.Measurements[len(res.Measurements)-1]
			rec.addReport(report{
				ID: measuredID(rec.Task.Ref, run.Name, tk.metric, n),
				Measured: &tasks.Measured{
					TaskID: rec.Task.ID, RunName: run.Name, Index: int(n),
					Measurement: last.Event(tk.metric), Analysis: run.Summary(),
				},
			}, now)
		}
		rec.Run, rec.Lease = &run, nil
		rec.addVerdict(now)
		if run.Completed() {
			finished = &run
		}
		return nil
	}))
	if run := finished; err == nil && run != nil {
		s.cfg.Metrics.Verdict(string(run.Phase))
		s.log.Info("analysis run finished", "rollout", rec.Task.Ref.String(), "run", run.Name, "phase", run.Phase, "message", run.Message)
	}
	return err
}

// total counts every measurement a metric recorded.
func total(res analysis.MetricResult) int32 {
	return res.Successful + res.Failed + res.Inconclusive + res.Error
}

// release gives up a lease that will not be used, so that another replica
// measures at once rather than when the lease expires.
func (s *Service) release(key, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = s.runs.Update(ctx, key, records.Checked(func(rec *runRecord, rev uint64) error {
		if rev == 0 || rec.Lease == nil || rec.Lease.Token != token {
			return records.Unchanged
		}
		rec.Lease = nil
		return nil
	}))
}

// flush publishes the reports in the record's outbox, in order, and then
// removes them from it. Every replica may flush the same outbox: the event
// ids make the results stream keep one copy. Once the verdict is out the
// record is done. The outbox is the leader's: an older record's may be
// empty, and the reports would wait for the next change of the record.
func (s *Service) flush(ctx context.Context, key string) error {
	rec, rev, err := s.runs.Latest(ctx, key)
	if err != nil || rev == 0 || len(rec.Outbox) == 0 {
		return err
	}
	sent := map[string]bool{}
	for _, r := range rec.Outbox {
		if err := s.publish(ctx, rec.Task, r); err != nil {
			return err
		}
		sent[r.ID] = true
	}
	_, err = s.runs.UpdateFrom(ctx, key, rec, rev, records.Checked(func(rec *runRecord, rev uint64) error {
		keep := slices.DeleteFunc(slices.Clone(rec.Outbox), func(r report) bool { return sent[r.ID] })
		if rev == 0 || len(keep) == len(rec.Outbox) {
			return records.Unchanged // deleted, or cleared by another replica
		}
		finished := slices.ContainsFunc(rec.Outbox, func(r report) bool { return r.Finished != nil && sent[r.ID] })
		rec.Outbox = keep
		if len(keep) == 0 {
			rec.OutboxAt = time.Time{}
		}
		if finished && rec.DoneAt.IsZero() {
			rec.DoneAt = s.cfg.Now()
		}
		return nil
	}))
	return err
}

// publish sends one report of task t's run.
func (s *Service) publish(ctx context.Context, t tasks.Task, r report) error {
	switch {
	case r.Measured != nil:
		ev, err := events.New(Source, tasks.TypeMeasured, t.Ref.String(), r.Measured)
		if err != nil {
			return err
		}
		ev.SetID(r.ID)
		_, err = s.client.Publish(ctx, events.ResultSubject(tasks.ServiceAnalyzer, t.Ref), ev)
		return err
	case r.Finished != nil:
		return s.worker.Finish(ctx, t, *r.Finished)
	}
	return nil
}
