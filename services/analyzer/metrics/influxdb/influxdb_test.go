package influxdb

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/influxdbtest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

const (
	token = "s3cr3t-token-Zq9"
	org   = "acme"
)

// secrets is a profile store: "secret/key" to value, read as the analyzer
// reads the local platform's variables.
type secrets map[string]string

func (s secrets) read(_ context.Context, name, key string) (string, error) {
	if v, ok := s[name+"/"+key]; ok {
		return v, nil
	}
	env := "SLUICE_SECRET_" + strings.ToUpper(strings.NewReplacer("-", "_").Replace(name+"_"+key))
	return "", fmt.Errorf("secret %q key %q: %w: set %s", name, key, metrics.ErrSecretNotFound, env)
}

func profileFor(name, address string) secrets {
	return secrets{name + "/address": address, name + "/org": org, name + "/authToken": token}
}

func request(m *spec.InfluxdbMetric, s secrets) metrics.Request {
	return metrics.Request{
		Metric:    spec.Metric{Name: "error-rate", Provider: spec.MetricProvider{Influxdb: m}},
		Namespace: "shop", Rollout: "web", Run: "web-1", ID: "web-1.error-rate.1",
		Secret: s.read, Setting: s.read,
	}
}

func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func series(typ string, values ...string) influxdbtest.Table {
	return influxdbtest.Series("http", "error_rate", typ, values...)
}

func TestMeasureResults(t *testing.T) {
	srv := influxdbtest.Start(t, influxdbtest.Options{Token: token, Org: org})
	nan, inf := math.NaN(), math.Inf(1)
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		resp       influxdbtest.Response
		wantResult []any
		wantValue  string
		wantError  string
	}{
		{
			name:       "one table of doubles, Argo's example",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("double", "1.0", "6.6")}},
			wantResult: []any{1.0, 6.6},
			wantValue:  "[1 6.6]",
		},
		{
			name:       "two tables: every row of every table, in order",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("double", "0.01"), series("double", "0.5", "0.25")}},
			wantResult: []any{0.01, 0.5, 0.25},
			wantValue:  "[0.01 0.5 0.25]",
		},
		{
			name:       "two results (two yields)",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("double", "1"), func() influxdbtest.Table { t := series("long", "2"); t.Result = "other"; return t }()}},
			wantResult: []any{1.0, int64(2)},
			wantValue:  "[1 2]",
		},
		{
			name:       "long and unsignedLong keep their types",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("long", "10", "-20"), series("unsignedLong", "30")}},
			wantResult: []any{int64(10), int64(-20), uint64(30)},
			wantValue:  "[10 -20 30]",
		},
		{
			name:       "strings and booleans",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("string", "ok", "a,b"), series("boolean", "true", "false")}},
			wantResult: []any{"ok", "a,b", true, false},
			wantValue:  "[ok a,b true false]",
		},
		{
			name:       "times",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("dateTime:RFC3339", "2026-01-01T00:00:00Z")}},
			wantResult: []any{ts},
			wantValue:  "[2026-01-01 00:00:00 +0000 UTC]",
		},
		{
			name:       "NaN and infinities are kept",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("double", "NaN", "+Inf", "-Inf")}},
			wantResult: []any{nan, inf, math.Inf(-1)},
			wantValue:  "[NaN +Inf -Inf]",
		},
		{
			name:       "a null is nil",
			resp:       influxdbtest.Response{Tables: []influxdbtest.Table{series("double", "", "0.5")}},
			wantResult: []any{nil, 0.5},
			wantValue:  "[<nil> 0.5]",
		},
		{
			name:      "a table without rows is no result",
			resp:      influxdbtest.Response{Tables: []influxdbtest.Table{series("double")}},
			wantError: "no results returned from flux query",
		},
		{
			name:      "no table at all is no result",
			resp:      influxdbtest.Response{},
			wantError: "no results returned from flux query",
		},
		{
			name: "an error table after data is an error, not a partial result",
			resp: influxdbtest.Response{
				Tables:      []influxdbtest.Table{series("double", "0.01")},
				StreamError: "panic: runtime error: index out of range",
			},
			wantError: "flux query failed: panic: runtime error: index out of range",
		},
		{
			name:      "an error table alone",
			resp:      influxdbtest.Response{StreamError: `failed to initialize execute state: could not find bucket "nope"`},
			wantError: `flux query failed: failed to initialize execute state: could not find bucket "nope"`,
		},
	}
	p := newProvider(t, Config{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			query := fmt.Sprintf(`from(bucket: "b%d") |> range(start: -5m)`, i)
			srv.Answer(query, tt.resp)
			m := p.Measure(context.Background(), request(&spec.InfluxdbMetric{Query: query}, profileFor(DefaultProfile, srv.URL)))
			assertNoToken(t, m)
			if m.Provider != Type || m.Query != query || m.StartedAt.IsZero() || m.FinishedAt.IsZero() {
				t.Errorf("provider %q, query %q, started %v, finished %v", m.Provider, m.Query, m.StartedAt, m.FinishedAt)
			}
			if tt.wantError != "" {
				if m.Phase != spec.AnalysisPhaseError || m.Message != tt.wantError || m.Value != "" || m.Result != nil {
					t.Fatalf("got phase %q message %q value %q result %v; want Error %q", m.Phase, m.Message, m.Value, m.Result, tt.wantError)
				}
				return
			}
			if m.Phase != "" {
				t.Fatalf("phase %q (%s); want unjudged", m.Phase, m.Message)
			}
			if !sameValues(m.Result, tt.wantResult) {
				t.Errorf("result %#v; want %#v", m.Result, tt.wantResult)
			}
			if m.Value != tt.wantValue {
				t.Errorf("value %q; want %q", m.Value, tt.wantValue)
			}
		})
	}
}

