package analyzer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/influxdbtest"
)

// TestInfluxdbProfileFromTheEnvironment: on the local platform the
// influxdb provider's profile is SLUICE_SECRET_INFLUXDB_<KEY>, and the
// token never reaches a measurement.
func TestInfluxdbProfileFromTheEnvironment(t *testing.T) {
	t.Parallel()
	const token, query = "influx-t0ken-s3cr3t", `from(bucket: "app") |> range(start: -5m) |> mean()`
	srv := influxdbtest.Start(t, influxdbtest.Options{Token: token, Org: "acme"})
	srv.Answer(query, influxdbtest.Response{Tables: []influxdbtest.Table{influxdbtest.Series("http", "error_rate", "double", "0.01")}})
	b := startBus(t)
	env := map[string]string{
		"SLUICE_SECRET_INFLUXDB_ADDRESS":   srv.URL,
		"SLUICE_SECRET_INFLUXDB_ORG":       "acme",
		"SLUICE_SECRET_INFLUXDB_AUTHTOKEN": token,
	}
	startAnalyzer(t, b, func(c *Config) { c.Getenv = func(k string) string { return env[k] } })
	rs := watchResults(t, b.client)
	influxTemplate := func(profile string) spec.AnalysisTemplate {
		return template(t, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: check}
spec:
  metrics:
  - name: error-rate
    consecutiveErrorLimit: 0
    successCondition: result[0] < 0.05
    provider:
      influxdb:
        profile: %s
        query: '%s'
`, profile, query))
	}
	r := events.Ref{Namespace: "prod", Name: "web"}

	applyTemplates(t, b.client, r.Namespace, influxTemplate("influxdb"))
	ok := runTask(r, "web-1", 1, "", []spec.AnalysisTemplate{influxTemplate("influxdb")})
	sendTask(t, b.client, ok)
	checkVerdict(t, rs.finished(t, ok), successful, "")
	m := checkMeasured(t, rs, ok, "error-rate", 1, successful)[0].Measurement
	if m.Value != "[0.01]" || strings.Contains(m.Value+m.Query+m.Message, token) {
		t.Errorf("measurement %+v; want value [0.01] and no token", m)
	}

	applyTemplates(t, b.client, r.Namespace, influxTemplate("influx-other"))
	missing := runTask(r, "web-2", 2, "", []spec.AnalysisTemplate{influxTemplate("influx-other")})
	sendTask(t, b.client, missing)
	checkVerdict(t, rs.finished(t, missing), errorP, "")
	m = checkMeasured(t, rs, missing, "error-rate", 1, errorP)[0].Measurement
	if !strings.Contains(m.Message, "set SLUICE_SECRET_INFLUX_OTHER_AUTHTOKEN") {
		t.Errorf("message %q does not say which variable to set", m.Message)
	}
}
