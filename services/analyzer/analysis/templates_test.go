package analysis

import (
	"os"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// TestArgoTemplates takes templates written for Argo Rollouts, unchanged,
// through Merge and New, and one metric through a few measurements.
func TestArgoTemplates(t *testing.T) {
	data, err := os.ReadFile("testdata/argo-templates.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := spec.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	var templates []spec.AnalysisTemplateSpec
	for _, d := range docs {
		if len(d.Warnings) > 0 {
			t.Fatalf("warnings: %v", d.Warnings)
		}
		tmpl := d.Object.(*spec.AnalysisTemplate)
		if errs := tmpl.Validate(); len(errs) > 0 {
			t.Fatalf("%s: %v", tmpl.Name, errs.ToAggregate())
		}
		if err := CheckTemplate(tmpl.Spec); err != nil {
			t.Fatalf("%s: %v", tmpl.Name, err)
		}
		tmpl.SetDefaults()
		templates = append(templates, tmpl.Spec)
	}
	s, err := Merge(templates, []spec.AnalysisRunArgument{{Name: "service-name", Value: "checkout"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New("checkout-1-2", s, t0)
	if err != nil {
		t.Fatal(err)
	}

	rate := r.Metrics[0]
	if q := rate.Provider.Prometheus.Query; q == "" || Placeholders(rate) == nil || Placeholders(rate)[0] != "prometheus-token" {
		t.Fatalf("success-rate placeholders = %v, query %q", Placeholders(rate), q)
	}
	if got := r.Metrics[1].Provider.Prometheus.RangeQuery.Start; got != `now() - duration("5m")` {
		t.Errorf("range start = %q", got)
	}
	if got := r.Metrics[3].Provider.Web.URL; got != "http://checkout.default.svc/healthz" {
		t.Errorf("web url = %q", got)
	}
	if res, _ := r.Result("smoke"); !res.DryRun {
		t.Error("smoke is not a dry run")
	}
	if res, _ := r.Result("p99"); res.Retain != 3 {
		t.Errorf("p99 retains %d", res.Retain)
	}

	// The caller substitutes the secret for the measurement only.
	due := r.Due(t0)
	if len(due) != 4 {
		t.Fatalf("due at start: %d metrics", len(due))
	}
	withSecret, err := Substitute(due[0], map[string]string{"prometheus-token": "s3cret"})
	if err != nil || withSecret.Provider.Prometheus.Headers[0].Value != "Bearer s3cret" {
		t.Fatalf("secret substitution: %v %+v", err, withSecret.Provider.Prometheus.Headers)
	}
	if r.Metrics[0].Provider.Prometheus.Headers[0].Value != "Bearer {{ args.prometheus-token }}" {
		t.Error("the run kept the secret")
	}

	at := t0
	for i, result := range [][]float64{{0.99}, {}, {0.5}, {0.2}} {
		at = at.Add(time.Minute)
		r = Record(r, "success-rate", metrics.Measurement{Result: result, StartedAt: at, FinishedAt: at})
		res, _ := r.Result("success-rate")
		want := []spec.AnalysisPhase{R, R, R, F}[i]
		if res.Phase != want {
			t.Fatalf("after %d measurements: %s (%s), want %s", i+1, res.Phase, res.Reason, want)
		}
	}
	if r.Phase != F {
		t.Fatalf("run = %s", r.Phase)
	}
	if got := r.Summary(); got.Failed != 1 || got.Successful != 2 || got.Message == "" {
		t.Errorf("summary = %+v", got)
	}
}
