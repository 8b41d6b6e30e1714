package datadog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/datadogtest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/datadog"
)

// now is the provider's clock in these tests: the queried window ends here.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newProvider(t *testing.T) *datadog.Provider {
	t.Helper()
	p, err := datadog.New(datadog.Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// secrets is a Secret store: "name/key" to value. A missing key errors as
// the analyzer's local store does, naming the variable to set.
type secrets map[string]string

func (s secrets) read(_ context.Context, name, key string) (string, error) {
	if v, ok := s[name+"/"+key]; ok {
		return v, nil
	}
	env := strings.Map(func(r rune) rune {
		if ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, strings.ToUpper("SLUICE_SECRET_"+name+"_"+key))
	return "", fmt.Errorf("secret %q key %q (set %s): %w", name, key, env, metrics.ErrSecretNotFound)
}

// keysFor is the Secret "datadog" that points the provider at srv.
func keysFor(srv *datadogtest.Server) secrets {
	return secrets{"datadog/api-key": srv.APIKey, "datadog/app-key": srv.AppKey, "datadog/address": srv.URL}
}

func request(metric spec.Metric, s secrets) metrics.Request {
	return metrics.Request{Metric: metric, Namespace: "shop", Rollout: "checkout", Run: "run-1", ID: "run-1.m.1", Secret: s.read, Setting: s.read}
}

func metric(dd spec.DatadogMetric) spec.Metric {
	return spec.Metric{Name: "error-rate", Provider: spec.MetricProvider{Datadog: &dd}}
}

func f(v float64) *float64 { return datadogtest.Float(v) }

func TestMeasure(t *testing.T) {
	to := now.Unix()
	tests := []struct {
		name   string
		dd     spec.DatadogMetric
		answer datadogtest.Answer
		// keys changes the Secret the provider reads.
		keys func(s secrets)

		wantPhase  spec.AnalysisPhase
		wantResult any
		wantValue  string
		wantMsg    string // substring of the message
		wantQuery  string
		// check looks at the one request the server received.
		check func(t *testing.T, r datadogtest.Request)
	}{
		{
			name:       "v1: the last point of the first series",
			dd:         spec.DatadogMetric{Query: "avg:errors{service:checkout}"},
			answer:     datadogtest.Answer{Series: []datadogtest.Series{{Metric: "errors", Values: []*float64{f(0.002), f(0.0003)}}, {Values: []*float64{f(9)}}}},
			wantResult: 0.0003, wantValue: "0.0003", wantQuery: "avg:errors{service:checkout}",
			check: func(t *testing.T, r datadogtest.Request) {
				if r.Method != http.MethodGet || r.Path != datadogtest.PathV1 || r.Query != "avg:errors{service:checkout}" || r.To != to || r.From != to-300 {
					t.Errorf("request = %+v; want GET %s over the 5m before %d", r, datadogtest.PathV1, to)
				}
			},
		},
		{
			name:       "v1 explicitly, interval 10m",
			dd:         spec.DatadogMetric{ApiVersion: "v1", Interval: "10m", Query: "sum:errors{*}"},
			answer:     datadogtest.Answer{Series: []datadogtest.Series{{Values: []*float64{f(3)}}}},
			wantResult: 3.0, wantValue: "3",
			check: func(t *testing.T, r datadogtest.Request) {
				if r.From != to-600 || r.To != to {
					t.Errorf("from, to = %d, %d; want %d, %d", r.From, r.To, to-600, to)
				}
			},
		},
		{
			name:       "v1: no series is no data",
			dd:         spec.DatadogMetric{Query: "avg:errors{*}"},
			wantResult: nil, wantValue: "[]",
		},
		{
			name:       "v1: a series without points is no data",
			dd:         spec.DatadogMetric{Query: "avg:errors{*}"},
			answer:     datadogtest.Answer{Series: []datadogtest.Series{{Metric: "errors"}}},
			wantResult: nil, wantValue: "[]",
		},
		{
			name:       "v1: a null last point is no data, not zero",
			dd:         spec.DatadogMetric{Query: "avg:errors{*}"},
			answer:     datadogtest.Answer{Series: []datadogtest.Series{{Values: []*float64{f(0.5), nil}}}},
			wantResult: nil, wantValue: "null",
		},
		{
			name:      "v1: a query error in a 200 answer",
			dd:        spec.DatadogMetric{Query: "avg:errors{"},
			answer:    datadogtest.Answer{QueryError: "Error parsing query: unexpected end"},
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog could not run the query: Error parsing query: unexpected end",
		},
		{
			name:       "v2: query is the one query named query, aggregator last",
			dd:         spec.DatadogMetric{ApiVersion: "v2", Query: "avg:latency{*}"},
			answer:     datadogtest.Answer{Columns: []datadogtest.Column{{Name: "query", Values: []*float64{f(0.25)}}}},
			wantResult: 0.25, wantValue: "0.25", wantQuery: "query=avg:latency{*}",
			check: func(t *testing.T, r datadogtest.Request) {
				a := r.Scalar.Data.Attributes
				if r.Method != http.MethodPost || r.Path != datadogtest.PathV2 || a.From != (to-300)*1000 || a.To != to*1000 {
					t.Errorf("request = %s %s from %d to %d; want POST %s over the 5m before %d, in ms", r.Method, r.Path, a.From, a.To, datadogtest.PathV2, to)
				}
				want := []datadogtest.ScalarQuery{{DataSource: "metrics", Name: "query", Query: "avg:latency{*}", Aggregator: "last"}}
				if fmt.Sprint(a.Queries) != fmt.Sprint(want) || len(a.Formulas) != 0 {
					t.Errorf("queries, formulas = %v, %v; want %v and none", a.Queries, a.Formulas, want)
				}
			},
		},
		{
			name: "v2: queries, formula and aggregator",
			dd: spec.DatadogMetric{ApiVersion: "v2", Interval: "2m", Aggregator: "avg", Formula: "errors / requests",
				Queries: map[string]string{"requests": "sum:requests{*}.as_count()", "errors": "sum:errors{*}.as_count()"}},
			answer:     datadogtest.Answer{Columns: []datadogtest.Column{{Name: "errors / requests", Values: []*float64{f(0.01)}}}},
			wantResult: 0.01, wantValue: "0.01",
			wantQuery: "errors / requests; errors=sum:errors{*}.as_count(); requests=sum:requests{*}.as_count()",
			check: func(t *testing.T, r datadogtest.Request) {
				a := r.Scalar.Data.Attributes
				want := []datadogtest.ScalarQuery{
					{DataSource: "metrics", Name: "errors", Query: "sum:errors{*}.as_count()", Aggregator: "avg"},
					{DataSource: "metrics", Name: "requests", Query: "sum:requests{*}.as_count()", Aggregator: "avg"},
				}
				if fmt.Sprint(a.Queries) != fmt.Sprint(want) || len(a.Formulas) != 1 || a.Formulas[0].Formula != "errors / requests" || a.From != (to-120)*1000 {
					t.Errorf("attributes = %+v; want queries %v, formula errors / requests, from 2m before", a, want)
				}
			},
		},
		{
			name: "v2: a group column is skipped for the first number column",
			dd:   spec.DatadogMetric{ApiVersion: "v2", Query: "avg:latency{*} by {host}"},
			answer: datadogtest.Answer{Columns: []datadogtest.Column{
				{Name: "host", Type: "group", Groups: [][]string{{"host:a"}, {"host:b"}}},
				{Name: "query", Values: []*float64{f(7), f(8)}},
			}},
			wantResult: 7.0, wantValue: "7",
		},
		{
			name:       "v2: a null first value is no data",
			dd:         spec.DatadogMetric{ApiVersion: "v2", Query: "avg:latency{*}"},
			answer:     datadogtest.Answer{Columns: []datadogtest.Column{{Name: "query", Values: []*float64{nil, f(1)}}}},
			wantResult: nil, wantValue: "[null,1]",
		},
		{
			name:       "v2: no column is no data",
			dd:         spec.DatadogMetric{ApiVersion: "v2", Query: "avg:latency{*}"},
			wantResult: nil, wantValue: "[]",
		},
		{
			name:      "v2: query errors in a 200 answer",
			dd:        spec.DatadogMetric{ApiVersion: "v2", Query: "avg:latency{*}"},
			answer:    datadogtest.Answer{QueryError: "Unknown function 'foo'"},
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog could not run the query: Unknown function 'foo'",
		},
		{
			name:      "400 with Datadog's errors",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}"},
			answer:    datadogtest.Answer{Status: 400, Errors: []string{"Rollup interval too small", "Query too long"}},
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog answered 400 Bad Request: Rollup interval too small; Query too long",
		},
		{
			name:      "wrong keys: 403",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}"},
			keys:      func(s secrets) { s["datadog/app-key"] = "not-the-app-key" },
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog refused the API or application key (403 Forbidden): Forbidden",
		},
		{
			name:      "429 says when the limit resets",
			dd:        spec.DatadogMetric{ApiVersion: "v2", Query: "avg:latency{*}"},
			answer:    datadogtest.Answer{Status: 429, Errors: []string{"Too many requests"}, RateLimitReset: 17},
			wantPhase: spec.AnalysisPhaseError,
			wantMsg:   "datadog rate limit reached (429 Too Many Requests); the limit resets in 17s (100 requests per 60s for query_metrics): Too many requests",
		},
		{
			name:      "500 with Datadog's message",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}"},
			answer:    datadogtest.Answer{Status: 500, Errors: []string{"Internal error, please retry"}},
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog answered 500 Internal Server Error: Internal error, please retry",
		},
		{
			name:      "502 from a proxy, trimmed to one line",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}"},
			answer:    datadogtest.Answer{Status: 502, Raw: "<html>\n  <body>Bad   gateway</body>\n</html>" + strings.Repeat("x", 1000)},
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog answered 502 Bad Gateway: <html> <body>Bad gateway</body> </html>xxx",
		},
		{
			name:      "a 200 that is not JSON",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}"},
			answer:    datadogtest.Answer{Raw: "maintenance"},
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog response is not a v1 query response",
		},
		{
			name:      "requestTimeout bounds a slow answer",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}", RequestTimeout: "100ms"},
			answer:    datadogtest.Answer{Hang: true},
			wantPhase: spec.AnalysisPhaseError, wantMsg: "datadog request timed out after 100ms",
		},
		{
			name:      "a missing key says what to set",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}"},
			keys:      func(s secrets) { delete(s, "datadog/api-key") },
			wantPhase: spec.AnalysisPhaseError, wantMsg: `datadog api-key: secret "datadog" key "api-key" (set SLUICE_SECRET_DATADOG_API_KEY): secret not found`,
		},
		{
			name:      "secretRef names the Secret",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}", SecretRef: spec.SecretRef{Name: "dd-prod"}},
			wantPhase: spec.AnalysisPhaseError, wantMsg: `secret "dd-prod" key "api-key" (set SLUICE_SECRET_DD_PROD_API_KEY)`,
		},
		{
			name:       "an address with a trailing slash",
			dd:         spec.DatadogMetric{Query: "avg:errors{*}"},
			keys:       func(s secrets) { s["datadog/address"] += "/" },
			answer:     datadogtest.Answer{Series: []datadogtest.Series{{Values: []*float64{f(1)}}}},
			wantResult: 1.0, wantValue: "1",
		},
		{
			name:      "an address that is not an http URL",
			dd:        spec.DatadogMetric{Query: "avg:errors{*}"},
			keys:      func(s secrets) { s["datadog/address"] = "api.datadoghq.eu" },
			wantPhase: spec.AnalysisPhaseError, wantMsg: `datadog address: key "address" of secret "datadog" must be an http or https URL`,
		},
		{
			name:      "an argument that substituted a bad apiVersion",
			dd:        spec.DatadogMetric{ApiVersion: "v3", Query: "avg:errors{*}"},
			wantPhase: spec.AnalysisPhaseError, wantMsg: `apiVersion "v3" is not supported`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := datadogtest.Start(t, "", "")
			srv.Answer(tc.answer)
			s := keysFor(srv)
			if tc.keys != nil {
				tc.keys(s)
			}
			m := newProvider(t).Measure(context.Background(), request(metric(tc.dd), s))

			if m.Phase != tc.wantPhase || !strings.Contains(m.Message, tc.wantMsg) {
				t.Fatalf("phase, message = %q, %q; want %q, containing %q", m.Phase, m.Message, tc.wantPhase, tc.wantMsg)
			}
			if m.Provider != datadog.Type {
				t.Errorf("provider = %q", m.Provider)
			}
			if tc.wantPhase == "" {
				if m.Result != tc.wantResult || m.Value != tc.wantValue {
					t.Errorf("result, value = %#v, %q; want %#v, %q", m.Result, m.Value, tc.wantResult, tc.wantValue)
				}
			}
			if tc.wantQuery != "" && m.Query != tc.wantQuery {
				t.Errorf("query = %q; want %q", m.Query, tc.wantQuery)
			}
			if tc.check != nil {
				reqs := srv.Requests()
				if len(reqs) != 1 {
					t.Fatalf("server received %d well-formed queries; want 1", len(reqs))
				}
				tc.check(t, reqs[0])
			}
		})
	}
}

