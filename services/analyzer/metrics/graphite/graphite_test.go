package graphite

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/graphitetest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	cfg.Now = func() time.Time { return now }
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func graphiteMetric(address, query string) spec.Metric {
	return spec.Metric{Name: "m", Provider: spec.MetricProvider{Graphite: &spec.GraphiteMetric{Address: address, Query: query}}}
}

// targets are the fake's series: one shape of render answer per target.
var targets = map[string][]graphitetest.Series{
	"app.ok":    {{Target: "app.ok", Values: []any{0.5, 0.75, 1.0}}},
	"app.gaps":  {{Target: "app.gaps", Values: []any{nil, 2.0, nil, 4.0, nil}}},
	"app.nulls": {{Target: "app.nulls", Values: []any{nil, nil, nil}}},
	"app.empty": {{Target: "app.empty", Values: []any{}}},
	"app.*":     {{Target: "app.a", Values: []any{1.0}}, {Target: "app.b", Values: []any{9.0}}},
	"app.nullsfirst": {
		{Target: "app.nullsfirst.a", Values: []any{nil}},
		{Target: "app.nullsfirst.b", Values: []any{1.0}},
	},
	"app.inf":     {{Target: "app.inf", Values: []any{math.Inf(1), 1.0, math.NaN()}}},
	"app.strings": {{Target: "app.strings", Values: []any{"0.25"}}},
	"app.broken":  {{Target: "app.broken", Values: []any{json.RawMessage("[1]")}}},
}

func TestMeasure(t *testing.T) {
	srv := graphitetest.Start(t, graphitetest.Options{Targets: targets})
	p := newProvider(t, Config{})
	tests := []struct {
		name       string
		query      string
		wantResult []float64
		wantValue  string
		wantMeta   map[string]string
		wantError  string
	}{
		{"one series", "target=app.ok&from=-5min", []float64{0.5, 0.75, 1}, "[0.500000,0.750000,1.000000]", map[string]string{"target": "app.ok", "series": "1"}, ""},
		{"nulls left out", "target=app.gaps", []float64{2, 4}, "[2.000000,4.000000]", nil, ""},
		{"the first of several series", "target=app.*", []float64{1}, "[1.000000]", map[string]string{"target": "app.a", "series": "2"}, ""},
		{"several targets: the first target's series", "target=app.ok&target=app.gaps", []float64{0.5, 0.75, 1}, "", map[string]string{"target": "app.ok", "series": "2"}, ""},
		{"infinity, and NaN sent as null as graphite-web does", "target=app.inf", []float64{math.Inf(1), 1}, "[+Inf,1.000000]", nil, ""},
		{"string values", "target=app.strings", []float64{0.25}, "[0.250000]", nil, ""},
		{"query over several lines", "target=app.ok\n  &from=-5min\n", []float64{0.5, 0.75, 1}, "", nil, ""},
		{"all nulls is no data", "target=app.nulls", nil, "", nil, `no values found: the 3 datapoints of series "app.nulls" are all null`},
		{"a first series of nulls is no data, whatever follows", "target=app.nullsfirst", nil, "", nil, `no values found: the 1 datapoints of series "app.nullsfirst.a" are all null`},
		{"no datapoints", "target=app.empty", nil, "", nil, `no values found: series "app.empty" has no datapoints`},
		{"unknown metric: no series", "target=app.unknown", nil, "", nil, "no values found: graphite returned no series"},
		{"broken datapoint", "target=app.broken", nil, "", nil, `series "app.broken" datapoint 0: value is a list, not a number`},
		{"no target", "from=-5min", nil, "", nil, `query "from=-5min" has no target parameter; want target=<expression>&from=-5min`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: graphiteMetric(srv.URL, tc.query)})
			if m.Provider != Type || !m.StartedAt.Equal(now) || !m.FinishedAt.Equal(now) {
				t.Errorf("provider %q, times %s..%s", m.Provider, m.StartedAt, m.FinishedAt)
			}
			if tc.wantError != "" {
				if m.Phase != spec.AnalysisPhaseError || m.Message != tc.wantError {
					t.Fatalf("got phase %q message %q, want Error %q", m.Phase, m.Message, tc.wantError)
				}
				if m.Result != nil || m.Value != "" {
					t.Errorf("an Error measurement has result %v value %q", m.Result, m.Value)
				}
				return
			}
			if m.Phase != "" {
				t.Fatalf("phase %q (%s), want a value for the conditions", m.Phase, m.Message)
			}
			if !reflect.DeepEqual(m.Result, tc.wantResult) {
				t.Errorf("result = %#v, want %#v", m.Result, tc.wantResult)
			}
			if tc.wantValue != "" && m.Value != tc.wantValue {
				t.Errorf("value = %q, want %q", m.Value, tc.wantValue)
			}
			if tc.wantMeta != nil && !reflect.DeepEqual(m.Metadata, tc.wantMeta) {
				t.Errorf("metadata = %v, want %v", m.Metadata, tc.wantMeta)
			}
			if want := strings.Join(strings.Fields(tc.query), ""); m.Query != want {
				t.Errorf("query = %q, want %q", m.Query, want)
			}
		})
	}
}

