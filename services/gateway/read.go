package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// whoamiBody answers GET /api/v1/whoami.
type whoamiBody struct {
	Actor    string `json:"actor"`
	Via      string `json:"via"`
	ReadOnly bool   `json:"readOnly"`
	// Roles maps "*" (every namespace) and each namespace where the
	// caller's role is higher to the role's name (auth.Roles), whether or
	// not the namespace has rollouts yet.
	Roles map[string]auth.Role `json:"roles"`
}

func (s *Service) whoami(w http.ResponseWriter, r *http.Request) {
	p, ok := caller(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, whoamiBody{Actor: p.Actor, Via: p.Via, ReadOnly: s.auth.ReadOnly(), Roles: s.auth.Roles(p)})
}

// Summary is one rollout of the list: its status and when it was first
// accepted, if the status stream still holds that.
type Summary struct {
	events.Snapshot
	CreatedAt *time.Time `json:"createdAt,omitempty"`
}

// kindList is what one list route shows: the rollouts (Kind "") or the
// standalone Experiments (events.KindExperiment), and the phases its
// ?phase= takes.
type kindList struct {
	kind, noun string
	phases     []string
}

var (
	rolloutList = kindList{noun: "rollouts",
		phases: []string{events.PhaseProgressing, events.PhasePaused, events.PhaseHealthy, events.PhaseDegraded}}
	experimentList = kindList{kind: events.KindExperiment, noun: "experiments",
		phases: []string{events.ExperimentPhasePending, events.ExperimentPhaseRunning, events.ExperimentPhaseSuccessful,
			events.ExperimentPhaseFailed, events.ExperimentPhaseError, events.ExperimentPhaseInconclusive, events.ExperimentPhaseTerminated}}
)

// list serves the list of what kl shows. Rollouts and Experiments share
// the orchestrator's bucket (and a name in a namespace); each list shows
// its own kind only.
func (s *Service) list(kl kindList) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := caller(w, r)
		if !ok {
			return
		}
		ns, phase := r.URL.Query().Get("namespace"), r.URL.Query().Get("phase")
		if ns != "" {
			if err := events.ValidateName("namespace", ns); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			if !s.mayRead(w, p, ns) {
				return
			}
		}
		if phase != "" && !slices.Contains(kl.phases, phase) {
			writeError(w, http.StatusBadRequest, "phase "+phase+" is none of "+strings.Join(kl.phases, ", ")+" (the phases of "+kl.noun+")")
			return
		}
		items := []Summary{}
		rd, ok := s.readerOr(w, r, func() { writeJSON(w, http.StatusOK, map[string]any{"items": items}) })
		if !ok {
			return
		}
		snaps, err := rd.List(r.Context(), ns)
		if err != nil {
			s.unavailable(w, err)
			return
		}
		// One look-up of the status stream for the whole list; without it
		// (an error) the list goes without createdAt.
		status, _ := s.client.JetStream().Stream(r.Context(), events.StreamStatus)
		for _, sn := range snaps {
			if sn.Kind != kl.kind || phase != "" && sn.Phase != phase || !s.auth.Allow(p, sn.Namespace, auth.RoleViewer) {
				continue
			}
			items = append(items, Summary{Snapshot: sn, CreatedAt: createdAt(r.Context(), status, events.Ref{Namespace: sn.Namespace, Name: sn.Name})})
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	}
}

// createdAt is when the status stream stored r's first event it still
// holds: when the rollout was first accepted, unless the stream dropped
// that event.
func createdAt(ctx context.Context, st jetstream.Stream, r events.Ref) *time.Time {
	if st == nil {
		return nil
	}
	msg, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(events.StatusSubject(r)))
	if err != nil {
		return nil
	}
	return &msg.Time
}

// readable returns the rollout or experiment the path names when the
// caller may read its namespace; otherwise it answered (401, 400, 403)
// and returns false.
func (s *Service) readable(w http.ResponseWriter, r *http.Request) (events.Ref, bool) {
	p, ok := caller(w, r)
	if !ok {
		return events.Ref{}, false
	}
	ref, ok := pathRef(w, r)
	if !ok || !s.mayRead(w, p, ref.Namespace) {
		return ref, false
	}
	return ref, true
}

