package machine

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

const (
	phasePending      = spec.AnalysisPhasePending
	phaseRunning      = spec.AnalysisPhaseRunning
	phaseSuccessful   = spec.AnalysisPhaseSuccessful
	phaseFailed       = spec.AnalysisPhaseFailed
	phaseError        = spec.AnalysisPhaseError
	phaseInconclusive = spec.AnalysisPhaseInconclusive
)

// wantedRun is an analysis run the rollout needs now.
type wantedRun struct {
	Name    string
	Purpose string
	Step    int32
	Spec    *spec.RolloutAnalysis
}

// runName names a run as Argo does: <rollout>-<pod hash>-<revision>, then
// -<step> for a step run, -pre or -post for blue/green, and .<n> after the
// n-th restart of the plan. action is the plan action the run serves
// (analysis, preview, postPromotionAnalysis), "" for background analysis.
func (d *decision) runName(action string, step int32) string {
	s := d.s
	name := fmt.Sprintf("%s-%s-%d", s.Ref.Name, s.PodHash, s.Revision)
	switch action {
	case actionAnalysis:
		name += fmt.Sprintf("-%d", step)
	case actionPreview:
		name += "-pre"
	case actionPostPromotionAnalysis:
		name += "-post"
	}
	if s.Retries > 0 {
		name += fmt.Sprintf(".%d", s.Retries)
	}
	return name
}

// wantedRuns lists the runs the update needs now: background analysis from
// its starting step until the steps are done, the current analysis step's
// run, and blue/green's pre-promotion run (once the preview is up) and
// post-promotion run. Nothing runs after an abort or a full promotion.
func (d *decision) wantedRuns() []wantedRun {
	s := d.s
	if s.isExperiment() {
		return d.standaloneRuns()
	}
	if !s.inProgress() || s.Aborted || s.PromoteFull || s.Deleting {
		return nil
	}
	var out []wantedRun
	if c := s.canary(); c != nil {
		if a := c.Analysis; a != nil && s.Step < s.planLen() {
			start := int32(0)
			if a.StartingStep != nil {
				start = *a.StartingStep
			}
			if s.Step >= start {
				out = append(out, wantedRun{Name: d.runName("", 0), Purpose: purposeBackground, Spec: &a.RolloutAnalysis})
			}
		}
		if st, ok := s.planStep(s.Step); ok && st.Action == actionAnalysis {
			out = append(out, wantedRun{Name: d.runName(actionAnalysis, s.Step), Purpose: purposeStep, Step: s.Step, Spec: st.Canary.Analysis})
		}
		if st, ok := s.planStep(s.Step); ok && st.Action == actionExperiment {
			out = append(out, d.experimentRuns(st.Canary.Experiment)...)
		}
		return out
	}
	b := s.blueGreen()
	switch {
	case s.Step == 0 && b.PrePromotionAnalysis != nil && d.scaleDone() && d.routeDone():
		out = append(out, wantedRun{Name: d.runName(actionPreview, 0), Purpose: purposePrePromotion, Spec: b.PrePromotionAnalysis})
	case s.Step == 2 && b.PostPromotionAnalysis != nil:
		out = append(out, wantedRun{Name: d.runName(actionPostPromotionAnalysis, 2), Purpose: purposePostPromotion, Step: 2, Spec: b.PostPromotionAnalysis})
	}
	return out
}

func (d *decision) findRun(name string) *RunRecord {
	for i := range d.s.Runs {
		if d.s.Runs[i].Name == name {
			return &d.s.Runs[i]
		}
	}
	return nil
}

// wanted reports whether the run named name is one the update needs now.
func (d *decision) wanted(name string) bool {
	for _, w := range d.wantedRuns() {
		if w.Name == name {
			return true
		}
	}
	return false
}

// runPassed reports whether the run named name succeeded, or was
// inconclusive and promoted past.
func (d *decision) runPassed(name string) bool {
	run := d.findRun(name)
	return run != nil && (run.Phase == string(phaseSuccessful) || run.Skipped)
}

