package analysis

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Defaults of Argo Rollouts that are properties of the run, not of a field.
const (
	// DefaultMeasurementRetention is how many measurements a metric keeps
	// when no measurementRetention rule names it.
	DefaultMeasurementRetention = 10
	// ErrorRetryInterval is how long after an Error measurement the metric
	// is measured again, whatever its interval.
	ErrorRetryInterval = 10 * time.Second
)

// Run is the whole state of one analysis run: what it measures and what it
// measured. It is plain data, JSON-serialisable, and its functions never
// modify a Run in place: they return a new one.
type Run struct {
	Name string `json:"name"`
	// Metrics have their arguments substituted, except those read from
	// secrets (SecretArgs), whose placeholders stay until measured.
	Metrics []spec.Metric `json:"metrics"`
	// SecretArgs are the arguments whose value comes from a secret. The
	// caller reads them for each measurement, substitutes them
	// (Substitute) into the metric Due returns, and redacts them from the
	// measurement (Measurement.Redact), so that secrets are never stored.
	SecretArgs []spec.Argument `json:"secretArgs,omitempty"`
	// Args are the run's arguments as merged from its templates and the
	// rollout: values resolved, secrets as their secretKeyRef (never their
	// value), as Argo Rollouts writes them in an AnalysisRun's spec.args.
	Args      []spec.Argument `json:"args,omitempty"`
	StartedAt time.Time       `json:"startedAt"`
	// Terminated is set by Terminate.
	Terminated bool               `json:"terminated,omitempty"`
	Phase      spec.AnalysisPhase `json:"phase"`
	Message    string             `json:"message,omitempty"`
	// Results has one entry per metric, in the order of Metrics.
	Results []MetricResult `json:"results"`
}

// MetricResult is the state of one metric: its phase, its counters over
// every measurement, and the measurements it retains.
type MetricResult struct {
	Name  string             `json:"name"`
	Phase spec.AnalysisPhase `json:"phase"`
	// Reason says why a completed metric has its phase, as Argo Rollouts
	// words it: "failed (3) > failureLimit (2)".
	Reason string `json:"reason,omitempty"`
	// Message is the last measurement's message.
	Message string `json:"message,omitempty"`
	DryRun  bool   `json:"dryRun,omitempty"`
	// Retain is how many measurements are kept.
	Retain int32 `json:"retain"`
	// Count is Successful + Failed + Inconclusive: measurements without
	// error, the ones the metric's count counts.
	Count              int32 `json:"count"`
	Successful         int32 `json:"successful"`
	Failed             int32 `json:"failed"`
	Inconclusive       int32 `json:"inconclusive"`
	Error              int32 `json:"error"`
	ConsecutiveError   int32 `json:"consecutiveError"`
	ConsecutiveSuccess int32 `json:"consecutiveSuccess"`
	// Measurements are the last Retain measurements, oldest first.
	Measurements []metrics.Measurement `json:"measurements,omitempty"`
}

