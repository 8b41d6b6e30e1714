package analyzer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
)

// startRun is the analysis.run executor. It creates the run's record and
// returns an empty outcome: the run reports its measurements and its
// verdict later. A redelivered task finds the record and changes nothing
// (a later attempt of the same task becomes the one the verdict answers).
//
// A template that cannot be found finishes the task Failed, so that the
// orchestrator sends it again (the template may be applied meanwhile). A
// run that can never be measured (invalid templates, conflicting or
// missing arguments, unknown providers) gets Argo Rollouts' verdict: phase
// Error with the reason.
func (s *Service) startRun(ctx context.Context, t tasks.Task) (tasks.Finished, error) {
	a := t.Analysis
	if a == nil || a.RunName == "" || a.Spec == nil {
		return failed("an %s task needs analysis.runName and analysis.spec", t.Kind), nil
	}
	key, err := runKey(t.Ref, a.RunName)
	if err != nil {
		return failed("%v", err), nil
	}
	var fin tasks.Finished
	var started *analysis.Run
	// A run left as it is (a redelivery) is decided on the leader's
	// record: an older one may not know of a later attempt or task.
	_, err = s.runs.Update(ctx, key, records.Checked(func(rec *runRecord, rev uint64) error {
		fin, started = tasks.Finished{}, nil
		if rev != 0 {
			var replace, write bool
			if fin, replace, write = existingRun(rec, t); !replace {
				if write {
					return nil
				}
				return records.Unchanged
			}
		}
		run, f, err := s.newRun(ctx, t)
		if err != nil || f.Outcome != "" {
			fin = f
			if err == nil {
				err = records.Unchanged
			}
			return err
		}
		*rec = runRecord{Task: t, Run: &run}
		rec.addVerdict(s.cfg.Now())
		started = &run
		return nil
	}))
	if err != nil {
		return tasks.Finished{}, err
	}
	if started != nil {
		s.log.Info("analysis run started", "rollout", t.Ref.String(), "run", started.Name, "task", t.ID, "metrics", len(started.Metrics))
	}
	return fin, nil
}

// existingRun decides on an analysis.run task whose run already has a
// record: fin is the task's outcome, write says that rec was changed and
// must be written, and replace that the task supersedes the record (a
// later task that reuses the run's name), which should then be replaced by
// a new run.
func existingRun(rec *runRecord, t tasks.Task) (fin tasks.Finished, replace, write bool) {
	switch {
	case rec.Task.ID == t.ID && rec.Run != nil:
		if t.Attempt > rec.Task.Attempt {
			// The orchestrator sent the task again: the verdict must answer
			// the attempt it now waits for.
			rec.Task.Attempt = t.Attempt
			write = true
		}
		if rec.Run.Completed() {
			return verdict(*rec.Run), false, write
		}
		return tasks.Finished{}, false, write
	case t.Seq <= max(rec.Task.Seq, rec.TerminatedSeq):
		return tasks.Finished{
			Outcome: tasks.OutcomeStale,
			Message: fmt.Sprintf("analysis run %s was already started or terminated by a later task", t.Analysis.RunName),
		}, false, false
	}
	return tasks.Finished{}, true, false
}