// TestRequest checks what the provider sends: GET <address path>/render,
// the query's parameters as written (from, until and the rest are the
// template's), format=json.
func TestRequest(t *testing.T) {
	seen := make(chan *http.Request, 10)
	srv := graphitetest.Start(t, graphitetest.Options{
		Prefix:  "/graphite",
		Targets: targets,
		Guard: func(_ http.ResponseWriter, r *http.Request) bool {
			seen <- r.Clone(context.Background())
			return false
		},
	})
	p := newProvider(t, Config{})
	metric := graphiteMetric(srv.URL+"/graphite/", "target=sumSeries(app.ok)\n&from=-10min&until=-1min&noNullPoints=false&format=png")
	m := p.Measure(context.Background(), metrics.Request{Metric: metric})
	if m.Phase != "" {
		// sumSeries is not a target the fake knows: no series.
		if !strings.Contains(m.Message, "no values found") {
			t.Fatalf("measurement: %s %s", m.Phase, m.Message)
		}
	}
	if len(seen) != 1 {
		t.Fatalf("%d requests reached the server, want 1", len(seen))
	}
	got := <-seen
	if got.Method != http.MethodGet || got.URL.Path != "/graphite/render" {
		t.Errorf("request %s %s, want GET /graphite/render", got.Method, got.URL.Path)
	}
	want := url.Values{"target": {"sumSeries(app.ok)"}, "from": {"-10min"}, "until": {"-1min"}, "noNullPoints": {"false"}, "format": {"json"}}
	if reqs := srv.Requests(); len(reqs) != 1 || !reflect.DeepEqual(reqs[0], want) {
		t.Errorf("render parameters = %v, want %v", reqs, want)
	}
	if a := got.Header.Get("Authorization"); a != "" {
		t.Errorf("Authorization %q sent without credentials in the address", a)
	}
}

