package prometheus

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// now is the provider's clock in these tests: ten minutes of samples after
// epoch.
var now = epoch.Add(10 * time.Minute)

func clock() time.Time { return now }

// data: 10 requests per second, 0.1 errors per second, and two pods'
// latency.
var data = []series{
	newSeries(map[string]string{"__name__": "http_requests_total", "service": "web", "code": "200"}, ramp(0, 600, 11)...),
	newSeries(map[string]string{"__name__": "http_requests_total", "service": "web", "code": "500"}, ramp(0, 6, 11)...),
	newSeries(map[string]string{"__name__": "latency_ms", "service": "web", "pod": "a"}, ramp(100, 1, 11)...),
	newSeries(map[string]string{"__name__": "latency_ms", "service": "web", "pod": "b"}, ramp(200, 1, 11)...),
}

func ramp(start, step float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = start + step*float64(i)
	}
	return out
}

func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = clock
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func promMetric(address, query string, opts ...func(*spec.PrometheusMetric)) spec.Metric {
	m := &spec.PrometheusMetric{Address: address, Query: query}
	for _, o := range opts {
		o(m)
	}
	return spec.Metric{Name: "m", Provider: spec.MetricProvider{Prometheus: m}}
}

func TestMeasureResults(t *testing.T) {
	srv := promServer(t, data, nil)
	p := newProvider(t, Config{})
	rangeQuery := func(start, end, step string) func(*spec.PrometheusMetric) {
		return func(m *spec.PrometheusMetric) {
			m.RangeQuery = &spec.PrometheusRangeQueryArgs{Start: start, End: end, Step: step}
		}
	}
	nan := math.NaN()
	tests := []struct {
		name       string
		metric     spec.Metric
		wantResult any
		wantValue  string
		wantError  string
	}{
		{
			name:       "vector of one series",
			metric:     promMetric(srv.URL, `sum(rate(http_requests_total{service="web",code="500"}[5m])) / sum(rate(http_requests_total{service="web"}[5m]))`),
			wantResult: []float64{0.1 / 10.1},
		},
		{
			name:       "vector of two series",
			metric:     promMetric(srv.URL, `sum by (code) (rate(http_requests_total[5m]))`),
			wantResult: []float64{10, 0.1},
			wantValue:  "[10,0.1]",
		},
		{
			name:       "scalar",
			metric:     promMetric(srv.URL, `scalar(sum(rate(http_requests_total[5m])))`),
			wantResult: 10.1,
			wantValue:  "10.1",
		},
		{
			name:       "empty vector",
			metric:     promMetric(srv.URL, `http_requests_total{service="nope"}`),
			wantResult: []float64{},
			wantValue:  "[]",
		},
		{
			name:       "NaN",
			metric:     promMetric(srv.URL, `vector(0) / vector(0)`),
			wantResult: []float64{nan},
			wantValue:  "[NaN]",
		},
		{
			name:       "+Inf and -Inf",
			metric:     promMetric(srv.URL, `vector(1) / vector(0) or label_replace(vector(-1) / vector(0), "x", "y", "", "")`),
			wantResult: []float64{math.Inf(1), math.Inf(-1)},
			wantValue:  "[+Inf,-Inf]",
		},
		{
			name:       "range query: every value of every series, in order",
			metric:     promMetric(srv.URL, `latency_ms{service="web"}`, rangeQuery(`now() - duration("2m")`, "now()", "1m")),
			wantResult: []float64{108, 109, 110, 208, 209, 210},
			wantValue:  "[108,109,110,208,209,210]",
		},
		{
			name:       "range query with an empty result",
			metric:     promMetric(srv.URL, `latency_ms{service="nope"}`, rangeQuery(`now() - duration("2m")`, "now()", "30s")),
			wantResult: []float64{},
			wantValue:  "[]",
		},
		{
			name:      "range query whose start does not evaluate",
			metric:    promMetric(srv.URL, `up`, rangeQuery(`now() -`, "now()", "1m")),
			wantError: "rangeQuery.start",
		},
		{
			name:      "range query whose start is not a time",
			metric:    promMetric(srv.URL, `up`, rangeQuery(`1`, "now()", "1m")),
			wantError: `expression "1" is a int, not a time`,
		},
		{
			name:      "range query with end before start",
			metric:    promMetric(srv.URL, `up`, rangeQuery(`now()`, `now() - duration("1m")`, "1m")),
			wantError: "is before start",
		},
		{
			name:      "string result",
			metric:    promMetric(srv.URL, `"hello"`),
			wantError: `unexpected value type "string"`,
		},
		{
			name:      "bad query",
			metric:    promMetric(srv.URL, `sum(`),
			wantError: "prometheus bad_data error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: tc.metric})
			if m.Provider != "prometheus" || m.Query != tc.metric.Provider.Prometheus.Query || m.Metadata[MetadataQuery] != m.Query {
				t.Errorf("provider %q, query %q, metadata %v", m.Provider, m.Query, m.Metadata)
			}
			if !m.StartedAt.Equal(now) || !m.FinishedAt.Equal(now) {
				t.Errorf("times = %s, %s", m.StartedAt, m.FinishedAt)
			}
			if tc.wantError != "" {
				if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, tc.wantError) {
					t.Fatalf("phase %s, message %q, want Error with %q", m.Phase, m.Message, tc.wantError)
				}
				return
			}
			if m.Phase != "" {
				t.Fatalf("phase = %s (%s), want it left to the conditions", m.Phase, m.Message)
			}
			if !sameResult(m.Result, tc.wantResult) {
				t.Errorf("result = %#v, want %#v", m.Result, tc.wantResult)
			}
			if tc.wantValue != "" && m.Value != tc.wantValue {
				t.Errorf("value = %q, want %q", m.Value, tc.wantValue)
			}
		})
	}
}

