package cloudwatch_test

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/cloudwatchtest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/cloudwatch"
)

var now = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// errorRate is Argo Rollouts' documented cloudWatch example: a metric-math
// rate over two metrics that are not returned.
func errorRate() spec.Metric {
	return spec.Metric{
		Name:             "error-rate",
		SuccessCondition: "len(result[0].Values) >= 2 and all(result[0].Values, {# <= 0.01})",
		Provider: spec.MetricProvider{CloudWatch: &spec.CloudWatchMetric{
			Interval: "30m",
			MetricDataQueries: []spec.CloudWatchMetricDataQuery{
				{Id: "rate", Expression: ptr("errors / requests"), Label: ptr("error rate")},
				{Id: "errors", MetricStat: &spec.CloudWatchMetricStat{
					Metric: spec.CloudWatchMetricStatMetric{Namespace: ptr("app"), MetricName: "errors", Dimensions: []spec.CloudWatchMetricStatMetricDimension{{Name: "Service", Value: "checkout"}}},
					Period: intstr.FromInt32(300), Stat: "Sum", Unit: "Count",
				}, ReturnData: ptr(false)},
				{Id: "requests", MetricStat: &spec.CloudWatchMetricStat{
					Metric: spec.CloudWatchMetricStatMetric{Namespace: ptr("app"), MetricName: "requests"},
					Period: intstr.FromString("300"), Stat: "Sum",
				}, Period: ptr(intstr.FromInt32(60)), ReturnData: ptr(false)},
			},
		}},
	}
}

