package graphite

import (
	"context"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/graphitetest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// TestRealGraphite measures through a real graphite-web over whisper
// files: the shapes the fake serves (TestMeasure) are the ones Graphite
// sends, and Graphite's own functions, errors and infinities come out as
// the provider says.
func TestRealGraphite(t *testing.T) {
	start := time.Now()
	address := graphitetest.Real(t, []graphitetest.Series{
		{Target: "app.ok.rate", Values: []any{0.5, 0.75, 1.0}},
		{Target: "app.gaps.rate", Values: []any{nil, 2.0, nil, 4.0}},
		{Target: "app.nulls.rate", Values: []any{nil, nil, nil}},
		{Target: "app.several.b", Values: []any{9.0}},
		{Target: "app.several.a", Values: []any{1.0}},
		{Target: argoDocsSeries + "SUCCESS.status.200.uri.root.count", Values: []any{95.0, 95.0, 95.0}},
		{Target: argoDocsSeries + "SERVER_ERROR.status.500.uri.root.count", Values: []any{5.0, 5.0, 5.0}},
	})
	t.Logf("graphite-web started in %s", time.Since(start).Round(time.Millisecond))
	p := newProvider(t, Config{})
	inf := math.Inf(1)
	tests := []struct {
		name       string
		query      string
		wantResult []float64
		wantTarget string
		wantSeries string
		wantError  string // a prefix of the message
	}{
		{"one series", "target=app.ok.rate&from=-10min", []float64{0.5, 0.75, 1}, "app.ok.rate", "1", ""},
		{"nulls left out", "target=app.gaps.rate&from=-10min", []float64{2, 4}, "app.gaps.rate", "1", ""},
		{"several series: the first, in Graphite's order", "target=app.several.*&from=-10min", []float64{1}, "app.several.a", "2", ""},
		{"a function", "target=sumSeries(app.several.*)&from=-10min", []float64{10}, "sumSeries(app.several.*)", "1", ""},
		{"over several lines, as Argo's docs write it", "target=asPercent(\n    app.several.a,\n    sumSeries(app.several.*)\n  )\n  &from=-10min", []float64{10}, "", "1", ""},
		{"infinity", "target=scale(app.ok.rate,1e400)&from=-10min", []float64{inf, inf, inf}, "", "1", ""},
		{"all nulls", "target=app.nulls.rate&from=-10min", nil, "", "", "no values found: the "},
		{"unknown metric", "target=app.unknown&from=-10min", nil, "", "", "no values found: graphite returned no series"},
		{"unknown function", "target=nosuchfunc(app.ok.rate)&from=-10min", nil, "", "",
			`graphite answered 400 Bad Request: Invalid parameters (Received request for unknown function: nosuchfunc); targets: "nosuchfunc(app.ok.rate)"`},
		{"a function that raises", "target=scale(app.ok.rate,'x')&from=-10min", nil, "", "",
			"graphite answered 500 Internal Server Error: ValueError: could not convert string to float: 'x'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: graphiteMetric(address, tc.query)})
			if tc.wantError != "" {
				if m.Phase != spec.AnalysisPhaseError || !strings.HasPrefix(m.Message, tc.wantError) {
					t.Fatalf("got phase %q message %q, want Error %q...", m.Phase, m.Message, tc.wantError)
				}
				return
			}
			if m.Phase != "" {
				t.Fatalf("phase %q: %s", m.Phase, m.Message)
			}
			if !reflect.DeepEqual(m.Result, tc.wantResult) {
				t.Errorf("result = %#v, want %#v", m.Result, tc.wantResult)
			}
			if tc.wantTarget != "" && m.Metadata[MetadataTarget] != tc.wantTarget {
				t.Errorf("target = %q, want %q", m.Metadata[MetadataTarget], tc.wantTarget)
			}
			if m.Metadata[MetadataSeries] != tc.wantSeries {
				t.Errorf("series = %q, want %q", m.Metadata[MetadataSeries], tc.wantSeries)
			}
		})
	}

	t.Run("Argo's documented template", func(t *testing.T) {
		metric := graphiteMetric(address, argoDocsQuery)
		metric.SuccessCondition = "result[0] >= 90.000000" // Argo's docs write results[0], which neither evaluates
		m := analysis.Judge(metric, p.Measure(context.Background(), metrics.Request{Metric: metric}))
		if m.Phase != spec.AnalysisPhaseSuccessful {
			t.Fatalf("phase %q (%s), value %s", m.Phase, m.Message, m.Value)
		}
		values := m.Result.([]float64)
		for _, v := range values {
			if math.Abs(v-95) > 1e-9 {
				t.Errorf("result %v, want 95 in each 5min bucket with data", values)
			}
		}
	})

	t.Run("missing data never passes a condition", func(t *testing.T) {
		for _, q := range []string{"target=app.nulls.rate&from=-10min", "target=app.unknown&from=-10min"} {
			metric := graphiteMetric(address, q)
			metric.SuccessCondition = "all(result, {# < 0.05})"
			if m := analysis.Judge(metric, p.Measure(context.Background(), metrics.Request{Metric: metric})); m.Phase != spec.AnalysisPhaseError {
				t.Errorf("%s: phase %q (%s), want Error", q, m.Phase, m.Message)
			}
		}
	})
	t.Logf("graphite-web started and measured in %s", time.Since(start).Round(time.Millisecond))
}

// argoDocsQuery is the query of the graphite example in Argo Rollouts'
// docs (docs/analysis/graphite.md), with checkout as its service-name: a
// success percentage summarized in 5-minute buckets over Graphite's default
// window, the last 24 hours.
const argoDocsQuery = `target=summarize(
  asPercent(
    sumSeries(
      stats.timers.httpServerRequests.app.checkout.exception.*.method.*.outcome.{CLIENT_ERROR,INFORMATIONAL,REDIRECTION,SUCCESS}.status.*.uri.*.count
    ),
    sumSeries(
      stats.timers.httpServerRequests.app.checkout.exception.*.method.*.outcome.*.status.*.uri.*.count
    )
  ),
  '5min',
  'avg'
)
`

// argoDocsSeries is the prefix of the series argoDocsQuery reads, up to
// the outcome.
const argoDocsSeries = "stats.timers.httpServerRequests.app.checkout.exception.None.method.GET.outcome."