// sameResult compares results, NaN equal to NaN and floats within 1e-9.
func sameResult(got, want any) bool {
	eq := func(a, b float64) bool {
		return (math.IsNaN(a) && math.IsNaN(b)) || a == b || math.Abs(a-b) < 1e-9
	}
	switch w := want.(type) {
	case float64:
		g, ok := got.(float64)
		return ok && eq(g, w)
	case []float64:
		g, ok := got.([]float64)
		if !ok || len(g) != len(w) || g == nil {
			return false
		}
		for i := range g {
			if !eq(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

// TestConditionsOnRealResults runs Argo-style conditions against what the
// engine returns, through analysis.Judge.
func TestConditionsOnRealResults(t *testing.T) {
	srv := promServer(t, data, nil)
	p := newProvider(t, Config{})
	errorRate := `sum(rate(http_requests_total{service="web",code="500"}[5m])) / sum(rate(http_requests_total{service="web"}[5m]))`
	tests := []struct {
		name, query, success, failure string
		want                          spec.AnalysisPhase
		wantMessage                   string
	}{
		{"error rate under 5%", errorRate, "result[0] < 0.05", "", spec.AnalysisPhaseSuccessful, ""},
		{"error rate over 0.5%", errorRate, "result[0] < 0.005", "", spec.AnalysisPhaseFailed, "is false"},
		{"no data: result[0] is an Error that says why", `rate(http_requests_total{service="nope"}[5m])`, "result[0] < 0.05", "", spec.AnalysisPhaseError, "the query returned no data"},
		{"no data guarded as Argo documents", `rate(http_requests_total{service="nope"}[5m])`, "len(result) == 0 || result[0] < 0.05", "", spec.AnalysisPhaseSuccessful, ""},
		{"NaN fails a threshold", `vector(0) / vector(0)`, "result[0] < 0.05", "", spec.AnalysisPhaseFailed, ""},
		{"NaN tolerated with isNaN", `vector(0) / vector(0)`, "isNaN(result[0]) || result[0] < 0.05", "", spec.AnalysisPhaseSuccessful, ""},
		{"+Inf caught by isInf", `vector(1) / vector(0)`, "", "isInf(result[0])", spec.AnalysisPhaseFailed, ""},
		{"all() over a vector", `latency_ms`, "all(result, # < 500)", "", spec.AnalysisPhaseSuccessful, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			metric := promMetric(srv.URL, tc.query)
			metric.SuccessCondition, metric.FailureCondition = tc.success, tc.failure
			m := analysis.Judge(metric, p.Measure(context.Background(), metrics.Request{Metric: metric}))
			if m.Phase != tc.want || !strings.Contains(m.Message, tc.wantMessage) {
				t.Fatalf("phase %s, message %q; want %s with %q", m.Phase, m.Message, tc.want, tc.wantMessage)
			}
		})
	}
}

func TestMeasureUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	_ = l.Close()

	m := newProvider(t, Config{}).Measure(context.Background(), metrics.Request{Metric: promMetric(addr, "up")})
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "connection refused") || !strings.Contains(m.Message, addr+"/api/v1/query") {
		t.Fatalf("phase %s, message %q", m.Phase, m.Message)
	}
	if strings.Contains(m.Message, "query=") {
		t.Errorf("message carries the query string: %q", m.Message)
	}
}

func TestMeasureTimeout(t *testing.T) {
	// The server answers only once the client hangs up (or the test is
	// over): Measure returns by its timeout or not at all, and the
	// deadline only keeps a broken timeout from hanging the test.
	ended := make(chan struct{})
	srv := promServer(t, data, func(w http.ResponseWriter, r *http.Request) bool {
		// Reading the body lets the server notice the client hanging up.
		_ = r.ParseForm()
		select {
		case <-r.Context().Done():
		case <-ended:
		}
		return true
	})
	t.Cleanup(func() { close(ended) })
	one := int64(1)
	measured := make(chan metrics.Measurement, 1)
	go func() {
		measured <- newProvider(t, Config{}).Measure(context.Background(), metrics.Request{Metric: promMetric(srv.URL, "up", func(m *spec.PrometheusMetric) { m.Timeout = &one })})
	}()
	var m metrics.Measurement
	select {
	case m = <-measured:
	case <-time.After(poll.Default):
		t.Fatalf("a 1s timeout took more than %s", poll.Default)
	}
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "timed out after 1s") {
		t.Fatalf("phase %s, message %q", m.Phase, m.Message)
	}
}

