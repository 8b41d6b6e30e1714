package analysis

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func n(v int) *intstr.IntOrString { x := intstr.FromInt32(int32(v)); return &x }

// metric is a prometheus metric named name; opts adjust it.
func metric(name string, opts ...func(*spec.Metric)) spec.Metric {
	m := spec.Metric{
		Name:     name,
		Provider: spec.MetricProvider{Prometheus: &spec.PrometheusMetric{Address: "http://prometheus:9090", Query: "up"}},
	}
	for _, o := range opts {
		o(&m)
	}
	return m
}

func count(c int) func(*spec.Metric) { return func(m *spec.Metric) { m.Count = n(c) } }
func interval(d string) func(*spec.Metric) {
	return func(m *spec.Metric) { m.Interval = spec.DurationString(d) }
}
func failureLimit(c int) func(*spec.Metric) { return func(m *spec.Metric) { m.FailureLimit = n(c) } }
func inconclusiveLimit(c int) func(*spec.Metric) {
	return func(m *spec.Metric) { m.InconclusiveLimit = n(c) }
}
func errorLimit(c int) func(*spec.Metric) {
	return func(m *spec.Metric) { m.ConsecutiveErrorLimit = n(c) }
}
func successLimit(c int) func(*spec.Metric) {
	return func(m *spec.Metric) { m.ConsecutiveSuccessLimit = n(c) }
}
func initialDelay(d string) func(*spec.Metric) {
	return func(m *spec.Metric) { m.InitialDelay = spec.DurationString(d) }
}
func conds(success, failure string) func(*spec.Metric) {
	return func(m *spec.Metric) { m.SuccessCondition, m.FailureCondition = success, failure }
}