// New starts a run of s at now: the moment initialDelay counts from. s is
// a run's spec as Merge returns it.
//
// Every argument needs a value or a valueFrom.secretKeyRef; values are
// substituted into the metrics, secrets are left for measurement time. New
// returns every problem it finds, joined: arguments without value,
// placeholders of undeclared arguments, the spec's validation errors
// (field paths under spec.), counts and limits that are not integers,
// failureLimit -1 without consecutiveSuccessLimit, conditions that do not
// compile, dryRun and measurementRetention rules that match no metric.
func New(name string, s spec.AnalysisRunSpec, now time.Time) (Run, error) {
	var errs []error
	if err := missingArgs(s.Args); err != nil {
		errs = append(errs, err)
	}
	values := map[string]string{}
	declared := map[string]bool{}
	var secrets []spec.Argument
	for _, a := range s.Args {
		declared[a.Name] = true
		switch {
		case a.Value != nil:
			values[a.Name] = *a.Value
		case isSecret(a):
			secrets = append(secrets, a)
		}
	}

	resolved := make([]spec.Metric, len(s.Metrics))
	for i, m := range s.Metrics {
		for _, ref := range Placeholders(m) {
			if !declared[ref] {
				errs = append(errs, fmt.Errorf("metric %q uses {{args.%s}}, which no template declares", m.Name, ref))
			}
		}
		r, err := Substitute(m, values)
		if err != nil {
			errs = append(errs, err)
		}
		resolved[i] = r
	}

	check := spec.AnalysisRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run"},
		Spec:       spec.AnalysisRunSpec{Metrics: resolved, Args: s.Args, DryRun: s.DryRun, MeasurementRetention: s.MeasurementRetention},
	}
	if fe := check.Validate(); len(fe) > 0 {
		errs = append(errs, fe.ToAggregate())
	}
	for _, m := range resolved {
		if _, err := limitsOf(m); err != nil {
			errs = append(errs, fmt.Errorf("metric %q: %w", m.Name, err))
		}
		if _, err := compileConditions(m); err != nil {
			errs = append(errs, fmt.Errorf("metric %q: %w", m.Name, err))
		}
	}
	dry, err := matchDryRun(s.DryRun, resolved)
	if err != nil {
		errs = append(errs, err)
	}
	retain, err := matchRetention(s.MeasurementRetention, resolved)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Run{}, fmt.Errorf("analysis run %q: %w", name, errors.Join(errs...))
	}

	r := Run{Name: name, Metrics: resolved, SecretArgs: secrets, Args: s.Args, StartedAt: now, Results: make([]MetricResult, len(resolved))}
	for i, m := range resolved {
		r.Results[i] = MetricResult{Name: m.Name, Phase: spec.AnalysisPhasePending, DryRun: dry[m.Name], Retain: retain[m.Name]}
	}
	assess(&r)
	return r, nil
}

// Due returns the metrics to measure at now, in the run's order: those
// whose initialDelay has passed and that were never measured, and those
// whose interval (ErrorRetryInterval after an Error) has passed since their
// last measurement finished. A completed or terminating run has none. A
// metric is due at the instant NextWakeup reports, not only after it.
func (r Run) Due(now time.Time) []spec.Metric {
	var due []spec.Metric
	for i := range r.Results {
		if t, ok := r.wakeup(i); ok && !now.Before(t) {
			due = append(due, r.Metrics[i])
		}
	}
	return due
}

// NextWakeup is the earliest instant a metric becomes due. ok is false when
// none will: the run is completed.
func (r Run) NextWakeup() (t time.Time, ok bool) {
	for i := range r.Results {
		if w, has := r.wakeup(i); has && (!ok || w.Before(t)) {
			t, ok = w, true
		}
	}
	return t, ok
}

func (r Run) wakeup(i int) (time.Time, bool) {
	res := r.Results[i]
	if res.Phase.Completed() || r.Phase.Completed() || r.terminating() {
		return time.Time{}, false
	}
	l, err := limitsOf(r.Metrics[i])
	if err != nil {
		return time.Time{}, false
	}
	if len(res.Measurements) == 0 {
		return r.StartedAt.Add(l.initialDelay), true
	}
	last := res.Measurements[len(res.Measurements)-1]
	if l.count > 0 && res.Count >= l.count {
		return time.Time{}, false
	}
	switch {
	case last.Phase == spec.AnalysisPhaseError:
		return last.FinishedAt.Add(ErrorRetryInterval), true
	case l.interval > 0:
		return last.FinishedAt.Add(l.interval), true
	}
	return time.Time{}, false
}

