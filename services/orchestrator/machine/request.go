package machine

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// lastAppliedAnnotation is kubectl's copy of the whole manifest; keeping it
// would store every template twice.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// request applies a requested Rollout: a new revision when the pod template
// changed, a spec update otherwise. The service validates and defaults
// requests; request checks again so that no input can corrupt the state.
func (d *decision) request(in *spec.Rollout) bool {
	s := d.s
	ro, problems := normalize(in)
	if ro == nil {
		return false
	}
	ref := events.Ref{Namespace: ro.Namespace, Name: ro.Name}
	if s.Ref != (events.Ref{}) && ref != s.Ref {
		return false
	}
	if ref.Name == "" {
		return false
	}
	s.Ref = ref
	if len(problems) > 0 {
		d.emit(events.TypeRolloutRejected, events.StatusData{Errors: problems, Reason: "invalid Rollout"})
		return true
	}
	if s.Deleting {
		d.emit(events.TypeRolloutRejected, events.StatusData{Reason: "the rollout is being deleted: apply it again once the deleted event is out"})
		return true
	}
	if d.cause.ID != "" {
		s.UpdateID = d.cause.ID
	}
	tpl := ro.Spec.Template
	hash := PodTemplateHash(tpl)
	prev := s.Spec
	s.Spec = leanSpec(ro)

	switch {
	case s.Revision == 0:
		n, reason := firstRevision(ro)
		s.Revision, s.PodHash = n, hash
		s.StableRevision, s.StableHash = n, hash
		s.History = []RevisionRecord{{Number: n, Hash: hash, Template: tpl}}
		s.Step = s.planLen()
		d.emit(events.TypeRolloutAccepted, events.StatusData{Reason: reason})
	case hash == s.PodHash:
		d.emit(events.TypeRolloutAccepted, events.StatusData{})
		if s.inProgress() && planChanged(prev, s.Spec) {
			// Argo restarts the steps when they change, as for a new template.
			d.restartPlan()
		} else if !s.inProgress() {
			s.Step = s.planLen()
		}
	default:
		d.newRevision(hash, tpl)
	}
	d.syncUserPause(prev, ro.Spec.Paused)
	d.syncRestartAt(ro.Spec.RestartAt)
	return true
}

// syncRestartAt follows spec.restartAt as Argo does: a time later than the
// last restart asks for one, at once when it has passed, at that time
// otherwise.
func (d *decision) syncRestartAt(at *metav1.Time) {
	s := d.s
	if at == nil || at.IsZero() {
		return
	}
	t := at.UTC().Round(0)
	if !t.After(s.Restart.At) || t.Equal(s.Restart.Due) {
		return
	}
	if t.After(d.now) {
		s.Restart.Due, s.Restart.Cause = t, d.cause
		return
	}
	d.startRestart(t, d.cause)
}

// normalize returns a defaulted deep copy of in and every problem with it,
// or nil when in cannot even be copied.
func normalize(in *spec.Rollout) (*spec.Rollout, []string) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, nil
	}
	var ro spec.Rollout
	if err := json.Unmarshal(b, &ro); err != nil {
		return nil, nil
	}
	if ro.Namespace == "" {
		ro.Namespace = spec.DefaultNamespace
	}
	var problems []string
	for _, e := range ro.Validate() {
		problems = append(problems, e.Error())
	}
	ro.SetDefaults()
	return &ro, problems
}

// leanSpec is what State.Spec keeps of ro.
func leanSpec(ro *spec.Rollout) *spec.Rollout {
	out := &spec.Rollout{TypeMeta: ro.TypeMeta, Spec: ro.Spec}
	out.ObjectMeta = metav1.ObjectMeta{Name: ro.Name, Namespace: ro.Namespace, Labels: ro.Labels}
	for k, v := range ro.Annotations {
		if k == lastAppliedAnnotation {
			continue
		}
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[k] = v
	}
	out.Spec.Template = corev1.PodTemplateSpec{}
	return out
}

// planChanged reports whether the update plan differs between two specs:
// another strategy, or other canary steps.
func planChanged(a, b *spec.Rollout) bool {
	if a == nil || b == nil {
		return a != b
	}
	ac, bc := a.Spec.Strategy.Canary, b.Spec.Strategy.Canary
	if (ac == nil) != (bc == nil) {
		return true
	}
	if ac == nil {
		return false
	}
	x, _ := json.Marshal(ac.Steps)
	y, _ := json.Marshal(bc.Steps)
	return string(x) != string(y)
}

// newRevision starts rolling out a new pod template.
func (d *decision) newRevision(hash string, tpl corev1.PodTemplateSpec) {
	s := d.s
	n := s.Revision + 1
	var earlier int64
	hist := s.History[:0:0]
	for _, h := range s.History {
		if h.Hash == hash {
			earlier = h.Number
			continue
		}
		hist = append(hist, h)
	}
	s.History = append(hist, RevisionRecord{Number: n, Hash: hash, Template: tpl})
	// Argo moves a reused ReplicaSet to the new revision number.
	for i := range s.Pods {
		if s.Pods[i].Hash == hash {
			s.Pods[i].Revision = n
			s.Pods[i].ScaleDownAt = time.Time{}
		}
	}
	s.Revision, s.PodHash = n, hash
	// The analysis shown belongs to the revision being rolled out.
	s.LastAnalysis = nil
	if hash == s.StableHash {
		s.StableRevision = n
	}
	d.resetUpdate()
	s.Retries = 0

	switch {
	case !s.inProgress():
		s.Step = s.planLen()
		d.emit(events.TypeRolloutAccepted, events.StatusData{Reason: fmt.Sprintf("rollback to the stable revision (%s): steps skipped", hash)})
	case d.withinRollbackWindow(earlier):
		s.Step = s.planLen()
		d.emit(events.TypeRolloutAccepted, events.StatusData{Reason: fmt.Sprintf("rollback to revision %d within the rollback window: steps skipped", earlier)})
	default:
		s.Step = 0
		d.emit(events.TypeRolloutAccepted, events.StatusData{})
		d.enterStep()
	}
}

