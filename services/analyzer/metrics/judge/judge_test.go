package judge_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/datadogtest"
	"github.com/sluicehq/sluice/services/analyzer/internal/promtest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/datadog"
	"github.com/sluicehq/sluice/services/analyzer/metrics/judge"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
	"github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
)

// The Prometheus of these tests is promtest's: the real PromQL engine over
// request-duration histograms scraped every 5s for ten minutes.
var (
	epoch  = time.Unix(1_700_000_000, 0).UTC()
	scrape = 5 * time.Second
	now    = epoch.Add(10 * time.Minute)
)

// buckets are the histogram's upper bounds, +Inf last.
var buckets = []float64{0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, math.Inf(1)}

// histogram is the cumulative bucket counters of revision's requests: 20
// per scrape interval, each lasting median × a log-normal factor.
func histogram(seed uint64, revision string, median float64) []promtest.Series {
	r := rand.New(rand.NewPCG(seed, 0))
	steps := int(now.Sub(epoch)/scrape) + 1
	counts := make([][]float64, len(buckets))
	for b := range counts {
		counts[b] = make([]float64, steps)
	}
	total := make([]float64, len(buckets))
	for s := range steps {
		for range 20 {
			d := median * math.Exp(0.3*r.NormFloat64())
			for b, le := range buckets {
				if d <= le {
					total[b]++
				}
			}
		}
		for b := range buckets {
			counts[b][s] = total[b]
		}
	}
	out := make([]promtest.Series, len(buckets))
	for b, le := range buckets {
		out[b] = promtest.Series{
			Labels: map[string]string{"__name__": "request_duration_seconds_bucket", "revision": revision, "le": strconv.FormatFloat(le, 'g', -1, 64)},
			Values: counts[b],
		}
	}
	return out
}