// syncRuns starts the runs the update needs, terminates the ones it no
// longer needs, and forgets runs that are neither needed nor running.
func (d *decision) syncRuns() {
	s := d.s
	want := d.wantedRuns()
	needed := map[string]bool{}
	for _, w := range want {
		needed[w.Name] = true
		if d.findRun(w.Name) == nil {
			d.startRun(w)
		}
	}
	var keep []RunRecord
	stopped := 0
	for i := len(s.Runs) - 1; i >= 0; i-- { // newest first
		run := &s.Runs[i]
		if needed[run.Name] {
			keep = append(keep, *run)
			continue
		}
		if !run.finished() && run.Task.active() && run.Stop == nil {
			purpose := "terminate-" + run.Purpose
			if run.Purpose == purposeStep {
				purpose += fmt.Sprintf("-%d", run.Step)
			}
			t := d.newTask(tasks.KindAnalysisTerminate, purpose, run.Task.Revision)
			t.Analysis = &tasks.Analysis{RunName: run.Name, Purpose: run.Purpose}
			run.Stop = t
			// A run being stopped is not sent again.
			run.Task.StartBy = time.Time{}
			d.send(t)
		}
		// A stopped run is kept until its final verdict, which the analyzer
		// reports after terminating it, so that the verdict is published;
		// a few at most, in case it never comes.
		if !run.finished() && run.Task.active() && (run.Stop == nil || !run.Stop.Failed) && stopped < maxStoppedRuns {
			stopped++
			keep = append(keep, *run)
		}
	}
	slices.Reverse(keep)
	s.Runs = keep
}

// maxStoppedRuns bounds the runs kept while waiting for the verdict of
// their termination.
const maxStoppedRuns = 4

func (d *decision) startRun(w wantedRun) {
	s := d.s
	purpose := "analysis-" + w.Purpose
	if w.Purpose == purposeStep {
		purpose += fmt.Sprintf("-%d", w.Step)
	}
	t := d.newTask(tasks.KindAnalysisRun, purpose, s.Revision)
	args := d.resolveArgs(w.Spec.Args)
	if w.Purpose == purposeExperiment {
		args = d.experimentArgs(args)
	}
	t.Analysis = &tasks.Analysis{RunName: w.Name, Purpose: w.Purpose, Spec: w.Spec, Args: args}
	s.Runs = append(s.Runs, RunRecord{Name: w.Name, Purpose: w.Purpose, Step: w.Step, Phase: string(phasePending), Task: *t})
	d.send(&s.Runs[len(s.Runs)-1].Task)
}

// runFinished records the verdict of an analysis run, or retries a run
// the analyzer could not start.
func (d *decision) runFinished(run *RunRecord, f tasks.Finished) bool {
	t := &run.Task
	if f.Analysis == nil && f.Outcome == tasks.OutcomeFailed {
		d.attemptFailed(taskRef{t: t, run: run}, fmt.Sprintf("%s (analyzer task %s, %d attempts)", f.Message, t.ID, t.Attempt))
		return true
	}
	sum := events.AnalysisSummary{Name: run.Name, Phase: string(phaseSuccessful), Message: f.Message}
	if f.Analysis != nil {
		sum = *f.Analysis
		if sum.Name == "" {
			sum.Name = run.Name
		}
		if !spec.AnalysisPhase(sum.Phase).Completed() {
			sum.Phase = string(phaseError)
			if sum.Message == "" {
				sum.Message = "analysis run finished without a verdict"
			}
		}
	}
	t.Done, t.Started = true, true
	d.recordVerdict(run, sum)
	return true
}

// recordVerdict publishes a run's final verdict and acts on it: a failed or
// errored run the update needs aborts it, an inconclusive one pauses it.
func (d *decision) recordVerdict(run *RunRecord, sum events.AnalysisSummary) {
	s := d.s
	run.Phase = sum.Phase
	needed := d.wanted(run.Name)
	if !needed && run.Stop != nil && sum.Phase == string(phaseSuccessful) {
		// Terminated before a verdict: the analyzer calls that successful,
		// but nothing passed.
		sum.Phase = events.AnalysisTerminated
		sum.Message = "terminated before a verdict: " + d.moveReason(run.Task.Revision)
	}
	run.Summary = &sum
	last := sum
	s.LastAnalysis = &last
	run.Task.StartBy, run.Task.FinishBy = time.Time{}, time.Time{}
	d.emit(events.TypeAnalysisCompleted, events.StatusData{Analysis: &last})
	if !needed {
		return
	}
	if run.Purpose == purposeExperiment {
		d.experimentVerdict(run, sum)
		return
	}
	switch spec.AnalysisPhase(sum.Phase) {
	case phaseFailed, phaseError:
		msg := fmt.Sprintf("%s analysis run %s %s", run.Purpose, run.Name, strings.ToLower(sum.Phase))
		if sum.Message != "" {
			msg += ": " + sum.Message
		}
		d.abort(msg)
	case phaseInconclusive:
		d.addCondition(PauseInconclusive)
		d.emit(events.TypeRolloutPaused, events.StatusData{Reason: fmt.Sprintf("%s: analysis run %s is inconclusive", PauseInconclusive, run.Name)})
	}
}