func newProvider(t *testing.T, cfg cloudwatch.Config) *cloudwatch.Provider {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	p, err := cloudwatch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rate(values ...float64) cloudwatchtest.Result {
	ts := make([]time.Time, len(values))
	for i := range values {
		ts[i] = now.Add(-time.Duration(i) * 5 * time.Minute)
	}
	return cloudwatchtest.Result{ID: "rate", Label: "error rate", Timestamps: ts, Values: values}
}

// TestMeasure drives the provider through the real SDK client against the
// fake CloudWatch, reached through AWS_ENDPOINT_URL_CLOUDWATCH with
// credentials from the environment, and judges the result with the
// metric's condition as a run does.
func TestMeasure(t *testing.T) {
	tests := []struct {
		name      string
		pages     []cloudwatchtest.Page
		fail      *cloudwatchtest.Error
		wantPhase spec.AnalysisPhase // after analysis.Judge
		wantValue string
		wantMsg   string // substring of the message
		wantMeta  string
		wantCalls int
	}{
		{
			name:      "healthy rate",
			pages:     []cloudwatchtest.Page{{Results: []cloudwatchtest.Result{rate(0.004, 0.006, 0.001)}}},
			wantPhase: spec.AnalysisPhaseSuccessful, wantValue: "[[0.004 0.006 0.001]]", wantCalls: 1,
		},
		{
			name:      "one datapoint over the threshold fails",
			pages:     []cloudwatchtest.Page{{Results: []cloudwatchtest.Result{rate(0.004, 0.02)}}},
			wantPhase: spec.AnalysisPhaseFailed, wantValue: "[[0.004 0.02]]", wantMsg: "is false", wantCalls: 1,
		},
		{
			name: "pages are joined by query id",
			pages: []cloudwatchtest.Page{
				{Results: []cloudwatchtest.Result{{ID: "rate", Label: "error rate", Values: []float64{0.001}, Timestamps: []time.Time{now}, StatusCode: "PartialData"}}},
				{Results: []cloudwatchtest.Result{{ID: "rate", Values: []float64{0.002}, Timestamps: []time.Time{now.Add(-time.Minute)}, StatusCode: "PartialData"}}},
				{Results: []cloudwatchtest.Result{{ID: "rate", Values: []float64{0.03}, Timestamps: []time.Time{now.Add(-2 * time.Minute)}}}},
			},
			wantPhase: spec.AnalysisPhaseFailed, wantValue: "[[0.001 0.002 0.03]]", wantCalls: 3,
		},
		{
			name:      "messages are kept as metadata",
			pages:     []cloudwatchtest.Page{{Results: []cloudwatchtest.Result{rate(0.001, 0.002)}, Messages: [][2]string{{"MaxQueryTimeRangeExceed", "The time range is too long"}}}},
			wantPhase: spec.AnalysisPhaseSuccessful, wantValue: "[[0.001 0.002]]", wantMeta: "MaxQueryTimeRangeExceed: The time range is too long", wantCalls: 1,
		},
		{
			name:      "no datapoints is an error, not a pass",
			pages:     []cloudwatchtest.Page{{Results: []cloudwatchtest.Result{{ID: "rate"}}}},
			wantPhase: spec.AnalysisPhaseError, wantValue: "[[]]", wantMsg: "no datapoints for rate in the interval", wantCalls: 1,
		},
		{
			name:      "no result at all is an error",
			pages:     []cloudwatchtest.Page{{}},
			wantPhase: spec.AnalysisPhaseError, wantValue: "[]", wantMsg: "CloudWatch returned no results", wantCalls: 1,
		},
		{
			name:      "an incomplete query is an error",
			pages:     []cloudwatchtest.Page{{Results: []cloudwatchtest.Result{{ID: "rate", Values: []float64{0.001}, StatusCode: "InternalError", Messages: [][2]string{{"InternalError", "retry later"}}}}}},
			wantPhase: spec.AnalysisPhaseError, wantValue: "[[0.001]]", wantMsg: "CloudWatch did not complete rate (InternalError: InternalError: retry later)", wantCalls: 1,
		},
		{
			name:      "throttled, not retried",
			fail:      &cloudwatchtest.Throttling,
			wantPhase: spec.AnalysisPhaseError, wantMsg: "CloudWatch GetMetricData: HTTP 400 Throttling: Rate exceeded", wantCalls: 1,
		},
		{
			name:      "429, not retried",
			fail:      &cloudwatchtest.TooManyRequests,
			wantPhase: spec.AnalysisPhaseError, wantMsg: "HTTP 429 Throttling: Rate exceeded", wantCalls: 1,
		},
		{
			name:      "500, not retried",
			fail:      &cloudwatchtest.InternalFailure,
			wantPhase: spec.AnalysisPhaseError, wantMsg: "HTTP 500 InternalFailure: The request processing has failed", wantCalls: 1,
		},
		{
			name:      "access denied",
			fail:      &cloudwatchtest.AccessDenied,
			wantPhase: spec.AnalysisPhaseError, wantMsg: "HTTP 403 AccessDenied: User: arn:aws:iam::123456789012:user/sluice is not authorized to perform: cloudwatch:GetMetricData", wantCalls: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := cloudwatchtest.Start(t)
			srv.Setenv(t)
			srv.SetPages(tc.pages...)
			t.Setenv("AWS_MAX_ATTEMPTS", "5") // ignored: one attempt
			t.Setenv("AWS_RETRY_MODE", "adaptive")
			if tc.fail != nil {
				srv.Fail(*tc.fail)
			}
			metric := errorRate()
			m := newProvider(t, cloudwatch.Config{}).Measure(context.Background(), metrics.Request{Metric: metric})
			judged := analysis.Judge(metric, m)
			if judged.Phase != tc.wantPhase {
				t.Errorf("phase = %q (%s), want %q", judged.Phase, judged.Message, tc.wantPhase)
			}
			if m.Value != tc.wantValue {
				t.Errorf("value = %q, want %q", m.Value, tc.wantValue)
			}
			if !strings.Contains(judged.Message, tc.wantMsg) {
				t.Errorf("message = %q, want it to hold %q", judged.Message, tc.wantMsg)
			}
			if got := m.Metadata[cloudwatch.MetadataMessages]; got != tc.wantMeta {
				t.Errorf("metadata messages = %q, want %q", got, tc.wantMeta)
			}
			if m.Provider != cloudwatch.Type || m.StartedAt.IsZero() || m.FinishedAt.IsZero() {
				t.Errorf("provider %q, startedAt %v, finishedAt %v", m.Provider, m.StartedAt, m.FinishedAt)
			}
			if strings.Contains(m.Message+m.Value+m.Query, cloudwatchtest.SecretAccessKey) {
				t.Errorf("measurement holds the secret key: %+v", m)
			}
			reqs := srv.Requests()
			if len(reqs) != tc.wantCalls {
				t.Fatalf("GetMetricData calls = %d, want %d (rejected: %q)", len(reqs), tc.wantCalls, srv.Rejected())
			}
			for i, r := range reqs {
				want := ""
				if i > 0 {
					want = "page-" + strconv.Itoa(i)
				}
				if r.NextToken != want {
					t.Errorf("call %d NextToken = %q, want %q", i, r.NextToken, want)
				}
			}
		})
	}
}

