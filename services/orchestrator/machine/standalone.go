package machine

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// A standalone Experiment is a State with Kind spec.KindExperiment: no
// rollout spec, no revisions of its own, one ExperimentRecord (named after
// the experiment) whose templates carry their own pod templates, and its
// analysis runs. It shares the rollout's machinery (tasks, deadlines, runs,
// scale) and its key: a namespace holds one Rollout or Experiment of a
// name, because the two share the command and status subjects.
//
// Its phases are ExperimentRecord's: Pending until every template's pods
// are available (or Failed at the progress deadline), Running until its
// duration passes or its analyses decide, then Successful, Failed, Error or
// Inconclusive (io.sluice.experiment.completed.v1), or Terminated by a
// terminate command, spec.terminate or its deletion.

// standaloneRevision is the revision of every task of a standalone
// experiment: it has one set of pods, requested once.
const standaloneRevision = 1

// isExperiment reports whether the state is a standalone Experiment's.
func (s *State) isExperiment() bool { return s.Kind == spec.KindExperiment }

// isRollout reports whether the state is an existing Rollout's.
func (s *State) isRollout() bool { return !s.isExperiment() && s.Revision != 0 }

// standalone is the standalone experiment's record.
func (s *State) standalone() *ExperimentRecord {
	if !s.isExperiment() || len(s.Experiments) == 0 {
		return nil
	}
	return &s.Experiments[0]
}

// requestExperiment applies a requested Experiment: it creates the
// experiment, answers a repeated request for the same spec, terminates
// on spec.terminate, and rejects any other change (an experiment's spec
// cannot change once accepted, as its pods and runs are made from it).
func (d *decision) requestExperiment(in *spec.Experiment) bool {
	s := d.s
	if in == nil || in.Name == "" {
		return false
	}
	e := leanExperiment(in)
	ref := events.Ref{Namespace: e.Namespace, Name: e.Name}
	if s.Ref != (events.Ref{}) && ref != s.Ref {
		return false
	}
	s.Ref = ref
	reject := func(reason string, problems ...string) bool {
		d.emit(events.TypeExperimentRejected, events.StatusData{Errors: problems, Reason: reason})
		return true
	}
	if errs := in.Validate(); len(errs) > 0 {
		out := make([]string, len(errs))
		for i, err := range errs {
			out[i] = err.Error()
		}
		return reject("invalid Experiment", out...)
	}
	switch {
	case s.isRollout() || s.Spec != nil:
		return reject("name taken by a Rollout", fmt.Sprintf("metadata.name: Invalid value: %q: %s is a Rollout: a namespace holds one Rollout or Experiment of a name, as both use sluice.cmd.%s.%s; name the Experiment apart",
			e.Name, s.Ref, s.Ref.Namespace, s.Ref.Name))
	case s.Deleting:
		return reject("the experiment is being deleted: request it again once the deleted event is out")
	case s.isExperiment():
		if !sameExperimentSpec(s.ExperimentSpec, e) {
			return reject("an Experiment's spec cannot change once accepted",
				fmt.Sprintf("spec: Forbidden: experiment %s was accepted with another spec, which its pods and analyses run; delete it (io.sluice.experiment.delete.v1) and request it again", s.Ref))
		}
		d.emit(events.TypeExperimentAccepted, events.StatusData{})
		if e.Spec.Terminate {
			d.terminateExperiment("spec.terminate is set")
		}
		return true
	}
	s.Kind = spec.KindExperiment
	s.ExperimentSpec = e
	s.Revision, s.StableRevision = standaloneRevision, standaloneRevision
	if d.cause.ID != "" {
		s.UpdateID = d.cause.ID
	}
	ex := ExperimentRecord{
		Name: e.Name, Revision: standaloneRevision, Phase: experimentPending,
		ScaleDownDelay: time.Duration(max(*e.Spec.ScaleDownDelaySeconds, 0)) * time.Second,
	}
	if e.Spec.Duration != "" {
		if dur, err := e.Spec.Duration.Duration(); err == nil {
			ex.Duration = dur
		}
	}
	for _, t := range e.Spec.Templates {
		rec := ExperimentTemplateRecord{
			Name: t.Name, Revision: standaloneRevision, Replicas: max(*t.Replicas, 0),
			Selector: t.Selector.DeepCopy(), Hash: PodTemplateHash(t.Template),
		}
		rec.SourceHash = rec.Hash
		if t.Service != nil {
			rec.Service = t.Service.Name
			if rec.Service == "" {
				rec.Service = e.Name + "-" + t.Name
			}
		}
		ex.Templates = append(ex.Templates, rec)
	}
	s.Experiments = []ExperimentRecord{ex}
	d.emit(events.TypeExperimentAccepted, events.StatusData{})
	if e.Spec.Terminate {
		d.terminateExperiment("spec.terminate is set")
	}
	return true
}