// judgeOver is a judge measuring with inner, at now.
func judgeOver(t *testing.T, inner metrics.Provider) *judge.Provider {
	t.Helper()
	numeric, err := metrics.NewRegistry(inner)
	if err != nil {
		t.Fatal(err)
	}
	j, err := judge.New(judge.Config{Providers: numeric, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// registry is the analyzer's wiring of the judge: the prometheus provider
// measures for it, and the plugin provider hands sluice/judge to it.
func registry(t *testing.T) *metrics.Registry {
	t.Helper()
	prom, err := prometheus.New(prometheus.Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	j := judgeOver(t, prom)
	pl, err := plugin.New(plugin.Config{Builtin: []metrics.Provider{j}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := metrics.NewRegistry(prom, pl)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

const latencyQuery = `histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket{revision="{{judge.revision}}"}[15s])))`

// judgeMetric is a template's judge metric over address, as YAML would
// give it: p90 latency over the last five minutes, one value per 15s.
func judgeMetric(t *testing.T, address, query string, edit func(*spec.Judge)) spec.Metric {
	t.Helper()
	j := spec.Judge{
		Baseline: "base",
		Canary:   "cand",
		Metrics: []spec.JudgeMetric{{
			Name: "latency-p90", Direction: spec.JudgeIncrease, Tolerance: ptr(0.10), Critical: true, MustHaveData: true,
			Provider: spec.MetricProvider{Prometheus: &spec.PrometheusMetric{
				Address:    address,
				Query:      query,
				RangeQuery: &spec.PrometheusRangeQueryArgs{Start: `now() - duration("5m")`, End: "now()", Step: "15s"},
			}},
		}},
	}
	if edit != nil {
		edit(&j)
	}
	raw, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	return spec.Metric{
		Name:             "judge",
		SuccessCondition: "result >= 90",
		Provider:         spec.MetricProvider{Plugin: map[string]json.RawMessage{spec.JudgePlugin: raw}},
	}
}

func ptr[T any](v T) *T { return &v }

// says checks that msg says each of want.
func says(t *testing.T, msg string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q does not say %q", msg, w)
		}
	}
}

// measure takes one measurement of metric as the analyzer does: the
// registry's provider for it, then the metric's conditions.
func measure(t *testing.T, reg *metrics.Registry, metric spec.Metric) metrics.Measurement {
	t.Helper()
	if err := reg.Check(metric); err != nil {
		t.Fatalf("Check: %v", err)
	}
	p, err := reg.Provider(metric)
	if err != nil {
		t.Fatal(err)
	}
	m := p.Measure(context.Background(), metrics.Request{Metric: metric, Namespace: "shop", Rollout: "web", Run: "run", ID: "run.judge.1"})
	return analysis.Judge(metric, m)
}

func TestJudgeAgainstPromQL(t *testing.T) {
	var data []promtest.Series
	data = append(data, histogram(1, "base", 0.1)...)
	data = append(data, histogram(2, "same", 0.1)...)
	data = append(data, histogram(3, "slow", 0.3)...)
	srv := promtest.Start(t, data, promtest.Options{Epoch: epoch, Step: scrape})
	reg := registry(t)

	for _, tc := range []struct {
		name      string
		canary    string
		wantPhase spec.AnalysisPhase
		wantScore float64
		want      []string // in the message
	}{
		{
			name: "a canary 3x as slow fails", canary: "slow",
			wantPhase: spec.AnalysisPhaseFailed, wantScore: 0,
			want: []string{"score 0: latency-p90 FAIL critical", "n=21/21"},
		},
		{
			name: "an equal canary scores 100", canary: "same",
			wantPhase: spec.AnalysisPhaseSuccessful, wantScore: 100,
			want: []string{"score 100: latency-p90 PASS critical", "n=21/21"},
		},
		{
			name: "a canary without series fails with mustHaveData", canary: "missing",
			wantPhase: spec.AnalysisPhaseFailed, wantScore: 0,
			want: []string{"score 0: latency-p90 FAIL critical no data n=21/0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metric := judgeMetric(t, srv.URL, latencyQuery, func(j *spec.Judge) { j.Canary = tc.canary })
			m := measure(t, reg, metric)
			if m.Phase != tc.wantPhase || m.Result != tc.wantScore || m.Value != strconv.FormatFloat(tc.wantScore, 'g', 3, 64) {
				t.Fatalf("phase %s, result %v, value %q (%s); want %s with score %g", m.Phase, m.Result, m.Value, m.Message, tc.wantPhase, tc.wantScore)
			}
			if m.Provider != judge.Type {
				t.Errorf("provider = %q, want %q", m.Provider, judge.Type)
			}
			says(t, m.Message, tc.want...)
		})
	}
}

// TestJudgeCannotSay: what the judge cannot decide is an Error that names
// the metric and what to change, never a score.
func TestJudgeCannotSay(t *testing.T) {
	data := append(histogram(1, "base", 0.1), histogram(3, "slow", 0.3)...)
	srv := promtest.Start(t, data, promtest.Options{Epoch: epoch, Step: scrape})
	reg := registry(t)
	for _, tc := range []struct {
		name   string
		metric spec.Metric
		want   []string
	}{
		{
			name: "too few values",
			metric: judgeMetric(t, srv.URL, latencyQuery, func(j *spec.Judge) {
				j.Canary = "slow"
				j.Metrics[0].Provider.Prometheus.RangeQuery.Start = `now() - duration("15s")`
			}),
			want: []string{"metric latency-p90: too few samples: 2 baseline and 2 canary values", "at least 3"},
		},
		{
			name: "no metric has data",
			metric: judgeMetric(t, srv.URL, latencyQuery, func(j *spec.Judge) {
				j.Canary = "missing"
				j.Metrics[0].MustHaveData = false
			}),
			want: []string{"no metric had data: latency-p90"},
		},
		{
			name: "NaN values",
			metric: judgeMetric(t, srv.URL, `histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket{revision="{{judge.revision}}"}[15s]))) * 0 / 0`, func(j *spec.Judge) {
				j.Canary = "slow"
			}),
			want: []string{"metric latency-p90: sample holds NaN or an infinity: 21 of the baseline's 21 values", ">= 0"},
		},
		{
			name: "the query fails",
			metric: judgeMetric(t, srv.URL, `sum(rate(x{revision="{{judge.revision}}"}[1m])`, func(j *spec.Judge) {
				j.Canary = "slow"
			}),
			want: []string{"metric latency-p90, baseline (base): prometheus bad_data error", "metric latency-p90, canary (slow)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := measure(t, reg, tc.metric)
			if m.Phase != spec.AnalysisPhaseError || m.Value != "" {
				t.Fatalf("phase %s, value %q (%s); want Error without a score", m.Phase, m.Value, m.Message)
			}
			says(t, m.Message, tc.want...)
		})
	}
}

// TestJudgeSameWindow: both revisions are measured at the judge's one
// instant, whatever time passes between the two queries.
func TestJudgeSameWindow(t *testing.T) {
	data := append(histogram(1, "base", 0.1), histogram(1, "twin", 0.1)...)
	srv := promtest.Start(t, data, promtest.Options{Epoch: epoch, Step: scrape})
	var mu sync.Mutex
	ticks := now
	// A clock that moves a minute at each reading: without Request.At the
	// two range queries would cover different windows.
	prom, err := prometheus.New(prometheus.Config{Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		ticks = ticks.Add(-time.Minute)
		return ticks
	}})
	if err != nil {
		t.Fatal(err)
	}
	j := judgeOver(t, prom)
	metric := judgeMetric(t, srv.URL, latencyQuery, func(j *spec.Judge) { j.Canary = "twin" })
	m := j.Measure(context.Background(), metrics.Request{Metric: metric})
	if m.Phase != "" || m.Result != 100.0 || !strings.Contains(m.Message, "+0% p=") {
		t.Fatalf("identical series: phase %s, result %v (%s); want score 100 with no change", m.Phase, m.Result, m.Message)
	}
}

// TestJudgeCheck: Check refuses a judge whose metric's provider can never
// measure, before a run starts.
func TestJudgeCheck(t *testing.T) {
	reg := registry(t)
	metric := judgeMetric(t, "http://127.0.0.1:1", latencyQuery, func(j *spec.Judge) {
		j.Metrics[0].Provider.Prometheus.RangeQuery.Step = "often"
	})
	err := reg.Check(metric)
	if err == nil || !strings.Contains(err.Error(), `metric "judge/latency-p90": rangeQuery.step`) || !strings.Contains(err.Error(), "rangeQuery.step") {
		t.Fatalf("Check = %v, want the judge metric and its bad step named", err)
	}
	if got := reg.Timeout(metric); got != prometheus.DefaultTimeout+judge.Margin {
		t.Errorf("Timeout = %s, want the prometheus timeout plus the margin", got)
	}
}

// TestJudgeInnerCredentials: an inner provider reads its credentials
// through the judge's request, as it would outside the judge.
func TestJudgeInnerCredentials(t *testing.T) {
	srv := datadogtest.Start(t, "", "")
	srv.Answer(datadogtest.Answer{Series: []datadogtest.Series{{Metric: "latency", Values: []*float64{datadogtest.Float(0.1)}}}})
	dd, err := datadog.New(datadog.Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	j := judgeOver(t, dd)
	raw, _ := json.Marshal(spec.Judge{Baseline: "base", Canary: "cand", Metrics: []spec.JudgeMetric{{
		Name: "latency", Direction: spec.JudgeIncrease,
		Provider: spec.MetricProvider{Datadog: &spec.DatadogMetric{Query: "avg:latency{revision:{{judge.revision}}}"}},
	}}})
	metric := spec.Metric{Name: "judge", SuccessCondition: "result >= 90", Provider: spec.MetricProvider{Plugin: map[string]json.RawMessage{spec.JudgePlugin: raw}}}
	keys := map[string]string{datadog.KeyAPIKey: datadogtest.DefaultAPIKey, datadog.KeyAppKey: datadogtest.DefaultAppKey, datadog.KeyAddress: srv.URL}
	read := func(_ context.Context, name, key string) (string, error) {
		if name != datadog.DefaultSecret {
			t.Errorf("read secret %q", name)
		}
		return keys[key], nil
	}
	m := j.Measure(context.Background(), metrics.Request{Metric: metric, Secret: read, Setting: read})
	// Datadog answers one value per query (its last point): the keys were
	// accepted, and one value a side is too few to judge.
	if m.Phase != spec.AnalysisPhaseError {
		t.Fatalf("phase %s (%s), want Error", m.Phase, m.Message)
	}
	says(t, m.Message, "metric latency: too few samples: 1 baseline and 1 canary values")
	var queries []string
	for _, r := range srv.Requests() {
		queries = append(queries, r.Query)
	}
	slices.Sort(queries)
	if want := []string{"avg:latency{revision:base}", "avg:latency{revision:cand}"}; !slices.Equal(queries, want) {
		t.Errorf("datadog was asked %q, want %q", queries, want)
	}

	keys[datadog.KeyAPIKey] = "wrong"
	m = j.Measure(context.Background(), metrics.Request{Metric: metric, Secret: read, Setting: read})
	says(t, m.Message, "metric latency, baseline (base): datadog refused the API or application key", "metric latency, canary (cand)")
	if strings.Contains(m.Message, datadogtest.DefaultAppKey) {
		t.Errorf("message %q holds a key", m.Message)
	}
}
