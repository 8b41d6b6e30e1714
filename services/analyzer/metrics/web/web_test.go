package web

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const token = "w3b-t0ken-secret"

// server answers the paths the tests use.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	ended := make(chan struct{}) // the test is over: /slow stops waiting
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"data":{"ok":true,"ratio":0.95,"status":"ok","nothing":null,"count":"3","list":[1,2]}}`)
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/unavailable", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	})
	// /slow answers only once the client hangs up: a request to it ends
	// by the client's timeout or not at all.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-ended:
		}
	})
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"pad":"`+strings.Repeat("x", 2048)+`"}`)
	})
	// /echo returns what it received, for checking methods, bodies and
	// headers.
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"method": r.Method, "body": string(body), "contentType": r.Header.Get("Content-Type"),
			"tenant": r.Header.Get("X-Tenant"), "query": r.URL.RawQuery,
		})
	})
	// /private wants the token and echoes a wrong one back, as a careless
	// service might.
	mux.HandleFunc("/private", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token && r.URL.Query().Get("token") != token {
			http.Error(w, "bad token "+r.Header.Get("Authorization"), http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(ended) })
	return srv
}

func webMetric(url string, opts ...func(*spec.WebMetric)) spec.Metric {
	w := &spec.WebMetric{URL: url}
	for _, o := range opts {
		o(w)
	}
	return spec.Metric{Name: "m", Provider: spec.MetricProvider{Web: w}}
}

func path(p string) func(*spec.WebMetric) { return func(w *spec.WebMetric) { w.JSONPath = p } }

func newProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	cfg.Now = func() time.Time { return now }
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMeasure(t *testing.T) {
	srv := server(t)
	p := newProvider(t, Config{MaxResponseBytes: 1024})
	tests := []struct {
		name       string
		metric     spec.Metric
		wantResult any
		wantValue  string
		wantQuery  string
		wantError  string
	}{
		{"jsonPath to a bool", webMetric(srv.URL+"/metrics", path("{$.data.ok}")), true, "true", "GET " + srv.URL + "/metrics", ""},
		{"jsonPath to a number", webMetric(srv.URL+"/metrics", path("{$.data.ratio}")), 0.95, "0.95", "", ""},
		{"jsonPath to a string, recorded with quotes", webMetric(srv.URL+"/metrics", path("{$.data.status}")), "ok", `"ok"`, "", ""},
		{"jsonPath to null", webMetric(srv.URL+"/metrics", path("{$.data.nothing}")), nil, "null", "", ""},
		{"jsonPath to a list", webMetric(srv.URL+"/metrics", path("{$.data.list}")), []any{1.0, 2.0}, "[1,2]", "", ""},
		{"jsonPath without $", webMetric(srv.URL+"/metrics", path("{.data.ratio}")), 0.95, "0.95", "", ""},
		{"default jsonPath is the whole document", webMetric(srv.URL + "/echo?x=1"), map[string]any{"method": "GET", "body": "", "contentType": "", "tenant": "", "query": "x=1"}, "", "GET " + srv.URL + "/echo", ""},
		{"jsonPath miss", webMetric(srv.URL+"/metrics", path("{$.data.missing}")), nil, "", "", "jsonPath {$.data.missing}: missing is not found"},
		{"text response with the default jsonPath", webMetric(srv.URL + "/text"), "ok", "ok", "", ""},
		{"text response with a jsonPath", webMetric(srv.URL+"/text", path("{$.ok}")), nil, "", "", "response is not JSON"},
		{"non-2xx", webMetric(srv.URL + "/unavailable"), nil, "", "", "received non 2xx response code: 503"},
		{"response too large", webMetric(srv.URL + "/large"), nil, "", "", "response is larger than 1024 bytes"},
		{"POST with a text body", webMetric(srv.URL+"/echo", func(w *spec.WebMetric) { w.Method = spec.WebMetricMethodPost; w.Body = "hello" }, path("{$.body}")), "hello", "", "POST " + srv.URL + "/echo", ""},
		{"PUT with a JSON body", webMetric(srv.URL+"/echo", func(w *spec.WebMetric) {
			w.Method = spec.WebMetricMethodPut
			w.JSONBody = json.RawMessage(`{"scenario":"checkout"}`)
		}, path("{$}")), map[string]any{"method": "PUT", "body": `{"scenario":"checkout"}`, "contentType": "application/json", "tenant": "", "query": ""}, "", "", ""},
		{"headers", webMetric(srv.URL+"/echo", func(w *spec.WebMetric) { w.Headers = []spec.WebMetricHeader{{Key: "X-Tenant", Value: "a"}} }, path("{$.tenant}")), "a", "", "", ""},
		{"a body needs POST or PUT", webMetric(srv.URL+"/echo", func(w *spec.WebMetric) { w.Body = "x" }), nil, "", "", "body and jsonBody need method POST or PUT"},
		{"unreachable", webMetric("http://127.0.0.1:1/x?token=" + token), nil, "", "GET http://127.0.0.1:1/x", "GET http://127.0.0.1:1/x: dial tcp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: tc.metric})
			if tc.wantQuery != "" && m.Query != tc.wantQuery {
				t.Errorf("query = %q, want %q", m.Query, tc.wantQuery)
			}
			if m.Provider != "web" || !m.StartedAt.Equal(now) || !m.FinishedAt.Equal(now) {
				t.Errorf("provider %q, times %s %s", m.Provider, m.StartedAt, m.FinishedAt)
			}
			if tc.wantError != "" {
				if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, tc.wantError) {
					t.Fatalf("phase %s, message %q, want Error with %q", m.Phase, m.Message, tc.wantError)
				}
				if strings.Contains(m.Message, token) {
					t.Errorf("message reveals the token: %q", m.Message)
				}
				return
			}
			if m.Phase != "" {
				t.Fatalf("phase %s (%s), want it left to the conditions", m.Phase, m.Message)
			}
			if !reflect.DeepEqual(m.Result, tc.wantResult) {
				t.Errorf("result = %#v, want %#v", m.Result, tc.wantResult)
			}
			if tc.wantValue != "" && m.Value != tc.wantValue {
				t.Errorf("value = %q, want %q", m.Value, tc.wantValue)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	srv := server(t)
	p := newProvider(t, Config{})
	tests := []struct {
		name, path, success string
		url                 string
		want                spec.AnalysisPhase
	}{
		{"bool", "{$.data.ok}", "result == true", "/metrics", spec.AnalysisPhaseSuccessful},
		{"number", "{$.data.ratio}", "result >= 0.9", "/metrics", spec.AnalysisPhaseSuccessful},
		{"asFloat", "{$.data.ratio}", "asFloat(result) >= 0.99", "/metrics", spec.AnalysisPhaseFailed},
		{"asInt of a string", "{$.data.count}", "asInt(result) == 3", "/metrics", spec.AnalysisPhaseSuccessful},
		{"string", "{$.data.status}", "result == 'ok'", "/metrics", spec.AnalysisPhaseSuccessful},
		{"text is judged, not assumed successful", "", "result == 'healthy'", "/text", spec.AnalysisPhaseFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			metric := webMetric(srv.URL+tc.url, path(tc.path))
			metric.SuccessCondition = tc.success
			if m := analysis.Judge(metric, p.Measure(context.Background(), metrics.Request{Metric: metric})); m.Phase != tc.want {
				t.Fatalf("phase %s (%s), want %s", m.Phase, m.Message, tc.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	srv := server(t)
	// /slow never answers, so Measure returns by its timeout or not at
	// all; the deadline only keeps a broken timeout from hanging the test.
	measured := make(chan metrics.Measurement, 1)
	go func() {
		measured <- newProvider(t, Config{}).Measure(context.Background(), metrics.Request{Metric: webMetric(srv.URL+"/slow", func(w *spec.WebMetric) { w.TimeoutSeconds = 1 })})
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

func TestSecrets(t *testing.T) {
	srv := server(t)
	p := newProvider(t, Config{})
	auth := func(v string) func(*spec.WebMetric) {
		return func(w *spec.WebMetric) { w.Headers = []spec.WebMetricHeader{{Key: "Authorization", Value: v}} }
	}
	if m := p.Measure(context.Background(), metrics.Request{Metric: webMetric(srv.URL+"/private", auth("Bearer "+token))}); m.Phase != "" {
		t.Fatalf("with the token: %s %q", m.Phase, m.Message)
	}
	for name, metric := range map[string]spec.Metric{
		"wrong token echoed back": webMetric(srv.URL+"/private", auth("Bearer x"+token)),
		"token in the query":      webMetric(srv.URL + "/unavailable?token=" + token),
		"basic auth": webMetric(srv.URL+"/private", func(w *spec.WebMetric) {
			w.Authentication = &spec.Authentication{BasicAuth: &spec.BasicAuthConfig{Username: "u", Password: token}}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			m := p.Measure(context.Background(), metrics.Request{Metric: metric})
			if m.Phase != spec.AnalysisPhaseError {
				t.Fatalf("phase %s", m.Phase)
			}
			data, _ := json.Marshal(m.Event("m"))
			if strings.Contains(string(data), token) || strings.Contains(m.Query, "?") {
				t.Errorf("measurement reveals a secret: %s", data)
			}
		})
	}
}

func TestInsecureTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"ok":1}`) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p := newProvider(t, Config{})
	if m := p.Measure(context.Background(), metrics.Request{Metric: webMetric(srv.URL)}); m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "certificate") {
		t.Errorf("verified: %s %q", m.Phase, m.Message)
	}
	if m := p.Measure(context.Background(), metrics.Request{Metric: webMetric(srv.URL, func(w *spec.WebMetric) { w.Insecure = true })}); m.Phase != "" {
		t.Errorf("insecure: %s %q", m.Phase, m.Message)
	}
}

func TestCheck(t *testing.T) {
	p := newProvider(t, Config{})
	tests := []struct {
		name    string
		metric  spec.Metric
		wantErr string
	}{
		{"valid", webMetric("http://x", path("{$.a.b}")), ""},
		{"placeholder path is checked later", webMetric("http://x", path("{{args.path}}")), ""},
		{"bad jsonPath", webMetric("http://x", path("{$.a[}")), "jsonPath {$.a[}"},
		{"unsupported method", webMetric("http://x", func(w *spec.WebMetric) { w.Method = "DELETE" }), `method "DELETE" is not supported`},
		{"sigv4", webMetric("http://x", func(w *spec.WebMetric) { w.Authentication = &spec.Authentication{Sigv4: &spec.Sigv4Config{}} }), "sigv4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(tc.metric)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
