package machine

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// newTask returns a task record for kind with the next sequence number of
// its service.
func (d *decision) newTask(kind, purpose string, revision int64) *TaskRecord {
	s := d.s
	var seq *int64
	switch kind {
	case tasks.KindScale:
		seq = &s.Seq.Replicas
	case tasks.KindRoute:
		seq = &s.Seq.Traffic
	default:
		seq = &s.Seq.Analyzer
	}
	*seq++
	t := &TaskRecord{
		ID:       fmt.Sprintf("%s/%s/r%d/%s/%d", s.Ref.Namespace, s.Ref.Name, revision, purpose, *seq),
		Kind:     kind,
		Seq:      *seq,
		Revision: revision,
	}
	return t
}

// send sends attempt t.Attempt+1 of t: its deadlines start now.
func (d *decision) send(t *TaskRecord) {
	s := d.s
	t.Attempt++
	t.SentAt = d.now
	t.Started, t.Overdue = false, false
	t.StartBy = d.now.Add(d.cfg.TaskStartTimeout)
	t.FinishBy = time.Time{}
	switch t.Kind {
	case tasks.KindScale:
		t.FinishBy = d.now.Add(d.progressDeadline())
	case tasks.KindRoute:
		t.FinishBy = d.now.Add(d.cfg.RouteFinishTimeout)
	}
	task := &tasks.Task{ID: t.ID, Attempt: t.Attempt, Kind: t.Kind, Ref: s.Ref, Seq: t.Seq, Revision: t.Revision, OwnerKind: s.Kind}
	switch {
	case t.Scale != nil:
		sc := tasks.Scale{Workload: d.workload(), Revisions: make([]tasks.RevisionScale, len(t.Scale.Revisions)), Remove: t.Scale.Remove}
		for i, rv := range t.Scale.Revisions {
			rv.Template = s.template(rv.PodHash)
			if rv.Experiment != nil {
				rv.Template = s.experimentTemplate(rv.Experiment)
			}
			sc.Revisions[i] = rv
		}
		task.Scale = &sc
	case t.Route != nil:
		rt := *t.Route
		rt.Annotations = s.Spec.Annotations
		task.Route = &rt
	case t.Analysis != nil:
		a := *t.Analysis
		task.Analysis = &a
	}
	d.effects = append(d.effects, Effect{Task: task})
}

func (d *decision) workload() tasks.Workload {
	if d.s.isExperiment() {
		return d.standaloneWorkload()
	}
	sp := d.s.Spec
	w := tasks.Workload{
		Selector:             sp.Spec.Selector,
		MinReadySeconds:      sp.Spec.MinReadySeconds,
		Labels:               sp.Labels,
		Annotations:          sp.Annotations,
		RevisionHistoryLimit: sp.Spec.RevisionHistoryLimit,
	}
	switch st := sp.Spec.Strategy; {
	case st.Canary != nil:
		w.AntiAffinity = st.Canary.AntiAffinity
	case st.BlueGreen != nil:
		w.AntiAffinity = st.BlueGreen.AntiAffinity
	}
	return w
}

// progressDeadline is spec.progressDeadlineSeconds.
func (d *decision) progressDeadline() time.Duration {
	if e := d.s.ExperimentSpec; e != nil && e.Spec.ProgressDeadlineSeconds != nil && *e.Spec.ProgressDeadlineSeconds > 0 {
		return time.Duration(*e.Spec.ProgressDeadlineSeconds) * time.Second
	}
	if sp := d.s.Spec; sp != nil && sp.Spec.ProgressDeadlineSeconds != nil && *sp.Spec.ProgressDeadlineSeconds > 0 {
		return time.Duration(*sp.Spec.ProgressDeadlineSeconds) * time.Second
	}
	return time.Duration(spec.DefaultProgressDeadlineSeconds) * time.Second
}