// sameValues compares results, NaN equal to NaN.
func sameValues(got any, want []any) bool {
	g, ok := got.([]any)
	if !ok || len(g) != len(want) {
		return false
	}
	for i := range g {
		gf, gok := g[i].(float64)
		wf, wok := want[i].(float64)
		if gok && wok && math.IsNaN(gf) && math.IsNaN(wf) {
			continue
		}
		if !reflect.DeepEqual(g[i], want[i]) {
			return false
		}
	}
	return true
}

func assertNoToken(t *testing.T, m metrics.Measurement) {
	t.Helper()
	for _, s := range []string{m.Message, m.Value, m.Query, fmt.Sprint(m.Metadata)} {
		if strings.Contains(s, token) {
			t.Fatalf("the token leaked into the measurement: %q", s)
		}
	}
}

func TestMeasureSendsTheQueryAsTheClientDocumentsIt(t *testing.T) {
	srv := influxdbtest.Start(t, influxdbtest.Options{Token: token, Org: org, Gzip: true})
	query := `from(bucket: "app") |> range(start: -5m) |> filter(fn: (r) => r._measurement == "http")`
	srv.Answer(query, influxdbtest.Response{Tables: []influxdbtest.Table{series("double", "0.02")}})
	p := newProvider(t, Config{})
	m := p.Measure(context.Background(), request(&spec.InfluxdbMetric{Query: query}, profileFor(DefaultProfile, srv.URL)))
	if m.Phase != "" || m.Value != "[0.02]" {
		t.Fatalf("phase %q message %q value %q", m.Phase, m.Message, m.Value)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests; want 1", len(reqs))
	}
	got := reqs[0]
	if got.Org != org || got.Query != query {
		t.Errorf("org %q query %q", got.Org, got.Query)
	}
	if want := []string{"datatype", "group", "default"}; !reflect.DeepEqual(got.Dialect.Annotations, want) {
		t.Errorf("dialect annotations %q; want %q", got.Dialect.Annotations, want)
	}
}