func newRun(t *testing.T, s spec.AnalysisRunSpec) Run {
	t.Helper()
	r, err := New("run", s, t0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

const (
	S = spec.AnalysisPhaseSuccessful
	F = spec.AnalysisPhaseFailed
	I = spec.AnalysisPhaseInconclusive
	E = spec.AnalysisPhaseError
	R = spec.AnalysisPhaseRunning
	P = spec.AnalysisPhasePending
)

// measured returns a judged measurement taken at the i-th minute of the run.
func measured(i int, phase spec.AnalysisPhase) metrics.Measurement {
	at := t0.Add(time.Duration(i+1) * time.Minute)
	return metrics.Measurement{Phase: phase, StartedAt: at, FinishedAt: at.Add(time.Second), Message: "m" + string(phase)}
}

// feed records phases for metric m one after another.
func feed(r Run, m string, phases ...spec.AnalysisPhase) Run {
	for i, p := range phases {
		r = Record(r, m, measured(i, p))
	}
	return r
}

func TestMetricLimits(t *testing.T) {
	tests := []struct {
		name       string
		metric     spec.Metric
		phases     []spec.AnalysisPhase
		want       spec.AnalysisPhase
		wantReason string
	}{
		{"failureLimit 0 by default fails on the first failure", metric("m", count(3), interval("1m")), []spec.AnalysisPhase{S, F}, F, "failed (1) > failureLimit (0)"},
		{"failureLimit 2 tolerates two failures", metric("m", count(3), interval("1m"), failureLimit(2)), []spec.AnalysisPhase{F, F, S}, S, "count (3) reached"},
		{"failureLimit 2 fails on the third", metric("m", count(5), interval("1m"), failureLimit(2)), []spec.AnalysisPhase{F, S, F, F}, F, "failed (3) > failureLimit (2)"},
		{"failureLimit -1 with consecutiveSuccessLimit waits for successes in a row", metric("m", count(6), interval("1m"), failureLimit(-1), successLimit(2)), []spec.AnalysisPhase{F, F, S, F, S, S}, S, "consecutiveSuccesses (2) >= consecutiveSuccessLimit (2)"},
		{"failureLimit -1: count reached without the successes is Failed", metric("m", count(4), interval("1m"), failureLimit(-1), successLimit(2)), []spec.AnalysisPhase{F, S, F, S}, F, "count (4) reached without consecutiveSuccessLimit (2) reached"},
		{"failureLimit -1 without count keeps measuring", metric("m", interval("1m"), failureLimit(-1), successLimit(3)), []spec.AnalysisPhase{F, F, F, F, S, S}, R, ""},
		{"both limits: count reached without either is Inconclusive", metric("m", count(4), interval("1m"), failureLimit(3), successLimit(2)), []spec.AnalysisPhase{S, F, S, F}, I, "count (4) reached without consecutiveSuccessLimit (2) reached or failureLimit (3) exceeded"},
		{"both limits: successes in a row win early", metric("m", count(4), interval("1m"), failureLimit(3), successLimit(2)), []spec.AnalysisPhase{F, S, S}, S, "consecutiveSuccesses (2) >= consecutiveSuccessLimit (2)"},
		{"both limits: failureLimit still fails", metric("m", count(6), interval("1m"), failureLimit(1), successLimit(3)), []spec.AnalysisPhase{F, S, F}, F, "failed (2) > failureLimit (1)"},
		{"an error breaks successes in a row", metric("m", count(4), interval("1m"), failureLimit(-1), successLimit(2)), []spec.AnalysisPhase{S, E, S, F, F}, F, "count (4) reached without consecutiveSuccessLimit (2) reached"},
		{"inconclusiveLimit 0 by default", metric("m", count(3), interval("1m")), []spec.AnalysisPhase{I}, I, "inconclusive (1) > inconclusiveLimit (0)"},
		{"inconclusiveLimit 1 tolerates one", metric("m", count(2), interval("1m"), inconclusiveLimit(1)), []spec.AnalysisPhase{I, S}, S, "count (2) reached"},
		{"inconclusiveLimit 1 exceeded", metric("m", count(3), interval("1m"), inconclusiveLimit(1)), []spec.AnalysisPhase{I, I}, I, "inconclusive (2) > inconclusiveLimit (1)"},
		{"consecutiveErrorLimit 4 by default: four errors are tolerated", metric("m"), []spec.AnalysisPhase{E, E, E, E}, R, ""},
		{"consecutiveErrorLimit 4 by default: the fifth is not", metric("m"), []spec.AnalysisPhase{E, E, E, E, E}, E, "consecutiveErrors (5) > consecutiveErrorLimit (4)"},
		{"errors in a row reset by a value", metric("m", count(3), interval("1m"), errorLimit(1)), []spec.AnalysisPhase{E, S, E, S, E, S}, S, "count (3) reached"},
		{"consecutiveErrorLimit 0 errors at once", metric("m", errorLimit(0)), []spec.AnalysisPhase{E}, E, "consecutiveErrors (1) > consecutiveErrorLimit (0)"},
		{"errors do not count towards count", metric("m", count(2), interval("1m")), []spec.AnalysisPhase{E, S, E}, R, ""},
		{"neither count nor interval: one measurement", metric("m"), []spec.AnalysisPhase{S}, S, "count (1) reached"},
		{"count 0 is unset", metric("m", count(0)), []spec.AnalysisPhase{S}, S, "count (1) reached"},
		{"interval only: measures until terminated", metric("m", interval("1m")), []spec.AnalysisPhase{S, S, S, S, S, S, S, S, S, S, S, S}, R, ""},
		{"count and interval", metric("m", count(3), interval("1m")), []spec.AnalysisPhase{S, S, S}, S, "count (3) reached"},
		{"failure limit is checked before count", metric("m", count(2), interval("1m"), failureLimit(0)), []spec.AnalysisPhase{S, F}, F, "failed (1) > failureLimit (0)"},
		{"error limit overrides failure limit in the same step", metric("m", count(9), interval("1m"), failureLimit(0), errorLimit(0)), []spec.AnalysisPhase{E}, E, "consecutiveErrors (1) > consecutiveErrorLimit (0)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := feed(newRun(t, spec.AnalysisRunSpec{Metrics: []spec.Metric{tc.metric}}), "m", tc.phases...)
			res, _ := r.Result("m")
			if res.Phase != tc.want || res.Reason != tc.wantReason {
				t.Fatalf("metric = %s (%q), want %s (%q)", res.Phase, res.Reason, tc.want, tc.wantReason)
			}
			if tc.want != R && r.Phase != tc.want {
				t.Errorf("run = %s, want %s", r.Phase, tc.want)
			}
		})
	}
}

func TestCounters(t *testing.T) {
	r := feed(newRun(t, spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("m", interval("1m"), failureLimit(-1), successLimit(99), inconclusiveLimit(9))}}),
		"m", S, S, E, E, F, I, S)
	res, _ := r.Result("m")
	got := [7]int32{res.Count, res.Successful, res.Failed, res.Inconclusive, res.Error, res.ConsecutiveError, res.ConsecutiveSuccess}
	want := [7]int32{5, 3, 1, 1, 2, 0, 1}
	if got != want {
		t.Fatalf("count, successful, failed, inconclusive, error, consecutiveError, consecutiveSuccess = %v, want %v", got, want)
	}
	if res.Message != "mSuccessful" {
		t.Errorf("message = %q, want the last measurement's", res.Message)
	}
}

