package machine

import (
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Experiment phases (ExperimentRecord.Phase), as Argo's experiment
// phases, plus Terminated for one ended from outside before its verdict.
const (
	experimentPending    = string(spec.AnalysisPhasePending)
	experimentRunning    = string(spec.AnalysisPhaseRunning)
	experimentTerminated = events.AnalysisTerminated
)

// defaultExperimentScaleDownDelay is Argo's default scaleDownDelaySeconds
// of an experiment step.
const defaultExperimentScaleDownDelay = 30 * time.Second

// ExperimentRecord is the experiment of one canary experiment step: its
// pods and its clock. Its analysis runs are in State.Runs (purpose
// experiment, named <Name>-<analysis name>).
type ExperimentRecord struct {
	// Name is Argo's <rollout>-<pod hash>-<revision>-<step>, with -<n>
	// after the n-th restart of the plan.
	Name     string `json:"name"`
	Revision int64  `json:"revision"`
	Step     int32  `json:"step"`
	Retries  int32  `json:"retries,omitempty"`
	// Phase is Pending until every template's pods are available, then
	// Running, then Successful, Failed, Error, Inconclusive or Terminated.
	Phase     string                     `json:"phase"`
	Message   string                     `json:"message,omitempty"`
	Templates []ExperimentTemplateRecord `json:"templates"`
	// Duration is the step's duration (0: until the analyses that are
	// requiredForCompletion finish); ScaleDownDelay its
	// scaleDownDelaySeconds.
	Duration       time.Duration `json:"duration,omitempty"`
	ScaleDownDelay time.Duration `json:"scaleDownDelay,omitempty"`
	// AvailableAt is when every template's pods were first available;
	// EndsAt is AvailableAt+Duration.
	AvailableAt time.Time `json:"availableAt,omitzero"`
	EndsAt      time.Time `json:"endsAt,omitzero"`
	// EndedAt is when it ended; ScaleDownAt when its pods go.
	EndedAt     time.Time `json:"endedAt,omitzero"`
	ScaleDownAt time.Time `json:"scaleDownAt,omitzero"`
}

// ExperimentTemplateRecord is one template's pods.
type ExperimentTemplateRecord struct {
	Name string `json:"name"`
	// SourceHash and Revision name the revision whose pod template the
	// pods run (specRef); Hash is that template with Metadata added.
	SourceHash string                    `json:"sourceHash"`
	Revision   int64                     `json:"revision"`
	Hash       string                    `json:"hash"`
	Metadata   *spec.PodTemplateMetadata `json:"metadata,omitempty"`
	Selector   *metav1.LabelSelector     `json:"selector,omitempty"`
	Service    string                    `json:"service,omitempty"`
	// Replicas is the template's count; Weight its share of traffic.
	Replicas int32 `json:"replicas"`
	Weight   int32 `json:"weight,omitempty"`
	// Asked is the count last sent; Current, Ready and Available were
	// last reported.
	Asked     int32 `json:"asked,omitempty"`
	Current   int32 `json:"current,omitempty"`
	Ready     int32 `json:"ready,omitempty"`
	Available int32 `json:"available,omitempty"`
}

func (ex *ExperimentRecord) ended() bool { return !ex.EndedAt.IsZero() }

// pods is the scale entry's identity of template t.
func (ex *ExperimentRecord) pods(t *ExperimentTemplateRecord) tasks.ExperimentPods {
	return tasks.ExperimentPods{Name: ex.Name, Template: t.Name, Selector: t.Selector, Service: t.Service}
}

// available reports whether every template runs its count of available
// pods.
func (ex *ExperimentRecord) available() bool {
	for _, t := range ex.Templates {
		if t.Asked != t.Replicas || t.Available < t.Replicas {
			return false
		}
	}
	return true
}

// gone reports whether an ended experiment has no pods left.
func (ex *ExperimentRecord) gone() bool {
	if !ex.ended() {
		return false
	}
	for _, t := range ex.Templates {
		if t.Asked > 0 || t.Current > 0 {
			return false
		}
	}
	return true
}

// experimentName names the experiment of step as Argo does.
func (d *decision) experimentName(step int32) string {
	s := d.s
	name := fmt.Sprintf("%s-%s-%d-%d", s.Ref.Name, s.PodHash, s.Revision, step)
	if s.Retries > 0 {
		// Argo's suffix for a name already taken; a dot, as runs have,
		// would not make a ReplicaSet or Service name (a DNS label).
		name += fmt.Sprintf("-%d", s.Retries)
	}
	return name
}

// currentExperiment is the experiment of the current step, when the
// update is at an experiment step and still moving.
func (d *decision) currentExperiment() *ExperimentRecord {
	s := d.s
	if s.isExperiment() {
		return s.standalone()
	}
	if !s.inProgress() || s.Aborted || s.PromoteFull || s.Deleting {
		return nil
	}
	if st, ok := s.planStep(s.Step); !ok || st.Action != actionExperiment {
		return nil
	}
	for i := range s.Experiments {
		ex := &s.Experiments[i]
		if ex.Revision == s.Revision && ex.Step == s.Step && ex.Retries == s.Retries {
			return ex
		}
	}
	return nil
}

// startExperiment creates the experiment of the current step: its pods
// are asked for with the next scale task.
func (d *decision) startExperiment(st *spec.RolloutExperimentStep) {
	s := d.s
	ex := ExperimentRecord{
		Name: d.experimentName(s.Step), Revision: s.Revision, Step: s.Step, Retries: s.Retries,
		Phase: experimentPending, ScaleDownDelay: defaultExperimentScaleDownDelay,
	}
	if st.Duration != "" {
		if dur, err := st.Duration.Duration(); err == nil {
			ex.Duration = dur
		}
	}
	if st.ScaleDownDelaySeconds != nil {
		ex.ScaleDownDelay = time.Duration(max(*st.ScaleDownDelaySeconds, 0)) * time.Second
	}
	for _, t := range st.Templates {
		src, rev := s.StableHash, s.StableRevision
		if t.SpecRef == spec.SpecRefCanary {
			src, rev = s.PodHash, s.Revision
		}
		rec := ExperimentTemplateRecord{Name: t.Name, SourceHash: src, Revision: rev, Replicas: spec.DefaultReplicas, Selector: t.Selector.DeepCopy()}
		if t.Replicas != nil {
			rec.Replicas = max(*t.Replicas, 0)
		}
		if len(t.Metadata.Labels) > 0 || len(t.Metadata.Annotations) > 0 {
			md := clonePodMetadata(t.Metadata)
			rec.Metadata = &md
		}
		if rec.Metadata != nil && len(rec.Metadata.Labels) > 0 {
			rec.Selector = withSelectorLabels(rec.Selector, s.Spec, rec.Metadata.Labels)
		}
		if t.Weight != nil && s.routed() {
			rec.Weight = *t.Weight
		}
		// As in Argo, a template with a weight gets a Service too: the
		// routers send its share there. An unnamed one is named after
		// the pods' ReplicaSet.
		if t.Service != nil || t.Weight != nil {
			if t.Service != nil {
				rec.Service = t.Service.Name
			}
			if rec.Service == "" {
				rec.Service = ex.Name + "-" + t.Name
			}
		}
		rec.Hash = PodTemplateHash(withMetadata(s.template(src), rec.Metadata))
		ex.Templates = append(ex.Templates, rec)
	}
	s.Experiments = append(s.Experiments, ex)
}

// withSelectorLabels is an experiment template's selector when its
// metadata adds labels: its own selector, or the rollout's, selecting the
// labels too, as Argo builds it (so that the pods' ReplicaSet selects what
// its template labels).
func withSelectorLabels(sel *metav1.LabelSelector, ro *spec.Rollout, labels map[string]string) *metav1.LabelSelector {
	if sel == nil && ro != nil && ro.Spec.Selector != nil {
		sel = ro.Spec.Selector.DeepCopy()
	}
	if sel == nil {
		return nil
	}
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	for k, v := range labels {
		sel.MatchLabels[k] = v
	}
	return sel
}

// withMetadata returns a copy of tpl with md's labels and annotations
// added: an experiment template's pods, whose hash Argo computes from it.
func withMetadata(tpl corev1.PodTemplateSpec, md *spec.PodTemplateMetadata) corev1.PodTemplateSpec {
	out := *tpl.DeepCopy()
	if md == nil {
		return out
	}
	if len(md.Labels) > 0 {
		if out.Labels == nil {
			out.Labels = map[string]string{}
		}
		maps.Copy(out.Labels, md.Labels)
	}
	if len(md.Annotations) > 0 {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		maps.Copy(out.Annotations, md.Annotations)
	}
	return out
}

// experimentTemplate is the pod template of an experiment's scale entry.
func (s *State) experimentTemplate(p *tasks.ExperimentPods) corev1.PodTemplateSpec {
	if s.isExperiment() {
		t, _ := s.standaloneTemplate(p.Template)
		return *t.Template.DeepCopy()
	}
	if t := s.experimentTemplateOf(p); t != nil {
		return withMetadata(s.template(t.SourceHash), t.Metadata)
	}
	return corev1.PodTemplateSpec{}
}

// advanceExperiment moves the current experiment step: the experiment
// starts running once its pods are available, succeeds once its duration
// has passed (or its required analyses succeeded, see experimentVerdict),
// and the step completes when it succeeded, or was inconclusive and
// promoted past. It reports whether anything changed.
func (d *decision) advanceExperiment(st *spec.RolloutExperimentStep) bool {
	ex := d.currentExperiment()
	if ex == nil {
		// Not started by enterStep (a state from a release without
		// experiments): start it now.
		d.startExperiment(st)
		return true
	}
	switch ex.Phase {
	case experimentPending:
		if !d.scaleDone() || !ex.available() {
			return false
		}
		ex.Phase, ex.AvailableAt = experimentRunning, d.now
		if ex.Duration > 0 {
			ex.EndsAt = d.now.Add(ex.Duration)
		}
		return true
	case experimentRunning:
		if ex.EndsAt.IsZero() || d.now.Before(ex.EndsAt) {
			return false
		}
		ex.Phase, ex.Message = string(phaseSuccessful), fmt.Sprintf("duration %s passed", ex.Duration)
		d.endExperiment(ex)
	case string(phaseSuccessful), string(phaseInconclusive):
		// Inconclusive: the pause it caused was lifted by a promote.
	default:
		return false
	}
	d.completeStep()
	return true
}

// experimentVerdict acts on the verdict of one of the current
// experiment's runs: a failed or errored run fails the experiment and
// aborts the update; an inconclusive one ends it inconclusive and pauses
// the update; without a duration, the experiment succeeds once every run
// that is requiredForCompletion has succeeded.
func (d *decision) experimentVerdict(run *RunRecord, sum events.AnalysisSummary) {
	ex := d.currentExperiment()
	if ex == nil || ex.Phase != experimentRunning {
		return
	}
	analysis := strings.TrimPrefix(run.Name, ex.Name+"-")
	detail := fmt.Sprintf("analysis %s (run %s) %s", analysis, run.Name, strings.ToLower(sum.Phase))
	if sum.Message != "" {
		detail += ": " + sum.Message
	}
	if d.s.isExperiment() {
		d.standaloneVerdict(ex, detail, sum)
		return
	}
	switch spec.AnalysisPhase(sum.Phase) {
	case phaseFailed, phaseError:
		ex.Phase, ex.Message = sum.Phase, detail
		d.endExperiment(ex)
		d.abort(fmt.Sprintf("experiment %s %s: %s", ex.Name, strings.ToLower(sum.Phase), detail))
	case phaseInconclusive:
		ex.Phase, ex.Message = sum.Phase, detail
		d.endExperiment(ex)
		d.addCondition(PauseInconclusiveExperiment)
		d.emit(events.TypeRolloutPaused, events.StatusData{Reason: fmt.Sprintf("%s: experiment %s is inconclusive: %s", PauseInconclusiveExperiment, ex.Name, detail)})
	case phaseSuccessful:
		if ex.Duration > 0 || !d.requiredSucceeded(ex) {
			return
		}
		ex.Phase, ex.Message = sum.Phase, "every analysis required for completion succeeded"
		d.endExperiment(ex)
	}
}

// requiredSucceeded reports whether the experiment has runs required for
// completion and all of them succeeded.
func (d *decision) requiredSucceeded(ex *ExperimentRecord) bool {
	required := 0
	for _, a := range d.experimentAnalyses(ex) {
		if !a.RequiredForCompletion {
			continue
		}
		required++
		if !d.runPassed(ex.Name + "-" + a.Name) {
			return false
		}
	}
	return required > 0
}

// endExperiment ends ex now: its runs are no longer wanted (syncRuns
// terminates them), its weights go back to the stable, and its pods are
// scaled down after its scaleDownDelaySeconds.
func (d *decision) endExperiment(ex *ExperimentRecord) {
	ex.EndedAt = d.now
	ex.EndsAt = time.Time{}
	ex.ScaleDownAt = d.now.Add(ex.ScaleDownDelay)
}

// endStaleExperiments ends the experiments the update has moved away
// from (a promote past the step, a full promotion, an abort, a new
// revision, a retry, a deletion) and forgets those whose pods are gone
// and whose step is over.
func (d *decision) endStaleExperiments() {
	s := d.s
	cur := d.currentExperiment()
	keep := s.Experiments[:0:0]
	for i := range s.Experiments {
		ex := &s.Experiments[i]
		if !ex.ended() && ex != cur {
			ex.Phase, ex.Message = experimentTerminated, "terminated: "+d.moveReason(ex.Revision)
			d.endExperiment(ex)
		}
		// The current step's experiment is kept, even without pods, for
		// its verdict: the step completes on it.
		if !ex.gone() || ex == cur {
			keep = append(keep, *ex)
		}
	}
	if len(keep) == 0 {
		keep = nil
	}
	s.Experiments = keep
}

// experimentReplicas is the count template t of ex should run now.
func (d *decision) experimentReplicas(ex *ExperimentRecord, t *ExperimentTemplateRecord) int32 {
	switch {
	case d.s.Deleting:
		return 0
	case !ex.ended(), d.now.Before(ex.ScaleDownAt):
		return t.Replicas
	}
	return 0
}

// experimentScale lists the experiments' pods: each template's, apart
// from the revisions' own, until they are gone.
func (d *decision) experimentScale() []tasks.RevisionScale {
	var out []tasks.RevisionScale
	for i := range d.s.Experiments {
		ex := &d.s.Experiments[i]
		for j := range ex.Templates {
			t := &ex.Templates[j]
			n := d.experimentReplicas(ex, t)
			if n == 0 && t.Asked == 0 && t.Current == 0 {
				continue
			}
			pods := ex.pods(t)
			out = append(out, tasks.RevisionScale{Revision: t.Revision, PodHash: t.Hash, Role: spec.RoleExperiment, Replicas: n, Experiment: &pods})
		}
	}
	return out
}

// experimentTemplateOf finds the template record of a scale entry.
func (s *State) experimentTemplateOf(p *tasks.ExperimentPods) *ExperimentTemplateRecord {
	for i := range s.Experiments {
		ex := &s.Experiments[i]
		if ex.Name != p.Name {
			continue
		}
		for j := range ex.Templates {
			if ex.Templates[j].Name == p.Template {
				return &ex.Templates[j]
			}
		}
	}
	return nil
}

// applyExperimentReplicas records what a finished scale task reports of
// an experiment's pods (assumed available at their count when the worker
// reports nothing for them). A report names an entry by pod hash and
// template only, which two experiments of one step (a retry's and the
// one before it, still scaling down) can share: a succeeded task has
// every entry at its count, so an entry at 0 has no pods whatever the
// report says, and among reports of the same name the one at the entry's
// count is taken.
func (s *State) applyExperimentReplicas(rv tasks.RevisionScale, report []tasks.RevisionStatus) {
	t := s.experimentTemplateOf(rv.Experiment)
	if t == nil || t.Asked != rv.Replicas {
		return
	}
	t.Current, t.Ready, t.Available = rv.Replicas, rv.Replicas, rv.Replicas
	if rv.Replicas == 0 {
		return
	}
	var match *tasks.RevisionStatus
	for i := range report {
		st := &report[i]
		if st.PodHash == rv.PodHash && st.Template == rv.Experiment.Template && (match == nil || st.Replicas == rv.Replicas) {
			match = st
		}
	}
	if match != nil {
		t.Current, t.Ready, t.Available = match.Replicas, match.Ready, match.Available
	}
}

// experimentRoutes are the weights of the running experiment's templates
// (traffic routing only): they come out of the stable's share.
func (d *decision) experimentRoutes() []tasks.ExperimentRoute {
	ex := d.currentExperiment()
	if ex == nil || ex.Phase != experimentRunning || !d.s.routed() {
		return nil
	}
	var out []tasks.ExperimentRoute
	for i := range ex.Templates {
		t := &ex.Templates[i]
		if t.Weight > 0 {
			out = append(out, tasks.ExperimentRoute{Pods: ex.pods(t), PodHash: t.Hash, Weight: t.Weight})
		}
	}
	return out
}

// experimentRuns are the runs of the running experiment: one per
// analysis, with the step's dryRun and analysisRunMetadata.
func (d *decision) experimentRuns(st *spec.RolloutExperimentStep) []wantedRun {
	ex := d.currentExperiment()
	if ex == nil || ex.Phase != experimentRunning {
		return nil
	}
	out := make([]wantedRun, 0, len(st.Analyses))
	for _, a := range st.Analyses {
		out = append(out, wantedRun{
			Name: ex.Name + "-" + a.Name, Purpose: purposeExperiment, Step: ex.Step,
			Spec: &spec.RolloutAnalysis{
				Templates:           []spec.AnalysisTemplateRef{{TemplateName: a.TemplateName, ClusterScope: a.ClusterScope}},
				Args:                a.Args,
				DryRun:              st.DryRun,
				AnalysisRunMetadata: st.AnalysisRunMetadata,
			},
		})
	}
	return out
}

// experimentArgs expands Argo's experiment variables in resolved
// argument values: {{templates.<name>.podTemplateHash}},
// {{templates.<name>.replicaset.name}} and {{experiment.availableAt}}. A
// placeholder naming no variable (which validation refuses) is passed on
// as written, for the analyzer to report.
func (d *decision) experimentArgs(args []spec.AnalysisRunArgument) []spec.AnalysisRunArgument {
	ex := d.currentExperiment()
	if ex == nil {
		return args
	}
	vars := map[string]string{spec.ExperimentAvailableAt: ex.AvailableAt.UTC().Format(time.RFC3339)}
	for i := range ex.Templates {
		t := &ex.Templates[i]
		vars[spec.ExperimentPodTemplateHash(t.Name)] = t.Hash
		vars[spec.ExperimentReplicaSetName(t.Name)] = ex.pods(t).ReplicaSetName()
	}
	for i := range args {
		if args[i].ValueFrom == nil {
			args[i].Value, _ = spec.ExpandExperimentVariables(args[i].Value, vars)
		}
	}
	return args
}

// experimentSummary renders the latest experiment for the snapshot.
func (s State) experimentSummary() *events.ExperimentSummary {
	if len(s.Experiments) == 0 {
		return nil
	}
	ex := s.Experiments[len(s.Experiments)-1]
	out := &events.ExperimentSummary{
		Name: ex.Name, Step: ex.Step, Phase: ex.Phase, Message: ex.Message,
		AvailableAt: ex.AvailableAt, EndedAt: ex.EndedAt, ScaleDownAt: ex.ScaleDownAt,
		Templates: make([]events.ExperimentTemplateSummary, 0, len(ex.Templates)),
	}
	for i := range ex.Templates {
		t := &ex.Templates[i]
		out.Templates = append(out.Templates, events.ExperimentTemplateSummary{
			Name: t.Name, PodHash: t.Hash, ReplicaSet: ex.pods(t).ReplicaSetName(),
			Replicas: t.Asked, Available: t.Available, Weight: t.Weight, Service: t.Service,
		})
	}
	for _, r := range s.Runs {
		if r.Purpose == purposeExperiment && strings.HasPrefix(r.Name, ex.Name+"-") {
			out.Runs = append(out.Runs, r.Name)
		}
	}
	return out
}

// experimentDetail renders an experiment step for people.
func experimentDetail(st *spec.RolloutExperimentStep) string {
	names := make([]string, 0, len(st.Templates))
	for _, t := range st.Templates {
		names = append(names, t.Name)
	}
	out := "experiment " + strings.Join(names, ", ")
	if st.Duration != "" {
		out += " for " + string(st.Duration)
	}
	return out
}

// revisionsOnly leaves the experiments' entries out of a scale.
func revisionsOnly(revs []tasks.RevisionScale) []tasks.RevisionScale {
	var out []tasks.RevisionScale
	for _, rv := range revs {
		if rv.Experiment == nil {
			out = append(out, rv)
		}
	}
	return out
}