// TestCancelledIsNotATimeout: a measurement cut short by the analyzer
// (shutting down) does not claim that Datadog was slow.
func TestCancelledIsNotATimeout(t *testing.T) {
	srv := datadogtest.Start(t, "", "")
	srv.Answer(datadogtest.Answer{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan metrics.Measurement)
	go func() {
		done <- newProvider(t).Measure(ctx, request(metric(spec.DatadogMetric{Query: "avg:errors{*}"}), keysFor(srv)))
	}()
	poll.True(t, "the request to reach the server", func() bool { return len(srv.Requests()) > 0 })
	cancel()
	m := <-done
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "cancelled") || strings.Contains(m.Message, "timed out") {
		t.Errorf("phase, message = %q, %q; want an Error saying it was cancelled", m.Phase, m.Message)
	}
}

// TestNoDataNeverPasses judges the measurements of missing data with the
// conditions a template would use: only a condition that says so lets
// them pass.
func TestNoDataNeverPasses(t *testing.T) {
	answers := map[string]datadogtest.Answer{
		"v1 no series":  {},
		"v1 null point": {Series: []datadogtest.Series{{Values: []*float64{f(0), nil}}}},
		"v2 null value": {Columns: []datadogtest.Column{{Name: "query", Values: []*float64{nil}}}},
	}
	conditions := []struct {
		success, failure string
		want             spec.AnalysisPhase
	}{
		{success: "result < 0.01", want: spec.AnalysisPhaseError},
		{failure: "result >= 0.01", want: spec.AnalysisPhaseError},
		{success: "result <= 0.01", failure: "result > 0.01", want: spec.AnalysisPhaseError},
		{success: "default(result, 0) < 0.01", want: spec.AnalysisPhaseSuccessful},
		{success: "default(result, 1) < 0.01", want: spec.AnalysisPhaseFailed},
	}
	for name, answer := range answers {
		for _, c := range conditions {
			t.Run(fmt.Sprintf("%s/%s%s", name, c.success, c.failure), func(t *testing.T) {
				srv := datadogtest.Start(t, "", "")
				srv.Answer(answer)
				dd := spec.DatadogMetric{Query: "avg:errors{*}"}
				if strings.HasPrefix(name, "v2") {
					dd.ApiVersion = "v2"
				}
				mt := metric(dd)
				mt.SuccessCondition, mt.FailureCondition = c.success, c.failure
				m := newProvider(t).Measure(context.Background(), request(mt, keysFor(srv)))
				if m.Phase != "" {
					t.Fatalf("measurement = %q %q; want a value for the conditions", m.Phase, m.Message)
				}
				got := analysis.Judge(mt, m)
				if got.Phase != c.want {
					t.Errorf("judged %q (%s); want %q", got.Phase, got.Message, c.want)
				}
			})
		}
	}
}

