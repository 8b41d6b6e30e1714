package analyzer

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
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
	startAnalyzer(t, b, func(c *Config) {
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
}