func TestSchedule(t *testing.T) {
	type step struct {
		record    spec.AnalysisPhase // "" records nothing
		at        time.Duration      // measurement start, from t0
		wantWake  time.Duration      // from t0; -1: none
		dueAt     time.Duration      // Due at this offset must return the metric
		notDueAt  time.Duration      // and at this one must not (-1 skips)
		wantPhase spec.AnalysisPhase
	}
	tests := []struct {
		name   string
		metric spec.Metric
		steps  []step
	}{
		{"no delay: due at the start", metric("m"), []step{
			{wantWake: 0, dueAt: 0, notDueAt: -1, wantPhase: P},
		}},
		{"initialDelay counts from the start", metric("m", initialDelay("5m")), []step{
			{wantWake: 5 * time.Minute, dueAt: 5 * time.Minute, notDueAt: 5*time.Minute - time.Nanosecond, wantPhase: P},
			{record: S, at: 5 * time.Minute, wantWake: -1, notDueAt: time.Hour, wantPhase: S},
		}},
		{"interval counts from the last measurement's end", metric("m", interval("1m"), count(3)), []step{
			{record: S, at: 10 * time.Second, wantWake: 71 * time.Second, dueAt: 71 * time.Second, notDueAt: 70 * time.Second, wantPhase: R},
			{record: S, at: 71 * time.Second, wantWake: 132 * time.Second, dueAt: 132 * time.Second, notDueAt: 131 * time.Second, wantPhase: R},
			{record: S, at: 132 * time.Second, wantWake: -1, notDueAt: time.Hour, wantPhase: S},
		}},
		{"an error retries after 10s whatever the interval", metric("m", interval("5m"), count(2)), []step{
			{record: E, at: 0, wantWake: 11 * time.Second, dueAt: 11 * time.Second, notDueAt: 10 * time.Second, wantPhase: R},
			{record: S, at: 11 * time.Second, wantWake: 312 * time.Second, dueAt: 312 * time.Second, notDueAt: 311 * time.Second, wantPhase: R},
		}},
		{"an error without interval retries after 10s", metric("m"), []step{
			{record: E, at: 0, wantWake: 11 * time.Second, dueAt: 11 * time.Second, notDueAt: 10 * time.Second, wantPhase: R},
			{record: S, at: 11 * time.Second, wantWake: -1, notDueAt: time.Hour, wantPhase: S},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, spec.AnalysisRunSpec{Metrics: []spec.Metric{tc.metric}})
			for i, s := range tc.steps {
				if s.record != "" {
					r = Record(r, "m", metrics.Measurement{Phase: s.record, StartedAt: t0.Add(s.at), FinishedAt: t0.Add(s.at + time.Second)})
				}
				wake, ok := r.NextWakeup()
				switch {
				case s.wantWake < 0 && ok:
					t.Errorf("step %d: wakeup at %s, want none", i, wake.Sub(t0))
				case s.wantWake >= 0 && (!ok || !wake.Equal(t0.Add(s.wantWake))):
					t.Errorf("step %d: wakeup = %s (%v), want %s", i, wake.Sub(t0), ok, s.wantWake)
				}
				if s.wantWake >= 0 && len(r.Due(t0.Add(s.dueAt))) != 1 {
					t.Errorf("step %d: not due at %s", i, s.dueAt)
				}
				if s.notDueAt >= 0 && len(r.Due(t0.Add(s.notDueAt))) != 0 {
					t.Errorf("step %d: due at %s", i, s.notDueAt)
				}
				if res, _ := r.Result("m"); res.Phase != s.wantPhase {
					t.Errorf("step %d: phase = %s, want %s", i, res.Phase, s.wantPhase)
				}
			}
		})
	}
}