// syncScale sends a scale task when the desired scale differs from the one
// last sent. New scaling of the revisions waits while the update is halted
// (user pause, inconclusive analysis), as in Argo; experiments' pods are
// scaled all the same (an ended one's go after its delay, paused or not).
func (d *decision) syncScale() {
	s := d.s
	want := d.desiredScale()
	var sent []tasks.RevisionScale
	if s.Scale != nil && s.Scale.Scale != nil {
		sent = s.Scale.Scale.Revisions
		if s.Scale.Scale.Remove == s.Deleting && sameScale(sent, want) {
			return
		}
	}
	if s.inProgress() && !s.Aborted && !s.Deleting && d.halted() && !sameScale(revisionsOnly(sent), revisionsOnly(want)) {
		return
	}
	t := d.newTask(tasks.KindScale, "scale", s.Revision)
	t.Scale = &tasks.Scale{Revisions: want, Remove: s.Deleting}
	for _, w := range want {
		if w.Experiment != nil {
			if t := s.experimentTemplateOf(w.Experiment); t != nil {
				t.Asked = w.Replicas
				t.Available, t.Ready = min(t.Available, w.Replicas), min(t.Ready, w.Replicas)
			}
			continue
		}
		p := s.pod(w.PodHash)
		if p == nil {
			s.Pods = append(s.Pods, PodRecord{Revision: w.Revision, Hash: w.PodHash})
			p = &s.Pods[len(s.Pods)-1]
		}
		p.Revision = w.Revision
		p.Replicas = w.Replicas
		p.Available = min(p.Available, w.Replicas)
		p.Ready = min(p.Ready, w.Replicas)
	}
	s.Scale = t
	d.send(t)
}

// syncRoute sends a route task when the desired routing differs from the
// one last sent.
func (d *decision) syncRoute() {
	s := d.s
	want := d.desiredRoute()
	if want != nil && s.Deleting {
		want.Remove = true
	}
	if want == nil || s.Route != nil && sameRoute(s.Route.Route, want) {
		return
	}
	t := d.newTask(tasks.KindRoute, "route", s.Revision)
	t.Route = want
	s.Route = t
	d.send(t)
}

// taskRef locates a task record in the state.
type taskRef struct {
	t   *TaskRecord
	run *RunRecord // the run of an analysis task
}

// tasksInState lists every task the state still tracks.
func (s *State) tasksInState() []taskRef {
	var out []taskRef
	if s.Scale != nil {
		out = append(out, taskRef{t: s.Scale})
	}
	if s.Route != nil {
		out = append(out, taskRef{t: s.Route})
	}
	for i := range s.Runs {
		run := &s.Runs[i]
		out = append(out, taskRef{t: &run.Task, run: run})
		if run.Stop != nil {
			out = append(out, taskRef{t: run.Stop, run: run})
		}
	}
	return out
}

func (s *State) findTask(id string) (taskRef, bool) {
	for _, ref := range s.tasksInState() {
		if ref.t.ID == id {
			return ref, true
		}
	}
	return taskRef{}, false
}

// fireTaskDeadlines handles tasks no worker took in time, route tasks not
// finished in time, and scale tasks past the progress deadline.
func (d *decision) fireTaskDeadlines() {
	for _, ref := range d.s.tasksInState() {
		t := ref.t
		if !t.active() {
			continue
		}
		svc, _ := tasks.Service(t.Kind)
		for _, by := range []time.Time{t.StartBy, t.FinishBy} {
			if !by.IsZero() && by.After(d.taskNow) && !by.After(d.now) && (d.deferred.IsZero() || by.Before(d.deferred)) {
				d.deferred = by
			}
		}
		switch {
		case !t.Started && !t.StartBy.IsZero() && !d.taskNow.Before(t.StartBy):
			d.attemptFailed(ref, fmt.Sprintf("no %s worker took the task within %s: is the %s service running? If it is only busy, raise the orchestrator's --task-start-timeout (task %s, %d attempts)",
				svc, d.cfg.TaskStartTimeout, svc, t.ID, t.Attempt))
		case !t.Overdue && !t.FinishBy.IsZero() && !d.taskNow.Before(t.FinishBy):
			if t.Kind == tasks.KindScale {
				t.Overdue = true
				d.progressDeadlineExceeded()
				continue
			}
			d.attemptFailed(ref, fmt.Sprintf("the %s service did not finish within %s (task %s, %d attempts)", svc, d.cfg.RouteFinishTimeout, t.ID, t.Attempt))
		}
	}
}

// progressDeadlineExceeded reports a scale task past the progress deadline
// (phase Degraded), and aborts the update with progressDeadlineAbort.
func (d *decision) progressDeadlineExceeded() {
	s := d.s
	switch {
	case s.isExperiment():
		if ex := s.standalone(); ex != nil && ex.Phase == experimentPending {
			d.standaloneFailed(string(phaseFailed), d.standaloneDeadlineMessage())
		}
	case s.Deleting:
	case s.Spec.Spec.ProgressDeadlineAbort && s.inProgress() && !s.Aborted:
		d.abort(deadlineMessage(s))
	default:
		d.emit(events.TypeRolloutDegraded, events.StatusData{Reason: deadlineMessage(s)})
	}
}

