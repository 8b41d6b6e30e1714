package analyzer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/datadogtest"
)

// TestDatadogMetricReadsItsKeysFromTheEnvironment runs a datadog metric
// through the analyzer on the local platform: the keys and the address come
// from SLUICE_SECRET_DATADOG_*, and keys that Datadog echoes in an error
// never reach the published measurement.
func TestDatadogMetricReadsItsKeysFromTheEnvironment(t *testing.T) {
	t.Parallel()
	dd := datadogtest.Start(t, "", "")
	dd.Answer(datadogtest.Answer{Columns: []datadogtest.Column{{Name: "errors / requests", Values: []*float64{datadogtest.Float(0.002)}}}})
	b := startBus(t)
	env := map[string]string{
		"SLUICE_SECRET_DATADOG_API_KEY": dd.APIKey,
		"SLUICE_SECRET_DATADOG_APP_KEY": dd.AppKey,
		"SLUICE_SECRET_DATADOG_ADDRESS": dd.URL,
	}
	startAnalyzer(t, b, func(c *Config) { c.Getenv = func(k string) string { return env[k] } })
	rs := watchResults(t, b.client)
	tmpl := template(t, `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: dd-errors}
spec:
  metrics:
  - name: error-ratio
    consecutiveErrorLimit: 0
    successCondition: result <= 0.01
    provider:
      datadog:
        apiVersion: v2
        queries:
          errors: sum:requests.errors{service:web}.as_count()
          requests: sum:requests{service:web}.as_count()
        formula: errors / requests
`)
	r := events.Ref{Namespace: "prod", Name: "web"}
	applyTemplates(t, b.client, r.Namespace, tmpl)

	ok := runTask(r, "dd-1", 1, "", []spec.AnalysisTemplate{tmpl})
	sendTask(t, b.client, ok)
	checkVerdict(t, rs.finished(t, ok), successful, "")
	if m := checkMeasured(t, rs, ok, "error-ratio", 1, successful)[0].Measurement; m.Value != "0.002" || m.Provider != "datadog" {
		t.Errorf("measurement = %+v; want value 0.002 from datadog", m)
	}

	dd.Answer(datadogtest.Answer{Status: 400, Errors: []string{"bad query"}, EchoKeys: true})
	echoed := runTask(r, "dd-2", 2, "", []spec.AnalysisTemplate{tmpl})
	sendTask(t, b.client, echoed)
	checkVerdict(t, rs.finished(t, echoed), errorP, "")
	m := checkMeasured(t, rs, echoed, "error-ratio", 1, errorP)[0].Measurement
	all := fmt.Sprintf("%+v", m)
	if strings.Contains(all, dd.APIKey) || strings.Contains(all, dd.AppKey) || !strings.Contains(m.Message, "bad query") {
		t.Errorf("measurement = %+v; want Datadog's message with the keys redacted", m)
	}
}