func TestMeasureProfile(t *testing.T) {
	srv := influxdbtest.Start(t, influxdbtest.Options{Token: token, Org: org})
	const query = `from(bucket: "app") |> range(start: -1m)`
	srv.Answer(query, influxdbtest.Response{Tables: []influxdbtest.Table{series("double", "1")}})
	tests := []struct {
		name      string
		profile   string
		secrets   secrets
		wantError string
	}{
		{name: "default profile", secrets: profileFor("influxdb", srv.URL)},
		{name: "named profile", profile: "influx-prod", secrets: profileFor("influx-prod", srv.URL)},
		{
			name:    "a named profile does not fall back to the default one",
			profile: "influx-prod", secrets: profileFor("influxdb", srv.URL),
			wantError: `influxdb profile "influx-prod": secret "influx-prod" key "address": secret not found: set SLUICE_SECRET_INFLUX_PROD_ADDRESS; ` +
				`secret "influx-prod" key "org": secret not found: set SLUICE_SECRET_INFLUX_PROD_ORG; ` +
				`secret "influx-prod" key "authToken": secret not found: set SLUICE_SECRET_INFLUX_PROD_AUTHTOKEN`,
		},
		{
			name:      "a missing token",
			secrets:   secrets{"influxdb/address": srv.URL, "influxdb/org": org},
			wantError: `influxdb profile "influxdb": secret "influxdb" key "authToken": secret not found: set SLUICE_SECRET_INFLUXDB_AUTHTOKEN`,
		},
		{
			name:      "an empty org",
			secrets:   secrets{"influxdb/address": srv.URL, "influxdb/org": " ", "influxdb/authToken": token},
			wantError: `influxdb profile "influxdb": secret "influxdb" key "org" is empty`,
		},
		{
			name:      "an address that is not a URL",
			secrets:   secrets{"influxdb/address": "influxdb:8086", "influxdb/org": org, "influxdb/authToken": token},
			wantError: `influxdb profile "influxdb": key "address" must be an http or https URL`,
		},
		{
			name:      "an address with credentials",
			secrets:   secrets{"influxdb/address": "http://admin:" + token + "@influxdb:8086", "influxdb/org": org, "influxdb/authToken": token},
			wantError: `influxdb profile "influxdb": key "address" must not hold credentials; put the token in key "authToken"`,
		},
		{
			name:      "the wrong token is InfluxDB's 401",
			secrets:   secrets{"influxdb/address": srv.URL, "influxdb/org": org, "influxdb/authToken": "not-" + token},
			wantError: "influxdb answered 401 Unauthorized: unauthorized: unauthorized access",
		},
		{
			name:      "the wrong org is InfluxDB's 404",
			secrets:   secrets{"influxdb/address": srv.URL, "influxdb/org": "other", "influxdb/authToken": token},
			wantError: `influxdb answered 404 Not Found: not found: failed to decode request body: organization name "other" not found`,
		},
	}
	p := newProvider(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := p.Measure(context.Background(), request(&spec.InfluxdbMetric{Profile: tt.profile, Query: query}, tt.secrets))
			assertNoToken(t, m)
			if tt.wantError == "" {
				if m.Phase != "" || m.Value != "[1]" {
					t.Fatalf("phase %q message %q value %q; want [1]", m.Phase, m.Message, m.Value)
				}
				return
			}
			if m.Phase != spec.AnalysisPhaseError || m.Message != tt.wantError {
				t.Fatalf("phase %q message %q; want Error %q", m.Phase, m.Message, tt.wantError)
			}
		})
	}
}