func TestErrors(t *testing.T) {
	ended := make(chan struct{})
	t.Cleanup(func() { close(ended) })
	srv := graphitetest.Start(t, graphitetest.Options{
		Targets: targets,
		Guard: func(w http.ResponseWriter, r *http.Request) bool {
			switch r.URL.Query().Get("target") {
			case "nosuchfunc(app.ok)":
				graphitetest.InvalidParameters(w, `Received request for unknown function: nosuchfunc); targets: "nosuchfunc(app.ok)"`)
			case "scale(app.ok,'x')":
				graphitetest.ErrorPage(w, "ValueError: could not convert string to float: 'x'")
			case "limited":
				w.Header().Set("Retry-After", "30")
				http.Error(w, "rate limit exceeded, retry in 30s", http.StatusTooManyRequests)
			case "unavailable":
				http.Error(w, "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>", http.StatusServiceUnavailable)
			case "large":
				_, _ = w.Write([]byte(`[{"target":"large","datapoints":[` + strings.Repeat(`[1,1],`, 100) + `[1,1]]}]`))
			case "notjson":
				_, _ = w.Write([]byte("<html>graphite</html>"))
			case "slow":
				select {
				case <-r.Context().Done():
				case <-ended:
				}
			default:
				return false
			}
			return true
		},
	})
	p := newProvider(t, Config{MaxResponseBytes: 512, Timeout: 200 * time.Millisecond})
	tests := []struct {
		name, address, query, want string
	}{
		{"unknown function: graphite's 400", srv.URL, "target=nosuchfunc(app.ok)",
			`graphite answered 400 Bad Request: Invalid parameters (Received request for unknown function: nosuchfunc); targets: "nosuchfunc(app.ok)")`},
		{"evaluation error: graphite's 500 page, its exception", srv.URL, "target=scale(app.ok,'x')",
			"graphite answered 500 Internal Server Error: ValueError: could not convert string to float: 'x'"},
		{"429", srv.URL, "target=limited", "graphite answered 429 Too Many Requests: rate limit exceeded, retry in 30s"},
		{"503 from a proxy", srv.URL, "target=unavailable", "graphite answered 503 Service Unavailable: 503 Service Unavailable No server is available to handle this request."},
		{"wrong path", srv.URL + "/nothere", "target=app.ok", "graphite answered 404 Not Found: 404 page not found"},
		{"response too large", srv.URL, "target=large", "response is larger than 512 bytes"},
		{"not JSON", srv.URL, "target=notjson", "response is not render API JSON: invalid character '<' looking for beginning of value"},
		{"timeout", srv.URL, "target=slow&from=-1h",
			"graphite did not answer within 200ms: GET " + srv.URL + "/render: context deadline exceeded"},
		{"refused", "http://127.0.0.1:1", "target=app.ok&from=-1h", "GET http://127.0.0.1:1/render: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"not a URL", "graphite:8080", "target=app.ok", "address is not an http or https URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: graphiteMetric(tc.address, tc.query)})
			if m.Phase != spec.AnalysisPhaseError || m.Message != tc.want {
				t.Fatalf("got phase %q message %q, want Error %q", m.Phase, m.Message, tc.want)
			}
			if strings.Contains(m.Message, "from=") || strings.Contains(m.Message, "format=") {
				t.Errorf("message %q holds the query string", m.Message)
			}
		})
	}
}

// TestBasicAuth: credentials in the address are sent as basic
// authentication (as Argo's Go client does) and appear in no message.
func TestBasicAuth(t *testing.T) {
	const password = "gr@phite-s3cret"
	srv := graphitetest.Start(t, graphitetest.Options{Targets: targets, Username: "sluice", Password: password})
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, Config{})
	withCreds := func(user *url.Userinfo, path string) string {
		v := *u
		v.User, v.Path = user, path
		return v.String()
	}
	tests := []struct {
		name, address, query, wantError string
	}{
		{"right credentials", withCreds(url.UserPassword("sluice", password), ""), "target=app.ok", ""},
		{"no credentials: 401", srv.URL, "target=app.ok", "graphite answered 401 Unauthorized: 401 Unauthorized"},
		{"wrong password: 401", withCreds(url.UserPassword("sluice", "nope"), ""), "target=app.ok", "graphite answered 401 Unauthorized: 401 Unauthorized"},
		{"right credentials, no data: the message names no secret", withCreds(url.UserPassword("sluice", password), ""), "target=app.nulls", `no values found: the 3 datapoints of series "app.nulls" are all null`},
		{"right credentials, refused: the message names no secret", "http://sluice:" + url.QueryEscape(password) + "@127.0.0.1:1", "target=app.ok", "GET http://127.0.0.1:1/render: dial tcp 127.0.0.1:1: connect: connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: graphiteMetric(tc.address, tc.query)})
			all, _ := json.Marshal(m)
			for _, secret := range []string{password, url.QueryEscape(password), base64.StdEncoding.EncodeToString([]byte("sluice:" + password))} {
				if strings.Contains(string(all), secret) {
					t.Errorf("measurement holds %q: %s", secret, all)
				}
			}
			if tc.wantError == "" {
				if m.Phase != "" {
					t.Fatalf("phase %q: %s", m.Phase, m.Message)
				}
				return
			}
			if m.Phase != spec.AnalysisPhaseError || m.Message != tc.wantError {
				t.Fatalf("got phase %q message %q, want Error %q", m.Phase, m.Message, tc.wantError)
			}
		})
	}
}