func TestRunVerdict(t *testing.T) {
	type rec struct {
		metric string
		phase  spec.AnalysisPhase
	}
	tests := []struct {
		name        string
		spec        spec.AnalysisRunSpec
		records     []rec
		terminate   bool
		wantRun     spec.AnalysisPhase
		wantMetrics map[string]spec.AnalysisPhase
		wantMessage string
	}{
		{
			name:        "running until every metric completes",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a"), metric("b", count(2), interval("1m"))}},
			records:     []rec{{"a", S}, {"b", S}},
			wantRun:     R,
			wantMetrics: map[string]spec.AnalysisPhase{"a": S, "b": R},
		},
		{
			name:        "all successful",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a"), metric("b")}},
			records:     []rec{{"a", S}, {"b", S}},
			wantRun:     S,
			wantMetrics: map[string]spec.AnalysisPhase{"a": S, "b": S},
		},
		{
			name:        "a failed metric terminates the others: running and pending become Successful",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("bg", interval("1m")), metric("late", initialDelay("1h")), metric("bad")}},
			records:     []rec{{"bg", S}, {"bad", F}},
			wantRun:     F,
			wantMetrics: map[string]spec.AnalysisPhase{"bg": S, "late": S, "bad": F},
			wantMessage: `metric "bad" assessed Failed due to failed (1) > failureLimit (0): mFailed`,
		},
		{
			name:        "inconclusive decides the run too",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a", interval("1m")), metric("b", conds("result > 1", "result < 0"))}},
			records:     []rec{{"b", I}},
			wantRun:     I,
			wantMetrics: map[string]spec.AnalysisPhase{"a": S, "b": I},
		},
		{
			name:        "the first decided metric stops the others measuring",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("i", interval("1m")), metric("e", errorLimit(0), interval("1m")), metric("f", interval("1m"))}, DryRun: nil},
			records:     []rec{{"i", I}},
			wantRun:     I,
			wantMetrics: map[string]spec.AnalysisPhase{"i": I, "e": S, "f": S},
		},
		{
			name:        "dry-run failure neither fails nor stops the run",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("dry"), metric("real", count(2), interval("1m"))}, DryRun: []spec.DryRun{{MetricName: "dry"}}},
			records:     []rec{{"dry", F}, {"real", S}},
			wantRun:     R,
			wantMetrics: map[string]spec.AnalysisPhase{"dry": F, "real": R},
		},
		{
			name:        "dry-run failure: run Successful when the others are",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("dry"), metric("real")}, DryRun: []spec.DryRun{{MetricName: "dry"}}},
			records:     []rec{{"dry", F}, {"real", S}},
			wantRun:     S,
			wantMetrics: map[string]spec.AnalysisPhase{"dry": F, "real": S},
		},
		{
			name:        "dryRun * makes every metric a dry run",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a"), metric("b")}, DryRun: []spec.DryRun{{MetricName: "*"}}},
			records:     []rec{{"a", F}, {"b", E}, {"b", E}, {"b", E}, {"b", E}, {"b", E}},
			wantRun:     S,
			wantMetrics: map[string]spec.AnalysisPhase{"a": F, "b": E},
		},
		{
			name:        "dryRun names are Argo's regular expressions",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("error-rate"), metric("latency")}, DryRun: []spec.DryRun{{MetricName: "^err"}}},
			records:     []rec{{"error-rate", F}, {"latency", S}},
			wantRun:     S,
			wantMetrics: map[string]spec.AnalysisPhase{"error-rate": F, "latency": S},
		},
		{
			name:        "terminate: background metric becomes Successful",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("bg", interval("1m"))}},
			records:     []rec{{"bg", S}, {"bg", S}},
			terminate:   true,
			wantRun:     S,
			wantMetrics: map[string]spec.AnalysisPhase{"bg": S},
			wantMessage: "Run Terminated",
		},
		{
			name:        "terminate before any measurement is Successful",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a", initialDelay("1h"))}},
			terminate:   true,
			wantRun:     S,
			wantMetrics: map[string]spec.AnalysisPhase{"a": S},
			wantMessage: "Run Terminated",
		},
		{
			name:        "terminate keeps a decided failure",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a"), metric("b", interval("1m"))}, DryRun: []spec.DryRun{{MetricName: "a"}}},
			records:     []rec{{"a", F}, {"b", S}},
			terminate:   true,
			wantRun:     S,
			wantMetrics: map[string]spec.AnalysisPhase{"a": F, "b": S},
			wantMessage: "Run Terminated",
		},
		{
			name:        "measurements after termination are dropped",
			spec:        spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a", interval("1m")), metric("b")}},
			records:     []rec{{"b", F}, {"a", F}},
			wantRun:     F,
			wantMetrics: map[string]spec.AnalysisPhase{"a": S, "b": F},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, tc.spec)
			for i, rc := range tc.records {
				r = Record(r, rc.metric, measured(i, rc.phase))
			}
			if tc.terminate {
				r = Terminate(r)
			}
			if r.Phase != tc.wantRun {
				t.Errorf("run = %s (%s), want %s", r.Phase, r.Message, tc.wantRun)
			}
			if tc.wantMessage != "" && r.Message != tc.wantMessage {
				t.Errorf("message = %q, want %q", r.Message, tc.wantMessage)
			}
			for name, want := range tc.wantMetrics {
				if res, _ := r.Result(name); res.Phase != want {
					t.Errorf("metric %s = %s, want %s", name, res.Phase, want)
				}
			}
			if r.Completed() {
				if due := r.Due(t0.Add(24 * time.Hour)); len(due) != 0 {
					t.Errorf("completed run has due metrics %v", due)
				}
				if _, ok := r.NextWakeup(); ok {
					t.Error("completed run has a wakeup")
				}
			}
		})
	}
}