// newRun resolves the templates of t, merges them with its arguments and
// starts the run at now. A non-empty Finished is the task's outcome when
// the run cannot start; an error is a failure to retry.
func (s *Service) newRun(ctx context.Context, t tasks.Task) (analysis.Run, tasks.Finished, error) {
	a := t.Analysis
	invalid := func(err error) (analysis.Run, tasks.Finished, error) {
		sum := events.AnalysisSummary{Name: a.RunName, Phase: string(spec.AnalysisPhaseError), Message: err.Error()}
		s.log.Warn("analysis run cannot start", "rollout", t.Ref.String(), "run", a.RunName, "task", t.ID, "error", err)
		return analysis.Run{}, tasks.Finished{Outcome: tasks.OutcomeSucceeded, Message: sum.Message, Analysis: &sum}, nil
	}
	if len(a.Spec.Templates) == 0 {
		return invalid(fmt.Errorf("analysis run %q names no template", a.RunName))
	}
	// Argo merges the AnalysisTemplates before the ClusterAnalysisTemplates.
	var refs []spec.AnalysisTemplateRef
	for _, cluster := range []bool{false, true} {
		for _, ref := range a.Spec.Templates {
			if ref.ClusterScope == cluster {
				refs = append(refs, ref)
			}
		}
	}
	var specs []spec.AnalysisTemplateSpec
	var missing, problems []string
	for _, ref := range refs {
		ts, err := lookupTemplate(ctx, s.templates, t.Ref.Namespace, ref)
		switch {
		case errors.Is(err, ErrTemplateNotFound):
			missing = append(missing, strings.TrimPrefix(err.Error(), ErrTemplateNotFound.Error()+": "))
		case events.IsPermanent(err):
			problems = append(problems, err.Error())
		case err != nil:
			return analysis.Run{}, tasks.Finished{}, err
		default:
			specs = append(specs, ts)
		}
	}
	if len(missing) > 0 {
		msg := strings.Join(missing, "; ")
		s.log.Warn("analysis run cannot start yet", "rollout", t.Ref.String(), "run", a.RunName, "task", t.ID, "error", msg)
		return analysis.Run{}, failed("%s", msg), nil
	}
	if len(problems) > 0 {
		return invalid(errors.New(strings.Join(problems, "; ")))
	}
	merged, err := analysis.Merge(specs, runArgs(a), a.Spec.DryRun, a.Spec.MeasurementRetention)
	if err != nil {
		return invalid(fmt.Errorf("analysis run %q: %w", a.RunName, err))
	}
	run, err := analysis.New(a.RunName, merged, s.cfg.Now())
	if err != nil {
		return invalid(err)
	}
	var unmeasurable []error
	for _, m := range run.Metrics {
		if err := s.cfg.Providers.Check(m); err != nil {
			unmeasurable = append(unmeasurable, err)
		}
	}
	if len(unmeasurable) > 0 {
		return invalid(fmt.Errorf("analysis run %q: %w", a.RunName, errors.Join(unmeasurable...)))
	}
	return run, tasks.Finished{}, nil
}

// runArgs are the arguments a run gets: the rollout's (analysis.spec.args)
// with the values the orchestrator resolved (analysis.args) in place of
// theirs.
func runArgs(a *tasks.Analysis) []spec.AnalysisRunArgument {
	out := append([]spec.AnalysisRunArgument(nil), a.Spec.Args...)
	for _, arg := range a.Args {
		replaced := false
		for i := range out {
			if out[i].Name == arg.Name {
				out[i], replaced = arg, true
			}
		}
		if !replaced {
			out = append(out, arg)
		}
	}
	return out
}

// terminateRun is the analysis.terminate executor. It terminates the named
// run, which then reports its verdict (Successful unless a metric had
// already decided otherwise). A run that does not exist is terminated
// too: a tombstone makes its analysis.run task, should it arrive late,
// Stale.
func (s *Service) terminateRun(ctx context.Context, t tasks.Task) (tasks.Finished, error) {
	a := t.Analysis
	if a == nil || a.RunName == "" {
		return failed("an %s task needs analysis.runName", t.Kind), nil
	}
	key, err := runKey(t.Ref, a.RunName)
	if err != nil {
		return failed("%v", err), nil
	}
	var fin tasks.Finished
	var terminated *analysis.Run
	// "Already finished" is decided on the leader's record: an older one
	// may hold the tombstone a later task has replaced with a running run.
	_, err = s.runs.Update(ctx, key, records.Checked(func(rec *runRecord, rev uint64) error {
		terminated = nil
		now := s.cfg.Now()
		switch {
		case rev == 0:
			*rec = runRecord{Task: tasks.Task{Ref: t.Ref}, TerminatedSeq: t.Seq, DoneAt: now}
			fin = tasks.Finished{Outcome: tasks.OutcomeSucceeded, Message: fmt.Sprintf("analysis run %s does not exist; it will not start", a.RunName)}
			return nil
		case rec.Run == nil || rec.Run.Completed():
			fin = tasks.Finished{Outcome: tasks.OutcomeSucceeded, Message: fmt.Sprintf("analysis run %s had already finished", a.RunName)}
			return records.Unchanged
		}
		run := analysis.Terminate(*rec.Run)
		rec.Run = &run
		rec.TerminatedSeq = max(rec.TerminatedSeq, t.Seq)
		rec.addVerdict(now)
		fin, terminated = tasks.Finished{Outcome: tasks.OutcomeSucceeded}, &run
		return nil
	}))
	if err != nil {
		return tasks.Finished{}, err
	}
	if run := terminated; run != nil {
		s.cfg.Metrics.Verdict(string(run.Phase))
		s.log.Info("analysis run terminated", "rollout", t.Ref.String(), "run", run.Name, "phase", run.Phase)
		if err := s.flush(ctx, key); err != nil {
			// The record keeps the verdict; a replica publishes it later.
			s.log.Warn("verdict of a terminated run not published yet", "run", run.Name, "error", err)
		}
	}
	return fin, nil
}

func failed(format string, args ...any) tasks.Finished {
	return tasks.Finished{Outcome: tasks.OutcomeFailed, Message: fmt.Sprintf(format, args...)}
}
