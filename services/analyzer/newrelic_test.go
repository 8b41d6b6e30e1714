package analyzer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/newrelictest"
)

// TestNewRelicMetricThroughTheAnalyzer: a newRelic metric measured by the
// registered provider with the profile from the environment; the key never
// leaves the analyzer, and a query that returns no rows is an Error
// verdict, never a success.
func TestNewRelicMetricThroughTheAnalyzer(t *testing.T) {
	t.Parallel()
	const key = "NRAK-ANALYZERTEST0000000000000"
	nr := newrelictest.Start(t, newrelictest.Options{APIKey: key, AccountID: 42})
	b := startBus(t)
	env := map[string]string{
		"SLUICE_SECRET_NEWRELIC_PERSONAL_API_KEY":   key,
		"SLUICE_SECRET_NEWRELIC_ACCOUNT_ID":         "42",
		"SLUICE_SECRET_NEWRELIC_BASE_URL_NERDGRAPH": nr.NerdGraphURL(),
	}
	startAnalyzer(t, b, func(c *Config) { c.Getenv = func(k string) string { return env[k] } })
	rs := watchResults(t, b.client)
	tmpl := template(t, `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  metrics:
  - name: success-rate
    consecutiveErrorLimit: 0
    successCondition: result.successRate >= 95
    provider:
      newRelic:
        query: FROM Transaction SELECT percentage(count(*), WHERE httpResponseCode != 500) AS successRate
`)
	r := events.Ref{Namespace: "prod", Name: "checkout"}
	applyTemplates(t, b.client, r.Namespace, tmpl)

	for i, tc := range []struct {
		answer newrelictest.Answer
		phase  spec.AnalysisPhase
		value  string
	}{
		{newrelictest.Rows(map[string]any{"successRate": 99.5}), successful, `{"successRate":99.5}`},
		{newrelictest.Rows(map[string]any{"successRate": 80}), failedP, `{"successRate":80}`},
		{newrelictest.Rows(), errorP, ""},
	} {
		nr.Answer(tc.answer)
		task := runTask(r, fmt.Sprintf("checkout-%d", i+1), int64(i+1), "", []spec.AnalysisTemplate{tmpl})
		sendTask(t, b.client, task)
		checkVerdict(t, rs.finished(t, task), tc.phase, "")
		m := checkMeasured(t, rs, task, "success-rate", 1, tc.phase)[0].Measurement
		if m.Value != tc.value || m.Provider != "newRelic" {
			t.Errorf("run %d: measured %+v; want value %s from newRelic", i+1, m, tc.value)
		}
		if strings.Contains(m.Value+m.Query+m.Message, key) {
			t.Errorf("run %d: the key is in the measurement: %+v", i+1, m)
		}
	}
	if got := len(nr.Requests()); got != 3 {
		t.Errorf("NerdGraph answered %d queries, want 3", got)
	}
}