// TestMeasureRequest checks the request CloudWatch receives: the window
// and every query field, mapped as Argo Rollouts maps them.
func TestMeasureRequest(t *testing.T) {
	srv := cloudwatchtest.Start(t)
	srv.Setenv(t)
	srv.SetPages(cloudwatchtest.Page{Results: []cloudwatchtest.Result{rate(0.001)}})
	m := newProvider(t, cloudwatch.Config{}).Measure(context.Background(), metrics.Request{Metric: errorRate()})
	if m.Phase != "" {
		t.Fatalf("phase %q: %s", m.Phase, m.Message)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("calls = %d (rejected %q)", len(reqs), srv.Rejected())
	}
	got := reqs[0]
	if !got.StartTime.Equal(now.Add(-30*time.Minute)) || !got.EndTime.Equal(now) {
		t.Errorf("window = [%v, %v], want the 30m before %v", got.StartTime, got.EndTime, now)
	}
	want := []cloudwatchtest.Query{
		{ID: "rate", Expression: "errors / requests", Label: "error rate"},
		{ID: "errors", ReturnData: ptr(false), MetricStat: &cloudwatchtest.MetricStat{Namespace: "app", MetricName: "errors", Dimensions: []string{"Service=checkout"}, Period: 300, Stat: "Sum", Unit: "Count"}},
		{ID: "requests", Period: 60, ReturnData: ptr(false), MetricStat: &cloudwatchtest.MetricStat{Namespace: "app", MetricName: "requests", Period: 300, Stat: "Sum"}},
	}
	if !reflect.DeepEqual(got.Queries, want) {
		t.Errorf("queries:\n got %+v\nwant %+v", got.Queries, want)
	}
	if wantQ := "rate = errors / requests; errors: app errors{Service=checkout} Sum 300s; requests: app requests Sum 300s"; m.Query != wantQ {
		t.Errorf("query = %q, want %q", m.Query, wantQ)
	}
	// What conditions see is Argo's: the SDK's MetricDataResults.
	rs, ok := m.Result.([]types.MetricDataResult)
	if !ok || len(rs) != 1 || *rs[0].Id != "rate" || *rs[0].Label != "error rate" || rs[0].StatusCode != types.StatusCodeComplete || len(rs[0].Timestamps) != 1 || !rs[0].Timestamps[0].Equal(now) {
		t.Errorf("result = %#v", m.Result)
	}
}