// TestConditions: the result judged by a metric's conditions, and missing
// data never passing one, however it is written.
func TestConditions(t *testing.T) {
	srv := graphitetest.Start(t, graphitetest.Options{Targets: targets})
	p := newProvider(t, Config{})
	tests := []struct {
		name, query, success, failure string
		want                          spec.AnalysisPhase
	}{
		{"first value", "target=app.ok", "result[0] >= 0.5", "", spec.AnalysisPhaseSuccessful},
		{"every value", "target=app.ok", "all(result, {# > 0.9})", "", spec.AnalysisPhaseFailed},
		{"Argo's example: a value in the list", "target=app.gaps", "4.0 in result", "4.0 not in result", spec.AnalysisPhaseSuccessful},
		{"last value", "target=app.gaps", "result[len(result)-1] < 3", "", spec.AnalysisPhaseFailed},
		{"infinity fails a bound", "target=app.inf", "result[0] < 100", "", spec.AnalysisPhaseFailed},
		{"all nulls never passes all()", "target=app.nulls", "all(result, {# < 0.05})", "", spec.AnalysisPhaseError},
		{"all nulls never passes a len guard", "target=app.nulls", "len(result) == 0 || result[0] < 0.05", "", spec.AnalysisPhaseError},
		{"no series never passes", "target=app.unknown", "all(result, {# < 0.05})", "", spec.AnalysisPhaseError},
		{"an unreachable graphite never passes", "target=app.ok", "true", "", spec.AnalysisPhaseError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			address := srv.URL
			if strings.Contains(tc.name, "unreachable") {
				address = "http://127.0.0.1:1"
			}
			metric := graphiteMetric(address, tc.query)
			metric.SuccessCondition, metric.FailureCondition = tc.success, tc.failure
			m := analysis.Judge(metric, p.Measure(context.Background(), metrics.Request{Metric: metric}))
			if m.Phase != tc.want {
				t.Fatalf("phase %q (%s), want %q", m.Phase, m.Message, tc.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		wantTimeout time.Duration
		wantErr     string
	}{
		{"zero value", Config{}, DefaultTimeout, ""},
		{"timeout", Config{Timeout: 3 * time.Second}, 3 * time.Second, ""},
		{"negative timeout", Config{Timeout: -1}, 0, "graphite: Timeout must not be negative"},
		{"negative size", Config{MaxResponseBytes: -1}, 0, "graphite: MaxResponseBytes must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Type() != "graphite" || p.Timeout(spec.Metric{}) != tc.wantTimeout {
				t.Errorf("type %q timeout %s", p.Type(), p.Timeout(spec.Metric{}))
			}
		})
	}
}

func TestNoGraphiteBlock(t *testing.T) {
	p := newProvider(t, Config{})
	m := p.Measure(context.Background(), metrics.Request{Metric: spec.Metric{Name: "m"}})
	if m.Phase != spec.AnalysisPhaseError || m.Message != `metric "m" has no graphite provider` {
		t.Fatalf("got %q %q", m.Phase, m.Message)
	}
}