func TestMeasureServerErrors(t *testing.T) {
	srv := influxdbtest.Start(t, influxdbtest.Options{Token: token, Org: org})
	tests := []struct {
		name      string
		resp      *influxdbtest.Response
		wantError string
	}{
		{
			name:      "a Flux compilation error",
			wantError: "influxdb answered 400 Bad Request: invalid: compilation failed: error @1:1-1:1: undefined identifier (influxdbtest has no answer for this query)",
		},
		{
			name: "429 with Retry-After",
			resp: &influxdbtest.Response{
				Status: http.StatusTooManyRequests, Code: "too many requests", Message: "org 04014de4ed590000 has exceeded limited_query plan limit",
				Header: http.Header{"Retry-After": {"30"}},
			},
			wantError: "influxdb answered 429 Too Many Requests: too many requests: org 04014de4ed590000 has exceeded limited_query plan limit (Retry-After: 30)",
		},
		{
			name:      "429 with an empty body",
			resp:      &influxdbtest.Response{Status: http.StatusTooManyRequests, Body: " ", ContentType: "text/plain", Header: http.Header{"Retry-After": {"5"}}},
			wantError: "influxdb answered 429 Too Many Requests (Retry-After: 5)",
		},
		{
			name:      "500 with InfluxDB's message",
			resp:      &influxdbtest.Response{Status: http.StatusInternalServerError, Code: "internal error", Message: "unexpected error writing result:\n  disk full"},
			wantError: "influxdb answered 500 Internal Server Error: internal error: unexpected error writing result: disk full",
		},
		{
			name:      "503 from a proxy, as text",
			resp:      &influxdbtest.Response{Status: http.StatusServiceUnavailable, Body: "upstream connect error", ContentType: "text/plain"},
			wantError: "influxdb answered 503 Service Unavailable: upstream connect error",
		},
		{
			name:      "InfluxDB 1.x's error body under the CSV content type",
			resp:      &influxdbtest.Response{Status: http.StatusInternalServerError, Body: `{"error":"failed to evaluate map function: cannot divide by zero"}`, ContentType: "text/csv; charset=utf-8"},
			wantError: "influxdb answered 500 Internal Server Error: failed to evaluate map function: cannot divide by zero",
		},
		{
			name:      "a long HTML page is cut",
			resp:      &influxdbtest.Response{Status: http.StatusBadGateway, Body: "<html>" + strings.Repeat("x", 2000) + "</html>", ContentType: "text/html"},
			wantError: "influxdb answered 502 Bad Gateway: <html>" + strings.Repeat("x", maxMessage-len("<html>")) + "…",
		},
		{
			name:      "a JSON error body that does not decode",
			resp:      &influxdbtest.Response{Status: http.StatusInternalServerError, Body: "{not json", ContentType: "application/json"},
			wantError: "influxdb answered 500 Internal Server Error with an unreadable error body: invalid character 'n' looking for beginning of object key string",
		},
	}
	p := newProvider(t, Config{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			query := fmt.Sprintf(`from(bucket: "e%d") |> range(start: -1m)`, i)
			if tt.resp != nil {
				srv.Answer(query, *tt.resp)
			}
			before := srv.Hits()
			m := p.Measure(context.Background(), request(&spec.InfluxdbMetric{Query: query}, profileFor(DefaultProfile, srv.URL)))
			assertNoToken(t, m)
			if m.Phase != spec.AnalysisPhaseError || m.Message != tt.wantError {
				t.Fatalf("phase %q message %q; want Error %q", m.Phase, m.Message, tt.wantError)
			}
			if n := srv.Hits() - before; n != 1 {
				t.Errorf("%d requests; want 1 (retrying is the metric's limits' job)", n)
			}
		})
	}
}

func TestMeasureUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	_ = ln.Close()
	p := newProvider(t, Config{})
	m := p.Measure(context.Background(), request(&spec.InfluxdbMetric{Query: "buckets()"}, profileFor(DefaultProfile, addr)))
	assertNoToken(t, m)
	if m.Phase != spec.AnalysisPhaseError {
		t.Fatalf("phase %q; want Error", m.Phase)
	}
	want := "POST " + addr + "/api/v2/query: dial tcp"
	if !strings.HasPrefix(m.Message, want) || strings.Contains(m.Message, "org=") {
		t.Fatalf("message %q; want it to start with %q and hold no query string", m.Message, want)
	}
}

func TestMeasureTimeout(t *testing.T) {
	// The server answers nothing until the client hangs up (the server
	// notices once the body is read) or the test ends.
	release := make(chan struct{})
	srv := influxdbtest.Start(t, influxdbtest.Options{Token: token, Org: org, Guard: func(_ http.ResponseWriter, r *http.Request) bool {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	}})
	t.Cleanup(func() { close(release) }) // before the server's Close
	p := newProvider(t, Config{Timeout: 200 * time.Millisecond})
	if got := p.Timeout(spec.Metric{}); got != 200*time.Millisecond {
		t.Fatalf("Timeout %s", got)
	}
	m := p.Measure(context.Background(), request(&spec.InfluxdbMetric{Query: "buckets()"}, profileFor(DefaultProfile, srv.URL)))
	assertNoToken(t, m)
	if m.Phase != spec.AnalysisPhaseError || !strings.HasPrefix(m.Message, "query timed out after 200ms: ") || strings.Contains(m.Message, "org=") {
		t.Fatalf("phase %q message %q; want a timeout Error without the query string", m.Phase, m.Message)
	}
}

