package analyzer

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/graphitetest"
)

// TestGraphiteRun runs graphite analyses end to end: the address, with
// basic-auth credentials, comes from a Secret through an argument; a
// service with data passes, one whose series holds only nulls ends in
// Error; the password reaches no measurement.
func TestGraphiteRun(t *testing.T) {
	t.Parallel()
	const password = "gr4phite-pa55"
	srv := graphitetest.Start(t, graphitetest.Options{
		Username: "sluice", Password: password,
		Targets: map[string][]graphitetest.Series{
			"stats.good.errors":  {{Target: "stats.good.errors", Values: []any{0.5, nil, 0.2}}},
			"stats.quiet.errors": {{Target: "stats.quiet.errors", Values: []any{nil, nil}}},
		},
	})
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("sluice", password)
	env := map[string]string{"SLUICE_SECRET_GRAPHITE_ADDRESS": u.String()}
	b := startBus(t)
	startAnalyzer(t, b, func(c *Config) { c.Getenv = func(k string) string { return env[k] } })
	rs := watchResults(t, b.client)
	tmpl := template(t, `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: graphite-errors}
spec:
  args:
  - name: service
  - name: address
    valueFrom: {secretKeyRef: {name: graphite, key: address}}
  metrics:
  - name: errors
    consecutiveErrorLimit: 0
    successCondition: all(result, {# < 1})
    provider:
      graphite:
        address: "{{args.address}}"
        query: |
          target=stats.{{args.service}}.errors
          &from=-10min
`)
	r := events.Ref{Namespace: "prod", Name: "checkout"}
	applyTemplates(t, b.client, r.Namespace, tmpl)

	tests := []struct {
		service string
		phase   spec.AnalysisPhase
		value   string
		message string
	}{
		{"good", successful, "[0.500000,0.200000]", ""},
		{"quiet", errorP, "", `no values found: the 2 datapoints of series "stats.quiet.errors" are all null`},
	}
	for i, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			task := runTask(r, fmt.Sprintf("graphite-%d", i), int64(i+1), tc.service, []spec.AnalysisTemplate{tmpl})
			sendTask(t, b.client, task)
			checkVerdict(t, rs.finished(t, task), tc.phase, "")
			m := checkMeasured(t, rs, task, "errors", 1, tc.phase)[0].Measurement
			if m.Provider != "graphite" || m.Value != tc.value || m.Message != tc.message {
				t.Errorf("measurement: provider %q value %q message %q", m.Provider, m.Value, m.Message)
			}
			if want := "target=stats." + tc.service + ".errors&from=-10min"; m.Query != want {
				t.Errorf("query %q, want %q", m.Query, want)
			}
			if all := m.Value + m.Query + m.Message; strings.Contains(all, password) {
				t.Errorf("the password reached the measurement: %+v", m)
			}
		})
	}
}