// readerOr returns the orchestrator's reader. While no orchestrator ever
// ran on the bus (so nothing exists) it calls missing to answer, and on
// another error it answers 503; then it returns false.
func (s *Service) readerOr(w http.ResponseWriter, r *http.Request, missing func()) (*orchestrator.Reader, bool) {
	rd, err := s.rollouts(r.Context())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		missing()
		return nil, false
	}
	if err != nil {
		s.unavailable(w, err)
		return nil, false
	}
	return rd, true
}

// unavailable answers 503 for a bus that cannot be read.
func (s *Service) unavailable(w http.ResponseWriter, err error) {
	s.cfg.Logger.Warn("read the bus", "err", err)
	writeError(w, http.StatusServiceUnavailable, "cannot read the rollouts from NATS now: "+err.Error())
}

// notFound answers 404 for a rollout that does not exist.
func notFound(w http.ResponseWriter, ref events.Ref) {
	writeError(w, http.StatusNotFound, "no rollout "+ref.String()+" (GET /api/v1/rollouts lists them)")
}

// otherKind answers 404 for a read of a rollout that names an experiment,
// or of an experiment that names a rollout, with where to read it.
func otherKind(w http.ResponseWriter, ref events.Ref, kind string) {
	if kind == events.KindExperiment {
		writeError(w, http.StatusNotFound, "no rollout "+ref.String()+": it is an Experiment (GET /api/v1/namespaces/"+ref.Namespace+"/experiments/"+ref.Name+")")
		return
	}
	writeError(w, http.StatusNotFound, "no experiment "+ref.String()+": it is a Rollout (GET /api/v1/namespaces/"+ref.Namespace+"/rollouts/"+ref.Name+")")
}

// Detail answers GET /api/v1/namespaces/{namespace}/rollouts/{name}.
type Detail struct {
	Status       events.Snapshot `json:"status"`
	Steps        []Step          `json:"steps"`
	Revisions    []Revision      `json:"revisions"`
	AnalysisRuns []AnalysisRun   `json:"analysisRuns"`
	Weights      []WeightPoint   `json:"weights"`
	LastEvent    *events.Event   `json:"lastEvent,omitempty"`
}

// Step is one step of the plan.
type Step struct {
	Index  int32  `json:"index"`
	Action string `json:"action"`
	Detail string `json:"detail,omitempty"`
	// DurationSeconds is a timed pause's length.
	DurationSeconds *float64 `json:"durationSeconds,omitempty"`
}

// Revision is one revision the rollout keeps, with its pods.
type Revision struct {
	Revision int64    `json:"revision"`
	PodHash  string   `json:"podHash"`
	Images   []string `json:"images"`
	Role     string   `json:"role"`
	Replicas int32    `json:"replicas"`
	Ready    int32    `json:"ready"`
	Pods     []Pod    `json:"pods"`
}

// AnalysisRun is one analysis run with every measurement its events
// reported.
type AnalysisRun struct {
	Name      string                  `json:"name"`
	Purpose   string                  `json:"purpose,omitempty"`
	Phase     string                  `json:"phase"`
	Message   string                  `json:"message,omitempty"`
	StartedAt *time.Time              `json:"startedAt,omitempty"`
	Summary   *events.AnalysisSummary `json:"summary,omitempty"`
	Metrics   []Metric                `json:"metrics"`
}

// Metric is one metric of a run, with its conditions when known.
type Metric struct {
	Name             string               `json:"name"`
	SuccessCondition string               `json:"successCondition,omitempty"`
	FailureCondition string               `json:"failureCondition,omitempty"`
	Measurements     []events.Measurement `json:"measurements"`
}