// moveReason says why the update no longer needs a run or an experiment
// of revision.
func (d *decision) moveReason(revision int64) string {
	s := d.s
	switch {
	case s.isExperiment() && s.Deleting:
		return "the experiment is being deleted"
	case s.isExperiment():
		return "the experiment ended"
	case s.Deleting:
		return "the rollout is being deleted"
	case revision != s.Revision:
		return fmt.Sprintf("revision %d replaced revision %d", s.Revision, revision)
	case s.Aborted:
		return "the update was aborted"
	case s.PromoteFull:
		return "skipped by a full promotion"
	case !s.inProgress():
		return "the update is over"
	}
	return "promoted past"
}

func (d *decision) measured(m tasks.Measured) bool {
	ref, ok := d.s.findTask(m.TaskID)
	if !ok || ref.run == nil || ref.t != &ref.run.Task || ref.run.finished() {
		return false
	}
	run := ref.run
	metric := m.Measurement.Metric
	if m.Index < 1 || m.Index <= run.Measured[metric] {
		return false // a redelivered measurement, or an unnumbered one
	}
	if run.Measured == nil {
		run.Measured = map[string]int{}
	}
	run.Measured[metric] = m.Index
	sum := m.Analysis
	if sum.Name == "" {
		sum.Name = run.Name
	}
	run.Summary = &sum
	if !spec.AnalysisPhase(sum.Phase).Completed() && sum.Phase != "" {
		run.Phase = sum.Phase
	} else {
		run.Phase = string(phaseRunning)
	}
	last := sum
	d.s.LastAnalysis = &last
	meas := m.Measurement
	d.emit(events.TypeAnalysisMeasured, events.StatusData{Measurement: &meas, Analysis: &last})
	return true
}

// resolveArgs fills the arguments that take their value from the rollout:
// the stable or latest pod template hash, and fields of the Rollout
// (metadata.name, metadata.labels['app'], spec.replicas, ...). An argument
// whose field does not resolve is passed on as written, for the analyzer
// to report.
func (d *decision) resolveArgs(args []spec.AnalysisRunArgument) []spec.AnalysisRunArgument {
	s := d.s
	if len(args) == 0 {
		return nil
	}
	var doc any
	if s.Spec != nil {
		ro := *s.Spec
		ro.Spec.Template = s.template(s.PodHash)
		if b, err := json.Marshal(ro); err == nil {
			_ = json.Unmarshal(b, &doc)
		}
	}
	out := make([]spec.AnalysisRunArgument, len(args))
	for i, a := range args {
		out[i] = a
		vf := a.ValueFrom
		if vf == nil {
			continue
		}
		switch {
		case vf.PodTemplateHashValue != nil && *vf.PodTemplateHashValue == spec.Stable:
			out[i] = spec.AnalysisRunArgument{Name: a.Name, Value: s.StableHash}
		case vf.PodTemplateHashValue != nil && *vf.PodTemplateHashValue == spec.Latest:
			out[i] = spec.AnalysisRunArgument{Name: a.Name, Value: s.PodHash}
		case vf.FieldRef != nil:
			if v, ok := fieldValue(doc, vf.FieldRef.FieldPath); ok {
				out[i] = spec.AnalysisRunArgument{Name: a.Name, Value: v}
			}
		}
	}
	return out
}

// fieldValue evaluates a field path such as metadata.labels['app'] or
// spec.strategy.canary.steps[0].setWeight against a decoded JSON document.
func fieldValue(doc any, path string) (string, bool) {
	var keys []string
	for rest := path; rest != ""; {
		switch {
		case strings.HasPrefix(rest, "."):
			rest = rest[1:]
		case strings.HasPrefix(rest, "['") || strings.HasPrefix(rest, `["`):
			quote := rest[1:2]
			end := strings.Index(rest[2:], quote+"]")
			if end < 0 {
				return "", false
			}
			keys = append(keys, rest[2:2+end])
			rest = rest[2+end+2:]
		case strings.HasPrefix(rest, "["):
			end := strings.Index(rest, "]")
			if end < 0 {
				return "", false
			}
			keys = append(keys, rest[1:end])
			rest = rest[end+1:]
		default:
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			keys = append(keys, rest[:end])
			rest = rest[end:]
		}
	}
	v := doc
	for _, k := range keys {
		switch x := v.(type) {
		case map[string]any:
			next, ok := x[k]
			if !ok {
				return "", false
			}
			v = next
		case []any:
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 || n >= len(x) {
				return "", false
			}
			v = x[n]
		default:
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case nil:
		return "", false
	case map[string]any, []any:
		b, err := json.Marshal(x)
		return string(b), err == nil
	default:
		return fmt.Sprint(x), true
	}
}