// Secrets used in the credential tests; none may appear in what the
// provider returns.
const (
	user     = "analyst"
	password = "pa55-w0rd-secret"
	token    = "tok-3cr3t-value"
)

// echoAuth answers unauthenticated requests with a Prometheus error that
// echoes the credentials it got, as a careless proxy might.
func echoAuth(ok func(r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if ok(r) {
			return false
		}
		apiError(w, http.StatusBadRequest, "bad_data", "rejected credentials: "+r.Header.Get("Authorization"))
		return true
	}
}

func TestCredentials(t *testing.T) {
	basicOK := func(r *http.Request) bool { u, pw, ok := r.BasicAuth(); return ok && u == user && pw == password }
	bearerOK := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token }
	basicSrv := promServer(t, data, echoAuth(basicOK))
	bearerSrv := promServer(t, data, echoAuth(bearerOK))
	tenantSrv := promServer(t, data, echoAuth(func(r *http.Request) bool { return r.Header.Get("X-Scope-OrgID") == "tenant-a" }))

	basicAuth := func(u, pw string) func(*spec.PrometheusMetric) {
		return func(m *spec.PrometheusMetric) {
			m.Authentication = &spec.Authentication{BasicAuth: &spec.BasicAuthConfig{Username: u, Password: pw}}
		}
	}
	header := func(k, v string) func(*spec.PrometheusMetric) {
		return func(m *spec.PrometheusMetric) { m.Headers = append(m.Headers, spec.WebMetricHeader{Key: k, Value: v}) }
	}
	tests := []struct {
		name   string
		cfg    Config
		metric spec.Metric
		wantOK bool
	}{
		{"basic auth from the metric", Config{}, promMetric(basicSrv.URL, "up", basicAuth(user, password)), true},
		{"wrong basic auth", Config{}, promMetric(basicSrv.URL, "up", basicAuth(user, password+"x")), false},
		{"wrong basic auth from the environment", Config{Address: basicSrv.URL, Username: user, Password: "x" + password}, promMetric(basicSrv.URL, "up"), false},
		{"bearer token in an Authorization header", Config{}, promMetric(bearerSrv.URL, "up", header("Authorization", "Bearer "+token)), true},
		{"wrong bearer token in a header", Config{}, promMetric(bearerSrv.URL, "up", header("Authorization", "Bearer "+token+"x")), false},
		{"bearer token from the environment, for its address", Config{Address: bearerSrv.URL, BearerToken: token}, promMetric(bearerSrv.URL, "up"), true},
		{"basic auth from the environment, for its address", Config{Address: basicSrv.URL + "/", Username: user, Password: password}, promMetric(basicSrv.URL, "up"), true},
		{"environment credentials are not sent elsewhere", Config{Address: basicSrv.URL, Username: user, Password: password}, promMetric(bearerSrv.URL, "up"), false},
		{"the metric's own credentials win over the environment", Config{Address: basicSrv.URL, Username: user, Password: "old-" + password}, promMetric(basicSrv.URL, "up", basicAuth(user, password)), true},
		{"custom header", Config{}, promMetric(tenantSrv.URL, "up", header("X-Scope-OrgID", "tenant-a")), true},
		{"custom header missing", Config{}, promMetric(tenantSrv.URL, "up"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newProvider(t, tc.cfg).Measure(context.Background(), metrics.Request{Metric: tc.metric})
			if ok := m.Phase == ""; ok != tc.wantOK {
				t.Fatalf("phase %q, message %q; want success %v", m.Phase, m.Message, tc.wantOK)
			}
			assertNoSecret(t, m)
			// The server echoed the credentials it got: they must show
			// redacted.
			if strings.Contains(m.Message, "rejected credentials: ") && !strings.HasSuffix(m.Message, "rejected credentials: ") && !strings.Contains(m.Message, metrics.Redaction) {
				t.Errorf("echoed credentials not redacted: %q", m.Message)
			}
		})
	}
}

