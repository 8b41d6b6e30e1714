package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// fake is a provider of any name.
type fake struct {
	name     string
	checkErr error
}

func (f fake) Type() string                      { return f.name }
func (f fake) Timeout(spec.Metric) time.Duration { return time.Second }
func (f fake) Measure(context.Context, metrics.Request) metrics.Measurement {
	return metrics.Measurement{Phase: spec.AnalysisPhaseSuccessful}
}
func (f fake) Check(spec.Metric) error { return f.checkErr }

func TestRegistry(t *testing.T) {
	r, err := metrics.NewRegistry(fake{name: "prometheus"}, fake{name: "web", checkErr: errors.New("bad jsonPath")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		provider  spec.MetricProvider
		wantType  string
		wantErr   string
		wantCheck string
		noProv    bool
	}{
		{"prometheus", spec.MetricProvider{Prometheus: &spec.PrometheusMetric{}}, "prometheus", "", "", false},
		{"web, rejected by its checker", spec.MetricProvider{Web: &spec.WebMetric{}}, "web", "", `metric "m": bad jsonPath`, false},
		{"unregistered", spec.MetricProvider{Datadog: &spec.DatadogMetric{Query: "x"}}, "", `metric "m": no metric provider named "datadog"`, "", true},
		{"plugin", spec.MetricProvider{Plugin: map[string]json.RawMessage{"x": json.RawMessage(`{}`)}}, "", `no metric provider named "plugin"`, "", true},
		{"none", spec.MetricProvider{Kayenta: json.RawMessage(`null`)}, "", "no provider set", "", false},
		{"several", spec.MetricProvider{Prometheus: &spec.PrometheusMetric{}, Web: &spec.WebMetric{}}, "", "several providers set: prometheus, web", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := spec.Metric{Name: "m", Provider: tc.provider}
			p, err := r.Provider(m)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				if errors.Is(err, metrics.ErrNoProvider) != tc.noProv {
					t.Errorf("errors.Is(ErrNoProvider) = %v", !tc.noProv)
				}
				if r.Check(m) == nil {
					t.Error("Check accepts it")
				}
				return
			}
			if err != nil || p.Type() != tc.wantType {
				t.Fatalf("provider = %v, %v; want %s", p, err, tc.wantType)
			}
			if err := r.Check(m); (tc.wantCheck == "") != (err == nil) || (err != nil && err.Error() != tc.wantCheck) {
				t.Errorf("Check = %v, want %q", err, tc.wantCheck)
			}
		})
	}
	if _, err := metrics.NewRegistry(fake{name: "web"}, fake{name: "web"}); err == nil {
		t.Error("duplicate provider accepted")
	}
	if _, err := metrics.NewRegistry(fake{}); err == nil {
		t.Error("provider without a name accepted")
	}
}

func TestRedact(t *testing.T) {
	m := metrics.Measurement{
		Message:  "bad token abc123 (token abc)",
		Value:    `"abc123"`,
		Query:    `up{t="abc123"}`,
		Result:   "abc123",
		Metadata: map[string]string{"k": "x abc123"},
	}
	got := m.Redact("", "abc", "abc123")
	want := "bad token ***** (token *****)"
	if got.Message != want || got.Value != `"*****"` || got.Query != `up{t="*****"}` || got.Metadata["k"] != "x *****" {
		t.Fatalf("redacted = %+v", got)
	}
	if m.Metadata["k"] != "x abc123" {
		t.Error("Redact modified its receiver's metadata")
	}
	if got.Result != "abc123" {
		t.Error("Redact changed Result, which is never stored")
	}
}

func TestEvent(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := metrics.Measurement{Phase: spec.AnalysisPhaseFailed, Value: "[0.5]", Query: "up", Provider: "prometheus", Message: "no", StartedAt: at, FinishedAt: at.Add(time.Second), Result: []float64{0.5}}
	e := m.Event("error-rate")
	if e.Metric != "error-rate" || e.Phase != "Failed" || e.Value != "[0.5]" || e.Query != "up" || e.Provider != "prometheus" || e.Message != "no" || !e.StartedAt.Equal(at) || !e.FinishedAt.Equal(at.Add(time.Second)) {
		t.Fatalf("event = %+v", e)
	}
	if m.Judged() != true || (metrics.Measurement{}).Judged() {
		t.Error("Judged")
	}
}