// resetUpdate clears what belonged to the previous update, including tasks
// that failed: what they asked for is sent again if still needed.
func (d *decision) resetUpdate() {
	s := d.s
	s.Aborted, s.AbortedAt, s.AbortReason, s.AbortScaleDownAt = false, time.Time{}, "", time.Time{}
	s.PromoteFull = false
	s.PauseConditions = nil
	s.StepPaused, s.PauseUntil = false, time.Time{}
	s.Failure = ""
	s.Completed = false
	if s.Scale != nil && s.Scale.Failed {
		s.Scale = nil
	}
	if s.Route != nil && s.Route.Failed {
		s.Route = nil
	}
}

// restartPlan starts the plan of the current revision again from its first
// step, with analysis runs named apart from the earlier ones.
func (d *decision) restartPlan() {
	s := d.s
	d.resetUpdate()
	s.Retries++
	s.Step = 0
	d.enterStep()
}

// withinRollbackWindow reports whether going back to revision earlier (0:
// not in the history) skips the steps under spec.rollbackWindow: it is
// older than the stable revision by at most rollbackWindow.revisions.
func (d *decision) withinRollbackWindow(earlier int64) bool {
	s := d.s
	w := s.Spec.Spec.RollbackWindow
	if w == nil || w.Revisions <= 0 || earlier == 0 {
		return false
	}
	var stableNumber int64
	for _, h := range s.History {
		if h.Hash == s.StableHash {
			stableNumber = h.Number
		}
	}
	return earlier < stableNumber && stableNumber-earlier <= int64(w.Revisions)
}

// syncUserPause follows changes of spec.paused between requests; a pause
// command is kept while the manifest's paused stays as it was.
func (d *decision) syncUserPause(prev *spec.Rollout, paused bool) {
	was := prev != nil && prev.Spec.Paused
	if prev != nil && was == paused {
		return
	}
	switch {
	case paused && !d.s.UserPaused:
		d.s.UserPaused = true
		d.emit(events.TypeRolloutPaused, events.StatusData{Reason: "spec.paused is set"})
	case !paused && prev != nil && d.s.UserPaused:
		d.s.UserPaused = false
		d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "spec.paused is no longer set"})
	}
}

// undo re-applies an earlier revision's template as a new request.
func (d *decision) undo(to int64) (code, reason string) {
	s := d.s
	var target *RevisionRecord
	for i := range s.History {
		h := &s.History[i]
		switch {
		case to != 0 && h.Number == to:
			target = h
		case to == 0 && h.Number < s.Revision && (target == nil || h.Number > target.Number):
			target = h
		}
	}
	if target == nil {
		var kept []int64
		for _, h := range s.History {
			kept = append(kept, h.Number)
		}
		slices.Sort(kept)
		what := "there is no revision before the current one"
		if to != 0 {
			what = fmt.Sprintf("revision %d is not kept", to)
		}
		return events.RefusedInvalid, fmt.Sprintf("cannot undo: %s (revisions kept: %s)", what, strings.Trim(fmt.Sprint(kept), "[]"))
	}
	if target.Hash == s.PodHash {
		return events.RefusedNotApplicable, fmt.Sprintf("revision %d is already the current revision", s.Revision)
	}
	b, err := json.Marshal(s.Spec)
	if err != nil {
		return events.RefusedInvalid, "cannot undo: " + err.Error()
	}
	var ro spec.Rollout
	if err := json.Unmarshal(b, &ro); err != nil {
		return events.RefusedInvalid, "cannot undo: " + err.Error()
	}
	ro.Spec.Template = target.Template
	if !d.request(&ro) {
		return events.RefusedInvalid, fmt.Sprintf("cannot undo to revision %d: its template is no longer valid", target.Number)
	}
	return "", ""
}

// template returns the pod template of the revision with hash.
func (s *State) template(hash string) corev1.PodTemplateSpec {
	for _, h := range s.History {
		if h.Hash == hash {
			return h.Template
		}
	}
	return corev1.PodTemplateSpec{}
}

// pruneHistory keeps the templates of the current and stable revisions, of
// revisions with pods, and of the last revisionHistoryLimit others.
func (d *decision) pruneHistory() {
	s := d.s
	limit := spec.DefaultRevisionHistoryLimit
	if s.Spec != nil && s.Spec.Spec.RevisionHistoryLimit != nil {
		limit = max(*s.Spec.Spec.RevisionHistoryLimit, 0)
	}
	needed := map[string]bool{s.PodHash: true, s.StableHash: true}
	for _, p := range s.Pods {
		needed[p.Hash] = true
	}
	for _, ex := range s.Experiments {
		for _, t := range ex.Templates {
			needed[t.SourceHash] = true
		}
	}
	others := int32(0)
	keep := make([]bool, len(s.History))
	for i := len(s.History) - 1; i >= 0; i-- {
		h := s.History[i]
		switch {
		case needed[h.Hash]:
			keep[i] = true
		case others < limit:
			keep[i] = true
			others++
		}
	}
	if !slices.Contains(keep, false) {
		return
	}
	out := s.History[:0:0]
	for i, h := range s.History {
		if keep[i] {
			out = append(out, h)
		}
	}
	s.History = out
}