func TestWorstOrder(t *testing.T) {
	order := []spec.AnalysisPhase{S, R, P, I, E, F}
	for i := range order {
		for j := range order {
			if got := worse(order[i], order[j]); got != (j > i) {
				t.Errorf("worse(%s, %s) = %v", order[i], order[j], got)
			}
		}
	}
}

func TestWorstWins(t *testing.T) {
	tests := []struct {
		name   string
		phases map[string][]spec.AnalysisPhase
		want   spec.AnalysisPhase
	}{
		{"failed over error", map[string][]spec.AnalysisPhase{"a": {E}, "b": {F}}, F},
		{"error over inconclusive", map[string][]spec.AnalysisPhase{"a": {I}, "b": {E}}, E},
		{"inconclusive over successful", map[string][]spec.AnalysisPhase{"a": {S}, "b": {I}}, I},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The metrics are decided together, before a Record can
			// terminate the other: build the state directly.
			r := newRun(t, spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a", errorLimit(0)), metric("b", errorLimit(0))}})
			for i := range r.Results {
				for _, p := range tc.phases[r.Results[i].Name] {
					r.Results[i].Measurements = append(r.Results[i].Measurements, measured(0, p))
					switch p {
					case S:
						r.Results[i].Successful++
						r.Results[i].Count++
					case F:
						r.Results[i].Failed++
						r.Results[i].Count++
					case I:
						r.Results[i].Inconclusive++
						r.Results[i].Count++
					case E:
						r.Results[i].Error++
						r.Results[i].ConsecutiveError++
					}
				}
			}
			assess(&r)
			if r.Phase != tc.want {
				t.Fatalf("run = %s, want %s", r.Phase, tc.want)
			}
		})
	}
}