// TestMeasureFails covers the measurements that never reach a query or
// never get an answer: each is an Error that says why, without a secret.
func TestMeasureFails(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		metric  func(*spec.CloudWatchMetric)
		stall   bool
		cancel  bool // the caller cancels the measurement
		wantMsg string
		calls   int
	}{
		{name: "wrong secret key", env: map[string]string{"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, wantMsg: "HTTP 403 SignatureDoesNotMatch"},
		{name: "unknown access key", env: map[string]string{"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN"}, wantMsg: "HTTP 403 InvalidClientTokenId"},
		{name: "unreachable endpoint", env: map[string]string{"AWS_ENDPOINT_URL_CLOUDWATCH": "http://127.0.0.1:1"}, wantMsg: "POST http://127.0.0.1:1/service/GraniteServiceVersion20100801/operation/GetMetricData: dial tcp 127.0.0.1:1"},
		{name: "no region", env: map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": ""}, wantMsg: "no AWS region: set AWS_REGION"},
		{name: "no credentials", env: map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, wantMsg: "AWS credentials from the default chain"},
		{name: "period not a number", metric: func(m *spec.CloudWatchMetric) {
			m.MetricDataQueries[1].MetricStat.Period = intstr.FromString("five")
		}, wantMsg: `metricDataQueries[1].metricStat.period: "five" is not a number of seconds`},
		{name: "interval not a duration", metric: func(m *spec.CloudWatchMetric) { m.Interval = "soon" }, wantMsg: "interval: invalid duration"},
		{name: "timeout", stall: true, wantMsg: "CloudWatch GetMetricData timed out after 300ms", calls: 1},
		{name: "cancelled is no timeout", cancel: true, wantMsg: "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := cloudwatchtest.Start(t)
			srv.Setenv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if tc.stall {
				srv.Stall()
			}
			metric := errorRate()
			if tc.metric != nil {
				tc.metric(metric.Provider.CloudWatch)
			}
			p := newProvider(t, cloudwatch.Config{Timeout: 300 * time.Millisecond})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			m := p.Measure(ctx, metrics.Request{Metric: metric})
			t.Logf("message: %s", m.Message)
			if m.Phase != spec.AnalysisPhaseError {
				t.Fatalf("phase = %q, want Error", m.Phase)
			}
			if !strings.Contains(m.Message, tc.wantMsg) {
				t.Errorf("message = %q, want it to hold %q", m.Message, tc.wantMsg)
			}
			if tc.cancel && strings.Contains(m.Message, "timed out") {
				t.Errorf("a cancelled measurement says it timed out: %q", m.Message)
			}
			for _, secret := range []string{cloudwatchtest.SecretAccessKey, "not-the-secret", "Signature="} {
				if strings.Contains(m.Message, secret) {
					t.Errorf("message holds %q: %s", secret, m.Message)
				}
			}
			if got := len(srv.Requests()); got != tc.calls {
				t.Errorf("accepted calls = %d, want %d", got, tc.calls)
			}
		})
	}
}

// TestMeasureAWSConfig uses a Config.AWS override instead of the chain.
func TestMeasureAWSConfig(t *testing.T) {
	srv := cloudwatchtest.Start(t)
	srv.SetPages(cloudwatchtest.Page{Results: []cloudwatchtest.Result{rate(0.001, 0.002)}})
	cfg := srv.AWSConfig()
	p := newProvider(t, cloudwatch.Config{AWS: &cfg})
	m := analysis.Judge(errorRate(), p.Measure(context.Background(), metrics.Request{Metric: errorRate()}))
	if m.Phase != spec.AnalysisPhaseSuccessful {
		t.Fatalf("phase = %q: %s (rejected %q)", m.Phase, m.Message, srv.Rejected())
	}
}

func TestTimeout(t *testing.T) {
	if got := newProvider(t, cloudwatch.Config{}).Timeout(errorRate()); got != cloudwatch.DefaultTimeout {
		t.Errorf("Timeout = %s, want %s", got, cloudwatch.DefaultTimeout)
	}
	if _, err := cloudwatch.New(cloudwatch.Config{Timeout: -time.Second}); err == nil {
		t.Error("New accepted a negative timeout")
	}
}

// TestMeasureCABundle reaches an HTTPS endpoint whose certificate only
// AWS_CA_BUNDLE makes trusted: the SDK's own client honours it.
func TestMeasureCABundle(t *testing.T) {
	srv := cloudwatchtest.StartTLS(t)
	srv.Setenv(t)
	srv.SetPages(cloudwatchtest.Page{Results: []cloudwatchtest.Result{rate(0.001, 0.002)}})
	m := analysis.Judge(errorRate(), newProvider(t, cloudwatch.Config{}).Measure(context.Background(), metrics.Request{Metric: errorRate()}))
	if m.Phase != spec.AnalysisPhaseSuccessful {
		t.Fatalf("phase = %q: %s (rejected %q)", m.Phase, m.Message, srv.Rejected())
	}

	t.Setenv("AWS_CA_BUNDLE", "")
	m = newProvider(t, cloudwatch.Config{}).Measure(context.Background(), metrics.Request{Metric: errorRate()})
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "certificate") {
		t.Fatalf("without the CA bundle: phase %q, message %q; want a certificate error", m.Phase, m.Message)
	}
}

// TestMeasurePageLimit: pages are followed up to MaxPages, not forever.
func TestMeasurePageLimit(t *testing.T) {
	srv := cloudwatchtest.Start(t)
	srv.Setenv(t)
	pages := make([]cloudwatchtest.Page, cloudwatch.MaxPages+1)
	for i := range pages {
		pages[i] = cloudwatchtest.Page{Results: []cloudwatchtest.Result{rate(0.001)}}
	}
	srv.SetPages(pages...)
	m := newProvider(t, cloudwatch.Config{}).Measure(context.Background(), metrics.Request{Metric: errorRate()})
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "more than 100 pages") {
		t.Errorf("phase %q, message %q; want an Error about the pages", m.Phase, m.Message)
	}
	if got := len(srv.Requests()); got != cloudwatch.MaxPages {
		t.Errorf("calls = %d, want %d", got, cloudwatch.MaxPages)
	}
}