// TestKeysNeverInMeasurement has the server echo both keys in its error
// bodies: no field of the measurement may carry them.
func TestKeysNeverInMeasurement(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dd     spec.DatadogMetric
		answer datadogtest.Answer
	}{
		{"v1 400", spec.DatadogMetric{Query: "avg:errors{*}"}, datadogtest.Answer{Status: 400, EchoKeys: true}},
		{"v2 403", spec.DatadogMetric{ApiVersion: "v2", Query: "avg:errors{*}"}, datadogtest.Answer{Status: 403, EchoKeys: true}},
		{"v2 429", spec.DatadogMetric{ApiVersion: "v2", Query: "avg:errors{*}"}, datadogtest.Answer{Status: 429, RateLimitReset: 3, EchoKeys: true}},
		{"v1 500", spec.DatadogMetric{Query: "avg:errors{*}"}, datadogtest.Answer{Status: 500, EchoKeys: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := datadogtest.Start(t, "", "")
			srv.Answer(tc.answer)
			m := newProvider(t).Measure(context.Background(), request(metric(tc.dd), keysFor(srv)))
			if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, metrics.Redaction) {
				t.Fatalf("phase, message = %q, %q; want an Error whose echoed keys are redacted", m.Phase, m.Message)
			}
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			all := string(data) + fmt.Sprint(m.Result)
			for _, key := range []string{srv.APIKey, srv.AppKey} {
				if strings.Contains(all, key) {
					t.Errorf("the measurement holds a key: %s", all)
				}
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	p := newProvider(t)
	for _, tc := range []struct {
		timeout spec.DurationString
		want    time.Duration
	}{
		{"", datadog.DefaultRequestTimeout},
		{"30s", 30 * time.Second},
		{"{{args.timeout}}", datadog.DefaultRequestTimeout},
		{"0s", datadog.DefaultRequestTimeout},
	} {
		if got := p.Timeout(metric(spec.DatadogMetric{RequestTimeout: tc.timeout})); got != tc.want {
			t.Errorf("Timeout(requestTimeout %q) = %s; want %s", tc.timeout, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	p := newProvider(t)
	for _, tc := range []struct {
		name    string
		dd      *spec.DatadogMetric
		wantErr string
	}{
		{"v1 query", &spec.DatadogMetric{Query: "avg:errors{*}"}, ""},
		{"v2 queries", &spec.DatadogMetric{ApiVersion: "v2", Queries: map[string]string{"a": "x", "b": "y"}, Formula: "a/b"}, ""},
		{"placeholders wait for the run", &spec.DatadogMetric{ApiVersion: "{{args.v}}", Query: "avg:errors{*}"}, ""},
		{"no block", nil, "no datadog provider"},
		{"no query", &spec.DatadogMetric{}, "no query"},
		{"queries on v1", &spec.DatadogMetric{Queries: map[string]string{"a": "x"}}, "queries need apiVersion v2"},
		{"several queries, no formula", &spec.DatadogMetric{ApiVersion: "v2", Queries: map[string]string{"a": "x", "b": "y"}}, "several queries need a formula"},
		{"bad aggregator", &spec.DatadogMetric{ApiVersion: "v2", Query: "x", Aggregator: "median"}, `aggregator "median"`},
		{"zero interval", &spec.DatadogMetric{Query: "x", Interval: "0s"}, `interval "0s" must be greater than 0`},
		{"sub-second interval", &spec.DatadogMetric{Query: "x", Interval: "500ms"}, `interval "500ms" must be at least 1s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(spec.Metric{Provider: spec.MetricProvider{Datadog: tc.dd}})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check = %v; want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Check = %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestDocsTemplateIsTested: the template docs/providers/datadog.md offers
// to copy is the one pkg/spec's testdata validates.
func TestDocsTemplateIsTested(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/providers/datadog.md")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile("../../../../pkg/spec/testdata/valid-analysistemplate-datadog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(tmpl)+"```\n") {
		t.Error("docs/providers/datadog.md does not hold pkg/spec/testdata/valid-analysistemplate-datadog.yaml as a yaml block; copy it over")
	}
}