func TestDefaults(t *testing.T) {
	p := newProvider(t, Config{})
	if p.Type() != "influxdb" || p.Timeout(spec.Metric{}) != 30*time.Second {
		t.Fatalf("type %q timeout %s", p.Type(), p.Timeout(spec.Metric{}))
	}
	m := p.Measure(context.Background(), metrics.Request{Metric: spec.Metric{Name: "x"}})
	if m.Phase != spec.AnalysisPhaseError || m.Message != `metric "x" has no influxdb provider` {
		t.Fatalf("phase %q message %q", m.Phase, m.Message)
	}
	// A run without Secrets (nil readers) says what to set.
	m = p.Measure(context.Background(), metrics.Request{Metric: spec.Metric{Name: "x", Provider: spec.MetricProvider{Influxdb: &spec.InfluxdbMetric{Query: "q"}}}})
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, `secret "influxdb" key "address": secret not found`) {
		t.Fatalf("phase %q message %q", m.Phase, m.Message)
	}
}

// TestJudgedResults: what the metric's conditions make of each result
// shape. Missing data (no rows, a null, NaN) never makes a successful
// measurement of a condition written for numbers.
func TestJudgedResults(t *testing.T) {
	srv := influxdbtest.Start(t, influxdbtest.Options{Token: token, Org: org})
	tests := []struct {
		name      string
		resp      influxdbtest.Response
		success   string
		failure   string
		wantPhase spec.AnalysisPhase
	}{
		{name: "healthy", resp: respOf("0.001"), success: "result[0] < 0.01", wantPhase: spec.AnalysisPhaseSuccessful},
		{name: "unhealthy", resp: respOf("0.2"), success: "result[0] < 0.01", wantPhase: spec.AnalysisPhaseFailed},
		{name: "every value, Argo's all()", resp: respOf("0.001", "0.002"), success: "all(result, {# < 0.01})", wantPhase: spec.AnalysisPhaseSuccessful},
		{name: "no rows", resp: respOf(), success: "result[0] < 0.01", wantPhase: spec.AnalysisPhaseError},
		{name: "no rows, failure condition only", resp: respOf(), failure: "result[0] > 0.05", wantPhase: spec.AnalysisPhaseError},
		{name: "null, success condition", resp: respOf(""), success: "result[0] < 0.01", wantPhase: spec.AnalysisPhaseError},
		{name: "null, failure condition only", resp: respOf(""), failure: "result[0] > 0.05", wantPhase: spec.AnalysisPhaseError},
		{name: "null guarded with default", resp: respOf(""), success: "default(result[0], 1) < 0.01", wantPhase: spec.AnalysisPhaseFailed},
		{name: "the docs' condition, healthy", resp: respOf("0.001", "0.01"), success: "all(result, {# <= 0.01})", wantPhase: spec.AnalysisPhaseSuccessful},
		{name: "the docs' condition, a null", resp: respOf("0.001", ""), success: "all(result, {# <= 0.01})", wantPhase: spec.AnalysisPhaseError},
		{name: "the docs' condition, NaN", resp: respOf("NaN"), success: "all(result, {# <= 0.01})", wantPhase: spec.AnalysisPhaseFailed},
		{name: "NaN, success condition", resp: respOf("NaN"), success: "result[0] < 0.01", wantPhase: spec.AnalysisPhaseFailed},
		{name: "NaN, failure condition only, guarded", resp: respOf("NaN"), failure: "isNaN(result[0]) || result[0] > 0.05", wantPhase: spec.AnalysisPhaseFailed},
	}
	p := newProvider(t, Config{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			query := fmt.Sprintf(`from(bucket: "j%d") |> range(start: -1m)`, i)
			srv.Answer(query, tt.resp)
			req := request(&spec.InfluxdbMetric{Query: query}, profileFor(DefaultProfile, srv.URL))
			req.Metric.SuccessCondition, req.Metric.FailureCondition = tt.success, tt.failure
			m := analysis.Judge(req.Metric, p.Measure(context.Background(), req))
			if m.Phase != tt.wantPhase {
				t.Fatalf("phase %q (%s); want %q", m.Phase, m.Message, tt.wantPhase)
			}
		})
	}
}

func respOf(values ...string) influxdbtest.Response {
	return influxdbtest.Response{Tables: []influxdbtest.Table{series("double", values...)}}
}