func TestRetention(t *testing.T) {
	tests := []struct {
		name  string
		rules []spec.MeasurementRetention
		want  map[string]int
	}{
		{"default keeps 10", nil, map[string]int{"a": 10, "b": 10}},
		{"* for all", []spec.MeasurementRetention{{MetricName: "*", Limit: 3}}, map[string]int{"a": 3, "b": 3}},
		{"by name, the last rule wins", []spec.MeasurementRetention{{MetricName: "*", Limit: 3}, {MetricName: "^b$", Limit: 5}}, map[string]int{"a": 3, "b": 5}},
		{"limit 0 keeps the default", []spec.MeasurementRetention{{MetricName: "a", Limit: 0}}, map[string]int{"a": 10, "b": 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, spec.AnalysisRunSpec{
				Metrics:              []spec.Metric{metric("a", interval("1m")), metric("b", interval("1m"))},
				MeasurementRetention: tc.rules,
			})
			for i := range 15 {
				r = Record(r, "a", measured(i, S))
				r = Record(r, "b", measured(i, S))
			}
			for name, want := range tc.want {
				res, _ := r.Result(name)
				if len(res.Measurements) != want {
					t.Errorf("%s keeps %d measurements, want %d", name, len(res.Measurements), want)
				}
				if res.Count != 15 || res.Successful != 15 {
					t.Errorf("%s counters = %d/%d, want 15: retention must not change them", name, res.Count, res.Successful)
				}
				if last := res.Measurements[len(res.Measurements)-1]; !last.StartedAt.Equal(measured(14, S).StartedAt) {
					t.Errorf("%s kept the wrong end: last started at %s", name, last.StartedAt)
				}
			}
		})
	}
}

func TestRecordDropsStaleAndUnknown(t *testing.T) {
	r := newRun(t, spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a", interval("1m"))}})
	r = Record(r, "a", measured(3, S))
	for name, m := range map[string]metrics.Measurement{
		"redelivered": measured(3, S),
		"older":       measured(1, F),
	} {
		if got := Record(r, "a", m); !reflect.DeepEqual(got, r) {
			t.Errorf("%s measurement changed the run", name)
		}
	}
	if got := Record(r, "nope", measured(5, F)); !reflect.DeepEqual(got, r) {
		t.Error("measurement of an unknown metric changed the run")
	}
}

func TestRecordIsPure(t *testing.T) {
	r := newRun(t, spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("a", interval("1m"))}})
	r = Record(r, "a", measured(0, S))
	before, _ := json.Marshal(r)
	_ = Record(r, "a", measured(1, F))
	_ = Terminate(r)
	after, _ := json.Marshal(r)
	if string(before) != string(after) {
		t.Fatal("Record or Terminate modified its argument")
	}
}

func TestRunJSONRoundTrip(t *testing.T) {
	r := newRun(t, spec.AnalysisRunSpec{
		Metrics: []spec.Metric{metric("a", interval("1m"), count(5), conds("result[0] > 1", ""))},
		Args:    []spec.Argument{{Name: "token", ValueFrom: &spec.ValueFrom{SecretKeyRef: &spec.SecretKeyRef{Name: "s", Key: "k"}}}},
	})
	r = Record(r, "a", metrics.Measurement{Result: []float64{2}, Value: "[2]", Query: "up", Provider: "prometheus", StartedAt: t0.Add(1500 * time.Millisecond), FinishedAt: t0.Add(2 * time.Second), Metadata: map[string]string{"k": "v"}})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Run
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("round trip changed the run:\n got %+v\nwant %+v", back, r)
	}
	if w1, _ := r.NextWakeup(); !w1.Equal(t0.Add(62 * time.Second)) {
		t.Errorf("wakeup = %s", w1)
	}
}

func TestSummary(t *testing.T) {
	r := newRun(t, spec.AnalysisRunSpec{
		Metrics: []spec.Metric{metric("a"), metric("b"), metric("dry")},
		DryRun:  []spec.DryRun{{MetricName: "dry"}},
	})
	r = Record(r, "dry", measured(0, F))
	r = Record(r, "a", measured(1, S))
	r = Record(r, "b", measured(2, I))
	got := r.Summary()
	if got.Name != "run" || got.Phase != "Inconclusive" || got.Successful != 1 || got.Inconclusive != 1 || got.Failed != 0 || got.Error != 0 {
		t.Fatalf("summary = %+v", got)
	}
	if !strings.Contains(got.Message, `metric "b" assessed Inconclusive`) {
		t.Errorf("message = %q", got.Message)
	}
}