// WeightPoint is the canary weight a status event reported.
type WeightPoint struct {
	Time         time.Time `json:"time"`
	CanaryWeight int32     `json:"canaryWeight"`
	Event        string    `json:"event"`
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.readable(w, r)
	if !ok {
		return
	}
	rd, ok := s.readerOr(w, r, func() { notFound(w, ref) })
	if !ok {
		return
	}
	d, err := rd.Detail(r.Context(), ref)
	if errors.Is(err, orchestrator.ErrNoRollout) {
		notFound(w, ref)
		return
	}
	if err != nil {
		s.unavailable(w, err)
		return
	}
	if d.Status.Kind != "" {
		otherKind(w, ref, d.Status.Kind)
		return
	}
	hist, err := s.client.History(r.Context(), ref)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	pods, err := s.cfg.Pods.Pods(r.Context(), ref)
	if err != nil {
		s.cfg.Logger.Warn("read pods", "rollout", ref.String(), "err", err)
	}
	out := detailOf(d, hist, pods)
	s.addMetrics(r.Context(), ref, out.AnalysisRuns)
	writeJSON(w, http.StatusOK, out)
}

// addMetrics adds what the analyzer holds of each of ref's runs to it
// (withMetrics); without the analyzer's bucket the runs stay as they are.
func (s *Service) addMetrics(ctx context.Context, ref events.Ref, runs []AnalysisRun) {
	rr, err := s.analysisRuns(ctx)
	if err != nil {
		return
	}
	for i := range runs {
		if run, err := rr.Get(ctx, ref, runs[i].Name); err == nil {
			withMetrics(&runs[i], run)
		}
	}
}

// withMetrics adds what the analyzer holds of a run to ar: when it
// started, and each metric with its conditions, in the run's order, with
// the measurements the events reported.
func withMetrics(ar *AnalysisRun, run analysis.Run) {
	if !run.StartedAt.IsZero() {
		t := run.StartedAt
		ar.StartedAt = &t
	}
	if ar.Message == "" {
		ar.Message = run.Message
	}
	metrics := make([]Metric, 0, len(run.Metrics))
	for _, m := range run.Metrics {
		mm := Metric{Name: m.Name, SuccessCondition: m.SuccessCondition, FailureCondition: m.FailureCondition, Measurements: []events.Measurement{}}
		if i := slices.IndexFunc(ar.Metrics, func(x Metric) bool { return x.Name == m.Name }); i >= 0 {
			mm.Measurements = ar.Metrics[i].Measurements
		}
		metrics = append(metrics, mm)
	}
	for _, m := range ar.Metrics {
		if !slices.ContainsFunc(metrics, func(x Metric) bool { return x.Name == m.Name }) {
			metrics = append(metrics, m)
		}
	}
	ar.Metrics = metrics
}

// detailOf assembles a rollout's detail from what the orchestrator holds,
// its history and its pods.
func detailOf(d orchestrator.Detail, hist []events.HistoryEntry, pods []Pod) Detail {
	out := Detail{Status: d.Status, Steps: []Step{}, Revisions: []Revision{}, Weights: []WeightPoint{}}
	for _, st := range d.Steps {
		step := Step{Index: st.Index, Action: st.Action, Detail: st.Detail}
		if st.Pause != nil && st.Pause.Duration != nil {
			if l, err := st.Pause.Length(); err == nil {
				sec := l.Seconds()
				step.DurationSeconds = &sec
			}
		}
		out.Steps = append(out.Steps, step)
	}
	for _, rv := range d.Revisions {
		rev := Revision{Revision: rv.Revision, PodHash: rv.PodHash, Images: rv.Images, Role: rv.Role, Pods: []Pod{}}
		if rev.Images == nil {
			rev.Images = []string{}
		}
		if rv.Pods != nil {
			rev.Replicas, rev.Ready = rv.Pods.Replicas, rv.Pods.Ready
		}
		for _, pd := range pods {
			if pd.PodHash == rv.PodHash {
				rev.Pods = append(rev.Pods, pd)
			}
		}
		out.Revisions = append(out.Revisions, rev)
	}
	var runs runSet
	for _, e := range hist {
		if e.Err != nil || e.Stream != events.StreamStatus {
			continue
		}
		ev := e.Event
		var sd events.StatusData
		if events.DecodeData(ev, &sd) != nil {
			continue
		}
		last := ev
		out.LastEvent = &last
		if runs.observe(ev, sd) || ev.Type() == events.TypeRolloutRefused {
			continue
		}
		out.Weights = append(out.Weights, WeightPoint{Time: ev.Time(), CanaryWeight: sd.Status.CanaryWeight, Event: ev.Type()})
	}
	for _, rr := range d.Runs {
		run := runs.named(rr.Name)
		run.Purpose, run.Phase = rr.Purpose, rr.Phase
		if rr.Summary != nil {
			sum := *rr.Summary
			run.Summary, run.Message = &sum, sum.Message
		}
		if !rr.Task.SentAt.IsZero() {
			t := rr.Task.SentAt
			run.StartedAt = &t
		}
	}
	out.AnalysisRuns = runs.list()
	return out
}