// Record applies one measurement of the named metric: it judges it (Judge)
// with the metric's conditions, updates the counters, keeps the last
// measurements the retention allows, and reassesses the metric and the run.
//
// A measurement is dropped, and run returned as it is, when the metric is
// unknown or completed, when the run is completed or terminating, or when
// it did not start after the last recorded one (a redelivered or stale
// measurement). A zero FinishedAt is taken as StartedAt. m.Result is not
// kept.
func Record(run Run, metric string, m metrics.Measurement) Run {
	i := slices.IndexFunc(run.Results, func(res MetricResult) bool { return res.Name == metric })
	if i < 0 || run.Phase.Completed() || run.terminating() || run.Results[i].Phase.Completed() {
		return run
	}
	if ms := run.Results[i].Measurements; len(ms) > 0 && !m.StartedAt.After(ms[len(ms)-1].StartedAt) {
		return run
	}
	m = Judge(run.Metrics[i], m)
	m.Result = nil
	if m.FinishedAt.IsZero() {
		m.FinishedAt = m.StartedAt
	}

	r := run.clone()
	res := &r.Results[i]
	switch m.Phase {
	case spec.AnalysisPhaseSuccessful:
		res.Successful++
		res.Count++
		res.ConsecutiveError = 0
		res.ConsecutiveSuccess++
	case spec.AnalysisPhaseFailed:
		res.Failed++
		res.Count++
		res.ConsecutiveError = 0
		res.ConsecutiveSuccess = 0
	case spec.AnalysisPhaseInconclusive:
		res.Inconclusive++
		res.Count++
		res.ConsecutiveError = 0
		res.ConsecutiveSuccess = 0
	case spec.AnalysisPhaseError:
		res.Error++
		res.ConsecutiveError++
		res.ConsecutiveSuccess = 0
	}
	res.Message = m.Message
	res.Measurements = append(res.Measurements, m)
	if n := len(res.Measurements) - int(res.Retain); res.Retain > 0 && n > 0 {
		res.Measurements = slices.Clone(res.Measurements[n:])
	}
	assess(&r)
	return r
}

// Terminate stops run, as Argo Rollouts' spec.terminate does: no further
// measurement is taken, metrics not yet decided become Successful, and the
// run's phase is the worst of its metrics' (Successful if none was
// measured). Terminating a completed run changes nothing.
func Terminate(run Run) Run {
	if run.Phase.Completed() {
		return run
	}
	r := run.clone()
	r.Terminated = true
	assess(&r)
	return r
}

// Completed reports whether the run has its final phase.
func (r Run) Completed() bool { return r.Phase.Completed() }

// Summary is the run's verdict so far, as published in status events: the
// phase, the message, and how many metrics (dry-run metrics left out) ended
// in each phase, as Argo Rollouts' status.runSummary counts them.
func (r Run) Summary() events.AnalysisSummary {
	s := events.AnalysisSummary{Name: r.Name, Phase: string(r.Phase), Message: r.Message}
	for _, res := range r.Results {
		if res.DryRun {
			continue
		}
		switch res.Phase {
		case spec.AnalysisPhaseSuccessful:
			s.Successful++
		case spec.AnalysisPhaseFailed:
			s.Failed++
		case spec.AnalysisPhaseInconclusive:
			s.Inconclusive++
		case spec.AnalysisPhaseError:
			s.Error++
		}
	}
	return s
}

// Result returns the named metric's result.
func (r Run) Result(metric string) (MetricResult, bool) {
	i := slices.IndexFunc(r.Results, func(res MetricResult) bool { return res.Name == metric })
	if i < 0 {
		return MetricResult{}, false
	}
	return r.Results[i], true
}

// terminating reports whether no more measurements are taken: the run was
// terminated, or a metric that is not a dry run was decided Failed, Error
// or Inconclusive.
func (r Run) terminating() bool {
	if r.Terminated {
		return true
	}
	for _, res := range r.Results {
		if res.DryRun {
			continue
		}
		switch res.Phase {
		case spec.AnalysisPhaseFailed, spec.AnalysisPhaseError, spec.AnalysisPhaseInconclusive:
			return true
		}
	}
	return false
}

func (r Run) clone() Run {
	c := r
	c.Results = make([]MetricResult, len(r.Results))
	for i, res := range r.Results {
		res.Measurements = slices.Clone(res.Measurements)
		c.Results[i] = res
	}
	return c
}

// limits are a metric's count, limits and times, parsed.
type limits struct {
	// count is the effective count; 0 means until terminated.
	count                                                       int32
	failure, inconclusive, consecutiveError, consecutiveSuccess int32
	interval, initialDelay                                      time.Duration
}

