package analyzer

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/datadogtest"
	"github.com/sluicehq/sluice/services/analyzer/internal/graphitetest"
	"github.com/sluicehq/sluice/services/analyzer/internal/influxdbtest"
	"github.com/sluicehq/sluice/services/analyzer/internal/newrelictest"
)

// TestProviderCredentialsReachNoStreamBucketOrLog measures one metric of
// every provider that reads credentials (datadog's keys, newRelic's key,
// influxdb's token, a graphite password in an address from a Secret
// argument) against servers that check them and then echo them back in
// an error, as careless backends do. Each measurement must show them
// redacted, and none may reach a stored message (every stream and bucket)
// or a log line.
func TestProviderCredentialsReachNoStreamBucketOrLog(t *testing.T) {
	t.Parallel()
	const (
		nrKey       = "NRAK-s3cr3tkey0123456789"
		influxToken = "influx-t0ken-9d8c7b6a"
		grPassword  = "gr4phite-s3cret"
		fluxQuery   = `from(bucket: "app") |> range(start: -5m)`
	)
	dd := datadogtest.Start(t, "", "")
	dd.Answer(datadogtest.Answer{Status: http.StatusBadRequest, Errors: []string{"bad query"}, EchoKeys: true})

	nr := newrelictest.Start(t, newrelictest.Options{APIKey: nrKey, AccountID: 42})
	nr.Answer(newrelictest.Answer{Status: http.StatusInternalServerError, Errors: []newrelictest.GraphQLError{{Message: "internal error serving key " + nrKey, ErrorClass: "SERVER_ERROR"}}})

	ix := influxdbtest.Start(t, influxdbtest.Options{Token: influxToken, Org: "acme"})
	ix.Answer(fluxQuery, influxdbtest.Response{Status: http.StatusInternalServerError, Code: "internal error", Message: "query by token " + influxToken + " failed"})

	gr := graphitetest.Start(t, graphitetest.Options{Username: "sluice", Password: grPassword, Guard: func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "sluice" && p == grPassword {
			http.Error(w, "render failed for sluice:"+grPassword, http.StatusInternalServerError)
			return true
		}
		return false
	}})
	grURL, err := url.Parse(gr.URL)
	if err != nil {
		t.Fatal(err)
	}
	grURL.User = url.UserPassword("sluice", grPassword)

	env := map[string]string{
		"SLUICE_SECRET_DATADOG_API_KEY":             dd.APIKey,
		"SLUICE_SECRET_DATADOG_APP_KEY":             dd.AppKey,
		"SLUICE_SECRET_DATADOG_ADDRESS":             dd.URL,
		"SLUICE_SECRET_NEWRELIC_PERSONAL_API_KEY":   nrKey,
		"SLUICE_SECRET_NEWRELIC_ACCOUNT_ID":         "42",
		"SLUICE_SECRET_NEWRELIC_BASE_URL_NERDGRAPH": nr.NerdGraphURL(),
		"SLUICE_SECRET_INFLUXDB_ADDRESS":            ix.URL,
		"SLUICE_SECRET_INFLUXDB_ORG":                "acme",
		"SLUICE_SECRET_INFLUXDB_AUTHTOKEN":          influxToken,
		"SLUICE_SECRET_GRAPHITE_ADDRESS":            grURL.String(),
	}
	secrets := map[string]string{"datadog api-key": dd.APIKey, "datadog app-key": dd.AppKey, "newRelic key": nrKey, "influxdb token": influxToken, "graphite password": grPassword}

	b := startBus(t)
	logs := &systemtest.Logs{}
	startAnalyzer(t, b, func(c *Config) {
		c.Getenv = func(k string) string { return env[k] }
		c.Logger = logs.Logger(slog.LevelDebug)
	})
	rs := watchResults(t, b.client)
	r := events.Ref{Namespace: "prod", Name: "web"}
	for i, metric := range []string{
		`{name: datadog, consecutiveErrorLimit: 0, successCondition: result < 0.01, provider: {datadog: {query: "avg:errors{service:web}"}}}`,
		`{name: newrelic, consecutiveErrorLimit: 0, successCondition: result.count < 10, provider: {newRelic: {query: "SELECT count(*) FROM Transaction"}}}`,
		fmt.Sprintf(`{name: influxdb, consecutiveErrorLimit: 0, successCondition: "all(result, {# < 0.01})", provider: {influxdb: {query: %q}}}`, fluxQuery),
		`{name: graphite, consecutiveErrorLimit: 0, successCondition: "all(result, {# < 1})", provider: {graphite: {address: "{{args.graphite}}", query: "target=errors"}}}`,
	} {
		tmpl := template(t, `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: credentials}
spec:
  args:
  - name: graphite
    valueFrom: {secretKeyRef: {name: graphite, key: address}}
  metrics:
  - `+metric+`
`)
		name := tmpl.Spec.Metrics[0].Name
		applyTemplates(t, b.client, r.Namespace, tmpl)
		task := runTask(r, "credentials-"+name, int64(i+1), "", []spec.AnalysisTemplate{tmpl})
		sendTask(t, b.client, task)
		checkVerdict(t, rs.finished(t, task), errorP, "")
		if m := checkMeasured(t, rs, task, name, 1, errorP)[0].Measurement; !strings.Contains(m.Message, "*****") {
			t.Errorf("%s: the credential the server echoed is not shown redacted: %q", name, m.Message)
		}
	}
	stored := 0
	for stream, msgs := range eventstest.StoredMessages(t, b.client) {
		for _, msg := range msgs {
			stored++
			for what, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("stream %s holds the %s: %s", stream, what, msg)
				}
			}
		}
	}
	if stored == 0 {
		t.Error("no stored message: the scan proves nothing")
	}
	if !strings.Contains(logs.String(), "analysis run finished") {
		t.Errorf("no analyzer log line was captured: the log check proves nothing\n%s", logs.String())
	}
	for _, s := range secrets {
		logs.NoSecrets(t, s)
	}
}
