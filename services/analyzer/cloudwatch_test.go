package analyzer

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/cloudwatchtest"
	"github.com/sluicehq/sluice/services/analyzer/metrics/cloudwatch"
)

// TestCloudWatchRun runs cloudWatch metrics end to end through the
// analyzer's default providers and the fake CloudWatch: datapoints under
// the threshold succeed; a window without datapoints ends in Error, never
// Successful, although Argo's `all(...)` is true on an empty list.
func TestCloudWatchRun(t *testing.T) {
	t.Parallel()
	b := startBus(t)
	cw := cloudwatchtest.Start(t)
	awsCfg := cw.AWSConfig()
	logs := &systemtest.Logs{}
	startAnalyzer(t, b, func(c *Config) {
		c.Logger = logs.Logger(slog.LevelDebug)
		reg, err := DefaultProviders(ProviderConfig{CloudWatch: cloudwatch.Config{AWS: &awsCfg}})
		if err != nil {
			t.Fatal(err)
		}
		c.Providers = reg
	})
	rs := watchResults(t, b.client)
	r := events.Ref{Namespace: "prod", Name: "checkout"}
	tmpl := template(t, `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: elb-errors
spec:
  args:
  - name: service
  metrics:
  - name: elb-errors
    interval: 200ms
    count: 2
    consecutiveErrorLimit: 0
    successCondition: all(result[0].Values, {# <= 0.01})
    provider:
      cloudWatch:
        interval: 10m
        metricDataQueries:
        - id: errors
          metricStat:
            metric:
              namespace: app
              metricName: errors
              dimensions:
              - name: Service
                value: "{{args.service}}"
            period: 60
            stat: Average
`)
	applyTemplates(t, b.client, r.Namespace, tmpl)

	now := time.Now()
	cw.SetPages(cloudwatchtest.Page{Results: []cloudwatchtest.Result{{ID: "errors", Values: []float64{0.001, 0.002}, Timestamps: []time.Time{now, now.Add(-time.Minute)}}}})
	task := runTask(r, "checkout-1", 1, "checkout", []spec.AnalysisTemplate{tmpl})
	sendTask(t, b.client, task)
	checkVerdict(t, rs.finished(t, task), successful, "")
	ms := checkMeasured(t, rs, task, "elb-errors", 2, successful)
	if m := ms[0].Measurement; m.Provider != "cloudWatch" || m.Value != "[[0.001 0.002]]" || m.Query != "errors: app errors{Service=checkout} Average 60s" {
		t.Errorf("measurement: provider %q, value %q, query %q", m.Provider, m.Value, m.Query)
	}

	cw.SetPages(cloudwatchtest.Page{Results: []cloudwatchtest.Result{{ID: "errors"}}})
	task = runTask(r, "checkout-2", 2, "checkout", []spec.AnalysisTemplate{tmpl})
	sendTask(t, b.client, task)
	checkVerdict(t, rs.finished(t, task), errorP, "consecutiveErrors (1) > consecutiveErrorLimit (0)")
	ms = checkMeasured(t, rs, task, "elb-errors", 1, errorP)
	if m := ms[0].Measurement; m.Value != "[[]]" || m.Message == "" {
		t.Errorf("measurement: value %q, message %q", m.Value, m.Message)
	}

	// A refused request: the message is CloudWatch's, and neither the
	// secret key nor the SigV4 signature is stored or logged.
	cw.Fail(cloudwatchtest.AccessDenied)
	task = runTask(r, "checkout-3", 3, "checkout", []spec.AnalysisTemplate{tmpl})
	sendTask(t, b.client, task)
	checkVerdict(t, rs.finished(t, task), errorP, "")
	ms = checkMeasured(t, rs, task, "elb-errors", 1, errorP)
	if m := ms[0].Measurement; !strings.Contains(m.Message, "HTTP 403 AccessDenied") {
		t.Errorf("message %q", m.Message)
	}
	stored := 0
	for stream, msgs := range eventstest.StoredMessages(t, b.client) {
		for _, msg := range msgs {
			stored++
			for _, secret := range []string{cloudwatchtest.SecretAccessKey, "Signature="} {
				if strings.Contains(msg, secret) {
					t.Errorf("stream %s holds %q: %s", stream, secret, msg)
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
	logs.NoSecrets(t, cloudwatchtest.SecretAccessKey, "Signature=")
}