// limitsOf parses a metric's settings with Argo Rollouts' defaults: count
// 1 without interval and unbounded with one (a count of 0 is unset),
// failureLimit 0 (-1 disables it), inconclusiveLimit 0,
// consecutiveErrorLimit 4, consecutiveSuccessLimit 0 (off).
func limitsOf(m spec.Metric) (limits, error) {
	var l limits
	var errs []error
	parse := func(field string, v *intstr.IntOrString, def, lo int32) int32 {
		if v == nil {
			return def
		}
		n := v.IntVal
		if v.Type == intstr.String {
			p, err := strconv.ParseInt(strings.TrimSpace(v.StrVal), 10, 32)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q is not an integer", field, v.StrVal))
				return def
			}
			n = int32(p)
		}
		if n < lo {
			errs = append(errs, fmt.Errorf("%s %d must be greater than or equal to %d", field, n, lo))
			return def
		}
		return n
	}
	l.count = parse("count", m.Count, 0, 0)
	l.failure = parse("failureLimit", m.FailureLimit, 0, -1)
	l.inconclusive = parse("inconclusiveLimit", m.InconclusiveLimit, 0, 0)
	l.consecutiveError = parse("consecutiveErrorLimit", m.ConsecutiveErrorLimit, spec.DefaultConsecutiveErrorLimit, 0)
	l.consecutiveSuccess = parse("consecutiveSuccessLimit", m.ConsecutiveSuccessLimit, 0, 0)
	duration := func(field string, d spec.DurationString) time.Duration {
		if d == "" {
			return 0
		}
		v, err := d.Duration()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		return v
	}
	l.interval = duration("interval", m.Interval)
	l.initialDelay = duration("initialDelay", m.InitialDelay)
	if l.count == 0 && m.Interval == "" {
		l.count = 1
	}
	if l.failure < 0 && l.consecutiveSuccess == 0 {
		errs = append(errs, errors.New("failureLimit -1 needs a consecutiveSuccessLimit above 0, or the metric can neither fail nor succeed"))
	}
	return l, errors.Join(errs...)
}

// matchDryRun resolves dryRun rules to metric names. A rule's metricName is
// "*" for every metric or, as in Argo Rollouts, a regular expression
// matched anywhere in the name; a rule that matches no metric is an error.
func matchDryRun(rules []spec.DryRun, ms []spec.Metric) (map[string]bool, error) {
	out := map[string]bool{}
	var errs []error
	for i, rule := range rules {
		names, err := matchRule(rule.MetricName, ms)
		if err != nil {
			errs = append(errs, fmt.Errorf("dryRun[%d]: %w", i, err))
		}
		for _, n := range names {
			out[n] = true
		}
	}
	return out, errors.Join(errs...)
}

// matchRetention resolves measurementRetention rules to each metric's
// limit: DefaultMeasurementRetention unless a rule with a limit above 0
// matches, the last matching rule winning, as in Argo Rollouts.
func matchRetention(rules []spec.MeasurementRetention, ms []spec.Metric) (map[string]int32, error) {
	out := map[string]int32{}
	for _, m := range ms {
		out[m.Name] = DefaultMeasurementRetention
	}
	var errs []error
	for i, rule := range rules {
		names, err := matchRule(rule.MetricName, ms)
		if err != nil {
			errs = append(errs, fmt.Errorf("measurementRetention[%d]: %w", i, err))
		}
		if rule.Limit <= 0 {
			continue
		}
		for _, n := range names {
			out[n] = rule.Limit
		}
	}
	return out, errors.Join(errs...)
}

func matchRule(pattern string, ms []spec.Metric) ([]string, error) {
	var names []string
	if pattern == "*" {
		for _, m := range ms {
			names = append(names, m.Name)
		}
		return names, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("metricName %q is not \"*\" or a regular expression: %v", pattern, err)
	}
	for _, m := range ms {
		if re.MatchString(m.Name) {
			names = append(names, m.Name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("metricName %q matches no metric", pattern)
	}
	return names, nil
}