func TestOAuth2(t *testing.T) {
	var tokenRequests atomic.Int32
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		id, secret, _ := r.BasicAuth()
		if r.FormValue("grant_type") != "client_credentials" || id != "client" || secret != password || r.FormValue("scope") != "read metrics" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": token, "token_type": "Bearer"})
	}))
	t.Cleanup(tokenSrv.Close)
	srv := promServer(t, data, echoAuth(func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token }))
	oauth := func(secret string) func(*spec.PrometheusMetric) {
		return func(m *spec.PrometheusMetric) {
			m.Authentication = &spec.Authentication{OAuth2: &spec.OAuth2Config{TokenURL: tokenSrv.URL, ClientID: "client", ClientSecret: secret, Scopes: []string{"read", "metrics"}}}
		}
	}
	p := newProvider(t, Config{})
	if m := p.Measure(context.Background(), metrics.Request{Metric: promMetric(srv.URL, "up", oauth(password))}); m.Phase != "" {
		t.Fatalf("phase %s, message %q", m.Phase, m.Message)
	}
	m := p.Measure(context.Background(), metrics.Request{Metric: promMetric(srv.URL, "up", oauth("wrong"))})
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "oauth2 token") || !strings.Contains(m.Message, "401") {
		t.Fatalf("phase %s, message %q", m.Phase, m.Message)
	}
	assertNoSecret(t, m)
	if n := tokenRequests.Load(); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(promHandler(t, data, nil))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the client refuses
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	p := newProvider(t, Config{})
	tests := []struct {
		name      string
		opt       func(*spec.PrometheusMetric)
		wantError string
	}{
		{"unknown CA", func(*spec.PrometheusMetric) {}, "certificate"},
		{"insecure", func(m *spec.PrometheusMetric) { m.Insecure = true }, ""},
		{"caCert", func(m *spec.PrometheusMetric) { m.CACert = caCert }, ""},
		{"caCert without certificate", func(m *spec.PrometheusMetric) { m.CACert = "junk" }, "caCert holds no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: promMetric(srv.URL, "vector(1)", tc.opt)})
			if tc.wantError == "" && m.Phase != "" {
				t.Fatalf("phase %s, message %q", m.Phase, m.Message)
			}
			if tc.wantError != "" && (m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, tc.wantError)) {
				t.Fatalf("phase %s, message %q, want Error with %q", m.Phase, m.Message, tc.wantError)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	p := newProvider(t, Config{})
	tests := []struct {
		name    string
		metric  spec.Metric
		wantErr string
	}{
		{"plain query", promMetric("http://p:9090", "up"), ""},
		{"range query", promMetric("http://p:9090", "up", func(m *spec.PrometheusMetric) {
			m.RangeQuery = &spec.PrometheusRangeQueryArgs{Start: `now() - duration("{{args.lookback}}")`, End: "now()", Step: "1m"}
		}), ""},
		{"range start does not compile", promMetric("http://p:9090", "up", func(m *spec.PrometheusMetric) {
			m.RangeQuery = &spec.PrometheusRangeQueryArgs{Start: `now() -`, End: "now()", Step: "1m"}
		}), "rangeQuery.start"},
		{"range step is no duration", promMetric("http://p:9090", "up", func(m *spec.PrometheusMetric) {
			m.RangeQuery = &spec.PrometheusRangeQueryArgs{Start: "now()", End: "now()", Step: "60"}
		}), "rangeQuery.step"},
		{"sigv4", promMetric("http://p:9090", "up", func(m *spec.PrometheusMetric) {
			m.Authentication = &spec.Authentication{Sigv4: &spec.Sigv4Config{Region: "eu-west-1"}}
		}), "sigv4 is not supported"},
		{"not a prometheus metric", spec.Metric{Name: "w", Provider: spec.MetricProvider{Web: &spec.WebMetric{URL: "http://x"}}}, "no prometheus provider"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(tc.metric)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check = %v, want %q", err, tc.wantErr)
			}
		})
	}
	r, err := metrics.NewRegistry(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(tests[4].metric); err == nil || !strings.Contains(err.Error(), `metric "m": authentication.sigv4`) {
		t.Errorf("registry Check = %v", err)
	}
}