// runSet gathers the analysis runs of a rollout or experiment: every one
// the status stream still reports, in the order they first appear, and
// those the orchestrator holds that have not reported yet.
type runSet struct {
	byName map[string]*AnalysisRun
	order  []string
}

// named returns the run called name, adding it when new.
func (rs *runSet) named(name string) *AnalysisRun {
	if r, ok := rs.byName[name]; ok {
		return r
	}
	if rs.byName == nil {
		rs.byName = map[string]*AnalysisRun{}
	}
	r := &AnalysisRun{Name: name, Metrics: []Metric{}}
	rs.byName[name] = r
	rs.order = append(rs.order, name)
	return r
}

// observe records what an analysis.measured or analysis.completed event
// says of its run, and reports whether ev was one.
func (rs *runSet) observe(ev events.Event, sd events.StatusData) bool {
	if ev.Type() != events.TypeAnalysisMeasured && ev.Type() != events.TypeAnalysisCompleted {
		return false
	}
	if a := sd.Analysis; a != nil {
		run := rs.named(a.Name)
		sum := *a
		run.Phase, run.Message, run.Summary = a.Phase, a.Message, &sum
		if run.StartedAt == nil && sd.Measurement != nil {
			t := sd.Measurement.StartedAt
			run.StartedAt = &t
		}
		if sd.Measurement != nil {
			addMeasurement(run, *sd.Measurement)
		}
	}
	return true
}

// list is the runs in order.
func (rs *runSet) list() []AnalysisRun {
	out := make([]AnalysisRun, 0, len(rs.order))
	for _, name := range rs.order {
		out = append(out, *rs.byName[name])
	}
	return out
}

// addMeasurement adds m to its metric in run.
func addMeasurement(run *AnalysisRun, m events.Measurement) {
	for i := range run.Metrics {
		if run.Metrics[i].Name == m.Metric {
			run.Metrics[i].Measurements = append(run.Metrics[i].Measurements, m)
			return
		}
	}
	run.Metrics = append(run.Metrics, Metric{Name: m.Metric, Measurements: []events.Measurement{m}})
}

// HistoryItem is one event of a rollout's history.
type HistoryItem struct {
	// Stream and Seq are where the event is stored: commands are in the
	// commands stream, status events in the status stream.
	Stream string       `json:"stream"`
	Seq    uint64       `json:"seq"`
	Stored time.Time    `json:"stored"`
	Event  events.Event `json:"event"`
}

func (s *Service) history(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.readable(w, r)
	if !ok {
		return
	}
	hist, err := s.client.History(r.Context(), ref)
	if err != nil {
		s.unavailable(w, err)
		return
	}
	items := []HistoryItem{}
	for _, e := range hist {
		if e.Err != nil {
			continue
		}
		items = append(items, HistoryItem{Stream: e.Stream, Seq: e.Seq, Stored: e.Stored, Event: e.Event})
	}
	if len(items) == 0 {
		notFound(w, ref)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}