// leanExperiment is a defaulted copy of in with the metadata the machine
// uses (name, namespace, labels, annotations but kubectl's copy of the
// manifest) and without its status.
func leanExperiment(in *spec.Experiment) *spec.Experiment {
	e := &spec.Experiment{TypeMeta: in.TypeMeta}
	if b, err := json.Marshal(in.Spec); err == nil {
		_ = json.Unmarshal(b, &e.Spec)
	}
	e.Name, e.Namespace = in.Name, in.Namespace
	e.Labels = maps.Clone(in.Labels)
	if len(in.Annotations) > 0 {
		e.Annotations = maps.Clone(in.Annotations)
		delete(e.Annotations, lastAppliedAnnotation)
	}
	e.SetDefaults()
	return e
}

// sameExperimentSpec reports whether b asks for what a does, whatever
// spec.terminate says; compared as a rollout's spec is (sameEncoding), so
// the two kinds cannot drift apart on what "the same request" means.
func sameExperimentSpec(a, b *spec.Experiment) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := a.Spec, b.Spec
	x.Terminate, y.Terminate = false, false
	return sameEncoding(x, y)
}

// experimentCommand applies a command of a standalone experiment:
// terminate or delete.
func (d *decision) experimentCommand(c Command) {
	s := d.s
	ex := s.standalone()
	if s.Deleting && c.Kind != CommandDelete {
		d.refuse(events.RefusedNotApplicable, "the experiment is being deleted")
		return
	}
	switch c.Kind {
	case CommandTerminate:
		if ex.ended() {
			d.refuse(events.RefusedNotApplicable, fmt.Sprintf("experiment %s already ended %s", s.Ref, ex.Phase))
			return
		}
		d.terminateExperiment("terminated by " + actorOr(d.cause.Actor, "an operator"))
	case CommandDelete:
		if s.Deleting {
			d.refuse(events.RefusedNotApplicable, "already being deleted")
			return
		}
		s.Deleting, s.DeleteCause = true, d.cause
		if !ex.ended() {
			ex.Phase, ex.Message = experimentTerminated, "terminated: the experiment is being deleted"
			d.endExperiment(ex)
			ex.ScaleDownAt = d.now
		}
	default:
		d.refuse(events.RefusedNotFound, fmt.Sprintf("%s is an Experiment, not a Rollout: it takes io.sluice.experiment.terminate.v1 and io.sluice.experiment.delete.v1", s.Ref))
	}
}

func actorOr(actor, otherwise string) string {
	if actor == "" {
		return otherwise
	}
	return actor
}

// terminateExperiment ends a running or pending experiment Terminated:
// its runs are terminated and its pods go after its scaleDownDelaySeconds.
func (d *decision) terminateExperiment(why string) {
	ex := d.s.standalone()
	if ex == nil || ex.ended() {
		return
	}
	ex.Phase, ex.Message = experimentTerminated, why
	d.endExperiment(ex)
	d.emit(events.TypeExperimentTerminated, events.StatusData{Reason: why})
}

// completeExperiment ends the experiment with its verdict.
func (d *decision) completeExperiment(ex *ExperimentRecord, phase, message string) {
	ex.Phase, ex.Message = phase, message
	d.endExperiment(ex)
	d.emit(events.TypeExperimentCompleted, events.StatusData{Reason: message})
}

// reconcileExperiment is reconcile for a standalone experiment.
func (d *decision) reconcileExperiment() {
	d.fireTaskDeadlines()
	d.advanceStandalone()
	d.syncRuns()
	d.syncScale()
	d.refreshPhase()
	d.announceDeleted()
}

// advanceStandalone starts the experiment running once its pods are
// available, and completes it Successful once its duration has passed.
func (d *decision) advanceStandalone() {
	ex := d.s.standalone()
	switch {
	case ex == nil || ex.ended() || d.s.Deleting:
	case ex.Phase == experimentPending:
		if !d.scaleDone() || !ex.available() {
			return
		}
		ex.Phase, ex.AvailableAt, ex.Message = experimentRunning, d.now, ""
		if ex.Duration > 0 {
			ex.EndsAt = d.now.Add(ex.Duration)
		}
		// Its analyses start now, before the event, so that the running
		// event lists its runs: a watcher (the dashboard's experiments
		// page) may know the experiment from this event alone until a run
		// reports, which a Job's run does only when it ends.
		d.syncRuns()
		d.emit(events.TypeExperimentRunning, events.StatusData{})
	case ex.Phase == experimentRunning && !ex.EndsAt.IsZero() && !d.now.Before(ex.EndsAt):
		d.completeExperiment(ex, string(phaseSuccessful), fmt.Sprintf("duration %s passed", ex.Duration))
	}
}