func TestConfig(t *testing.T) {
	env := map[string]string{EnvAddress: " https://prom.internal:9090 ", EnvToken: token}
	cfg := ConfigFromEnv(func(k string) string { return env[k] })
	if cfg.Address != "https://prom.internal:9090" || cfg.BearerToken != token {
		t.Fatalf("config = %+v", cfg)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero", Config{}, ""},
		{"token for an address", Config{Address: "https://p", BearerToken: token}, ""},
		{"credentials without address", Config{Username: user, Password: password}, "credentials need SLUICE_PROMETHEUS_ADDRESS"},
		{"token and basic auth", Config{Address: "https://p", BearerToken: token, Username: user, Password: password}, "not both"},
		{"not a URL", Config{Address: "prom:" + password}, "must be an http or https URL"},
		{"credentials in the URL", Config{Address: "https://" + user + ":" + password + "@p"}, "must not hold credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("New = %v, want %q", err, tc.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), password) || strings.Contains(err.Error(), token)) {
				t.Errorf("error reveals a secret: %v", err)
			}
		})
	}
}

// assertNoSecret fails when a secret of these tests appears anywhere in m
// or in the event published for it.
func assertNoSecret(t *testing.T, m metrics.Measurement) {
	t.Helper()
	data, err := json.Marshal(struct {
		M metrics.Measurement
		E any
	}{m, m.Event("m")})
	if err != nil {
		t.Fatal(err)
	}
	basic := "YW5hbHlzdDpwYTU1LXcwcmQtc2VjcmV0" // base64("analyst:pa55-w0rd-secret")
	for _, s := range []string{password, token, basic} {
		if strings.Contains(string(data), s) {
			t.Errorf("measurement reveals %q: %s", s, data)
		}
	}
}

// TestMeasureAt: a request's At replaces the provider's clock, for an
// instant query and for now() in a range query.
func TestMeasureAt(t *testing.T) {
	srv := promServer(t, data, nil)
	p := newProvider(t, Config{})
	at := epoch.Add(3 * time.Minute)
	instant := promMetric(srv.URL, `latency_ms{pod="a"}`)
	ranged := promMetric(srv.URL, `latency_ms{pod="a"}`, func(m *spec.PrometheusMetric) {
		m.RangeQuery = &spec.PrometheusRangeQueryArgs{Start: `now() - duration("1m")`, End: "now()", Step: "1m"}
	})
	for _, tc := range []struct {
		metric spec.Metric
		want   []float64
	}{{instant, []float64{103}}, {ranged, []float64{102, 103}}} {
		m := p.Measure(context.Background(), metrics.Request{Metric: tc.metric, At: at})
		if m.Phase != "" || !sameResult(m.Result, tc.want) {
			t.Errorf("%s at %s: phase %q (%s), result %v, want %v", tc.metric.Provider.Prometheus.Query, at, m.Phase, m.Message, m.Result, tc.want)
		}
	}
}