// attemptFailed sends t again, or gives up after the last attempt and
// fails what waits for it with message.
func (d *decision) attemptFailed(ref taskRef, message string) {
	t := ref.t
	t.Message = message
	if t.Attempt < d.cfg.TaskMaxAttempts {
		d.send(t)
		return
	}
	t.Failed = true
	t.StartBy, t.FinishBy = time.Time{}, time.Time{}
	switch {
	case ref.run == nil:
		d.fail(message)
	case t == &ref.run.Task:
		d.recordVerdict(ref.run, events.AnalysisSummary{Name: ref.run.Name, Phase: string(phaseError), Message: message})
	}
}

// fail handles a scale or route task that could not be carried out: the
// update is aborted; with no update to abort (or one already aborted), the
// rollout is Degraded with message.
func (d *decision) fail(message string) {
	s := d.s
	if s.isExperiment() {
		d.standaloneFailed(string(phaseError), message)
		return
	}
	if s.inProgress() && !s.Aborted {
		d.abort(message)
		return
	}
	first := s.Failure == "" && !s.Aborted && !s.Completed && !s.Deleting
	s.Failure = message
	if first {
		// The revision will not come up: say so once.
		d.emit(events.TypeRolloutDegraded, events.StatusData{Reason: message})
	}
}

// sentAttempt reports whether attempt was sent for t: this one or an
// earlier one. Every attempt of a task is the same task (same id, seq and
// desired state): an attempt is sent again only because no report had come in
// time, not because the earlier one became wrong. So a report of an
// earlier attempt that arrives after the next attempt was sent counts,
// as a report of the attempt in flight would: a worker behind a backlog
// longer than the start timeout answers each attempt just after the next
// one went out, and ignoring those answers failed tasks the workers had
// carried out three times over (issue 20: 12 of 10,000 rollouts aborted
// under load with "no replicas worker took the task"). Only an earlier
// attempt's failure is ignored: the attempt in flight may still succeed,
// and it has deadlines of its own.
func (t *TaskRecord) sentAttempt(attempt int) bool {
	return attempt >= 1 && attempt <= t.Attempt
}

func (d *decision) started(st tasks.Started) bool {
	ref, ok := d.s.findTask(st.TaskID)
	if !ok || !ref.t.sentAttempt(st.Attempt) || ref.t.Started || !ref.t.active() {
		return false
	}
	ref.t.Started = true
	ref.t.StartBy = time.Time{}
	return true
}

func (d *decision) finished(f tasks.Finished) bool {
	ref, ok := d.s.findTask(f.TaskID)
	if !ok || !ref.t.sentAttempt(f.Attempt) || !ref.t.active() {
		return false
	}
	t := ref.t
	switch f.Outcome {
	case tasks.OutcomeSucceeded, tasks.OutcomeFailed:
	default:
		// OutcomeStale: a later task had been applied; nothing was done.
		return false
	}
	isRun := ref.run != nil && t == &ref.run.Task
	if f.Attempt < t.Attempt && f.Outcome == tasks.OutcomeFailed && (!isRun || f.Analysis == nil) {
		return false // an earlier attempt failed; the one in flight may not
	}
	if isRun {
		return d.runFinished(ref.run, f)
	}
	if f.Outcome == tasks.OutcomeFailed {
		svc, _ := tasks.Service(t.Kind)
		msg := fmt.Sprintf("%s (%s task %s, %d attempts)", f.Message, svc, t.ID, t.Attempt)
		d.attemptFailed(ref, msg)
		return true
	}
	t.Done, t.Started = true, true
	t.StartBy, t.FinishBy = time.Time{}, time.Time{}
	switch {
	case t.Scale != nil:
		d.applyReplicas(t, f.Replicas)
	case t.Route != nil:
		rt := *t.Route
		d.s.Routing = &rt
	}
	return true
}

// applyReplicas records the pods a finished scale task reports, and forgets
// revisions it scaled to zero.
func (d *decision) applyReplicas(t *TaskRecord, report []tasks.RevisionStatus) {
	s := d.s
	for _, rv := range t.Scale.Revisions {
		if rv.Experiment != nil {
			s.applyExperimentReplicas(rv, report)
			continue
		}
		p := s.pod(rv.PodHash)
		if p == nil || p.Replicas != rv.Replicas {
			continue
		}
		p.Current, p.Ready, p.Available = rv.Replicas, rv.Replicas, rv.Replicas
		for _, st := range report {
			if st.PodHash == rv.PodHash && st.Template == "" {
				p.Current, p.Ready, p.Available = st.Replicas, st.Ready, st.Available
			}
		}
	}
	var keep []PodRecord
	for _, p := range s.Pods {
		if p.Replicas == 0 && p.Current == 0 && p.Hash != s.PodHash && p.Hash != s.StableHash {
			continue
		}
		keep = append(keep, p)
	}
	s.Pods = keep
}