// standaloneVerdict acts on the verdict of one of a standalone
// experiment's runs: a failed, errored or inconclusive run ends the
// experiment so; without a duration, the experiment succeeds once every
// run required for completion has succeeded.
func (d *decision) standaloneVerdict(ex *ExperimentRecord, detail string, sum events.AnalysisSummary) {
	switch spec.AnalysisPhase(sum.Phase) {
	case phaseFailed, phaseError, phaseInconclusive:
		d.completeExperiment(ex, sum.Phase, detail)
	case phaseSuccessful:
		if ex.Duration == 0 && d.requiredSucceeded(ex) {
			d.completeExperiment(ex, sum.Phase, "every analysis required for completion succeeded")
		}
	}
}

// experimentAnalyses are the analyses of ex: its step's, or the
// standalone experiment's.
func (d *decision) experimentAnalyses(ex *ExperimentRecord) []spec.RolloutExperimentStepAnalysisTemplateRef {
	if e := d.s.ExperimentSpec; d.s.isExperiment() && e != nil {
		return e.Spec.Analyses
	}
	st, ok := d.s.planStep(ex.Step)
	if !ok || st.Canary.Experiment == nil {
		return nil
	}
	return st.Canary.Experiment.Analyses
}

// standaloneRuns are the runs of a running standalone experiment.
func (d *decision) standaloneRuns() []wantedRun {
	e := d.s.ExperimentSpec
	if e == nil || d.s.Deleting {
		return nil
	}
	return d.experimentRuns(&spec.RolloutExperimentStep{
		Analyses: e.Spec.Analyses, DryRun: e.Spec.DryRun, AnalysisRunMetadata: e.Spec.AnalysisRunMetadata,
	})
}

// standaloneFailed ends a pending or running experiment whose pods could
// not be made (phase Error) or were not available within its progress
// deadline (phase Failed, as Argo's).
func (d *decision) standaloneFailed(phase, message string) {
	if ex := d.s.standalone(); ex != nil && !ex.ended() && !d.s.Deleting {
		d.completeExperiment(ex, phase, message)
	}
}

// standaloneDeadlineMessage says which pods were late.
func (d *decision) standaloneDeadlineMessage() string {
	ex := d.s.standalone()
	var late []string
	for i := range ex.Templates {
		t := &ex.Templates[i]
		if t.Available < t.Replicas {
			late = append(late, fmt.Sprintf("%s (%d/%d available)", ex.pods(t).ReplicaSetName(), t.Available, t.Replicas))
		}
	}
	return fmt.Sprintf("ProgressDeadlineExceeded: the experiment's pods were not available within %s: %v", d.progressDeadline(), late)
}

// standaloneWorkload is the workload of a standalone experiment's scale
// task: the Experiment's labels and annotations, and the longest
// minReadySeconds of its templates (a task has one).
func (d *decision) standaloneWorkload() tasks.Workload {
	e := d.s.ExperimentSpec
	w := tasks.Workload{Labels: e.Labels, Annotations: e.Annotations}
	for _, t := range e.Spec.Templates {
		w.MinReadySeconds = max(w.MinReadySeconds, t.MinReadySeconds)
	}
	return w
}

// standaloneTemplate is the pod template of a standalone experiment's
// template named name.
func (s *State) standaloneTemplate(name string) (spec.TemplateSpec, bool) {
	if e := s.ExperimentSpec; e != nil {
		for _, t := range e.Spec.Templates {
			if t.Name == name {
				return t, true
			}
		}
	}
	return spec.TemplateSpec{}, false
}

// refreshExperimentPhase is refreshPhase for a standalone experiment.
func (d *decision) refreshExperimentPhase() {
	s := d.s
	ex := s.standalone()
	if ex == nil {
		s.Phase, s.Message = "", ""
		return
	}
	s.Phase, s.Message = ex.Phase, ex.Message
	if ex.Phase == experimentPending && ex.Message == "" {
		s.Message = "waiting for the templates' pods to be available"
	}
}

// experimentSnapshot is Snapshot for a standalone experiment.
func (s State) experimentSnapshot(now time.Time) events.Snapshot {
	snap := events.Snapshot{
		Kind: events.KindExperiment, Namespace: s.Ref.Namespace, Name: s.Ref.Name,
		Phase: s.Phase, Message: s.Message, Revision: s.Revision, StableRevision: s.StableRevision,
		UpdatedAt: now, Runs: s.runSummaries(), Experiment: s.experimentSummary(),
	}
	if s.LastAnalysis != nil {
		a := *s.LastAnalysis
		snap.Analysis = &a
	}
	if ex := s.standalone(); ex != nil {
		for _, t := range ex.Templates {
			snap.Replicas.Desired += t.Replicas
			snap.Replicas.Current += t.Current
			snap.Replicas.Ready += t.Ready
			snap.Replicas.Available += t.Available
		}
	}
	return snap
}
