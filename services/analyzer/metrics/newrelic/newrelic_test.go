package newrelic_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/internal/newrelictest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/newrelic"
)

const (
	apiKey  = "NRAK-0123456789ABCDEFGHIJKLMNOPQ"
	account = 1234567
	nrql    = "FROM Transaction SELECT percentage(count(*), WHERE httpResponseCode != 500) AS successRate WHERE appName = 'checkout'"
)

// noBackoff is well under the 1 s minimum wait of the client's retries:
// a failure reported within it was not retried after a backoff.
const noBackoff = 900 * time.Millisecond

func start(t *testing.T) *newrelictest.Server {
	t.Helper()
	return newrelictest.Start(t, newrelictest.Options{APIKey: apiKey, AccountID: account})
}

// env is the analyzer's environment on the local platform: profile
// "newrelic" pointing at srv.
func env(srv *newrelictest.Server) map[string]string {
	return map[string]string{
		"SLUICE_SECRET_NEWRELIC_PERSONAL_API_KEY":   apiKey,
		"SLUICE_SECRET_NEWRELIC_ACCOUNT_ID":         "1234567",
		"SLUICE_SECRET_NEWRELIC_BASE_URL_NERDGRAPH": srv.NerdGraphURL(),
	}
}

// request reads Secrets as the local platform does, from vars.
func request(m *spec.NewRelicMetric, vars map[string]string) metrics.Request {
	secrets := analyzer.EnvSecrets{Getenv: func(k string) string { return vars[k] }}
	read := func(ctx context.Context, name, key string) (string, error) {
		return secrets.Value(ctx, "shop", spec.SecretKeyRef{Name: name, Key: key})
	}
	return metrics.Request{
		Metric:    spec.Metric{Name: "success-rate", Provider: spec.MetricProvider{NewRelic: m}},
		Namespace: "shop", Rollout: "checkout", Run: "checkout-1", ID: "checkout-1.success-rate.1",
		Secret: read, Setting: read,
	}
}

func provider(t *testing.T, cfg newrelic.Config) *newrelic.Provider {
	t.Helper()
	p, err := newrelic.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func TestMeasure(t *testing.T) {
	srv := start(t)
	p := provider(t, newrelic.Config{})
	for _, tc := range []struct {
		name   string
		answer newrelictest.Answer
		metric spec.NewRelicMetric
		// env replaces env(srv), and vars changes it: an empty value
		// unsets a variable.
		env  func(*newrelictest.Server) map[string]string
		vars map[string]string

		wantResult  any
		wantValue   string
		wantErr     []string // substrings of an Error measurement's message
		wantTimeout int64    // the timeout NerdGraph was sent
		wantSent    int      // requests that reached NerdGraph
	}{{
		name:        "one row is the result",
		answer:      newrelictest.Rows(map[string]any{"successRate": 99.5}),
		wantResult:  map[string]any{"successRate": 99.5},
		wantValue:   `{"successRate":99.5}`,
		wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name:        "a function's name with a dot, and the timeout as set",
		answer:      newrelictest.Rows(map[string]any{"average.duration": 0.25, "count": 42}),
		metric:      spec.NewRelicMetric{Timeout: ptr[int64](30)},
		wantResult:  map[string]any{"average.duration": 0.25, "count": float64(42)},
		wantValue:   `{"average.duration":0.25,"count":42}`,
		wantTimeout: 30, wantSent: 1,
	}, {
		name:       "timeout 0 is sent as 0, as Argo Rollouts sends it",
		answer:     newrelictest.Rows(map[string]any{"count": 1}),
		metric:     spec.NewRelicMetric{Timeout: ptr[int64](0)},
		wantResult: map[string]any{"count": float64(1)}, wantValue: `{"count":1}`,
		wantTimeout: 0, wantSent: 1,
	}, {
		name: "several rows (FACET) are the list",
		answer: newrelictest.Rows(
			map[string]any{"appName": "checkout", "count": 3},
			map[string]any{"appName": "cart", "count": 0},
		),
		wantResult: []any{
			map[string]any{"appName": "checkout", "count": float64(3)},
			map[string]any{"appName": "cart", "count": float64(0)},
		},
		wantValue:   `[{"appName":"checkout","count":3},{"appName":"cart","count":0}]`,
		wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name:        "a null stays nil",
		answer:      newrelictest.Rows(map[string]any{"average.duration": nil}),
		wantResult:  map[string]any{"average.duration": nil},
		wantValue:   `{"average.duration":null}`,
		wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name: "no row is an error", answer: newrelictest.Rows(),
		wantErr: []string{"no results returned from NRQL query"}, wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name: "one empty row is an error", answer: newrelictest.Rows(map[string]any{}),
		wantErr: []string{"no results returned from NRQL query"}, wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name: "results null is an error", answer: newrelictest.Answer{NullResults: true},
		wantErr: []string{"no results returned from NRQL query"}, wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name: "a GraphQL error is New Relic's message",
		answer: newrelictest.Answer{Errors: []newrelictest.GraphQLError{{
			Message: "NRQL Syntax Error: Error at line 1 position 6, unexpected 'Transactio'", ErrorClass: "INVALID_NRQL",
		}}},
		wantErr:     []string{"NerdGraph error: NRQL Syntax Error: Error at line 1 position 6, unexpected 'Transactio' (INVALID_NRQL)"},
		wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name: "a deprecation notice with rows is not an error",
		answer: newrelictest.Answer{
			Results: []map[string]any{{"count": 7}},
			Errors:  []newrelictest.GraphQLError{{Message: "This field is deprecated! Please use `nrql` instead."}},
		},
		wantResult: map[string]any{"count": float64(7)}, wantValue: `{"count":7}`,
		wantTimeout: newrelic.DefaultNRQLTimeout, wantSent: 1,
	}, {
		name:     "a wrong key is New Relic's 401, naming the key to check",
		vars:     map[string]string{"SLUICE_SECRET_NEWRELIC_PERSONAL_API_KEY": "NRAK-WRONGKEY000000000000000000"},
		wantErr:  []string{"NerdGraph answered HTTP 401 Unauthorized: Bad API Key or no API Key provided", `check key personal-api-key of the Secret "newrelic"`},
		wantSent: 1,
	}, {
		name: "403",
		answer: newrelictest.Answer{Status: http.StatusForbidden, Errors: []newrelictest.GraphQLError{{
			Message: "The user key does not have access to this operation",
		}}},
		wantErr:  []string{"NerdGraph answered HTTP 403 Forbidden: The user key does not have access to this operation"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:     "an account the key may not read",
		vars:     map[string]string{"SLUICE_SECRET_NEWRELIC_ACCOUNT_ID": "7654321"},
		wantErr:  []string{"NerdGraph error: Not authorized to access account 7654321"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:   "429 is reported once, not retried",
		answer: newrelictest.RateLimited(),
		wantErr: []string{
			"NerdGraph answered HTTP 429 Too Many Requests: Too many requests: NRQL query rate limit exceeded (TOO_MANY_REQUESTS)",
			"New Relic's rate limit", "(Retry-After: 30)",
		},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name: "a rate limit inside a 200 is reported once, not retried",
		answer: newrelictest.Answer{Errors: []newrelictest.GraphQLError{{
			Message: "Too many concurrent queries", ErrorClass: "TOO_MANY_REQUESTS",
		}}},
		wantErr:  []string{"NerdGraph error: Too many concurrent queries (TOO_MANY_REQUESTS)", "New Relic's rate limit"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:     "500 is reported once, not retried",
		answer:   newrelictest.ServerError(),
		wantErr:  []string{"NerdGraph answered HTTP 500 Internal Server Error: An internal error occurred (SERVER_ERROR)"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:     "a 502 from a proxy, not JSON",
		answer:   newrelictest.Answer{Status: http.StatusBadGateway, Body: "<html><body>Bad Gateway</body></html>"},
		wantErr:  []string{"NerdGraph answered HTTP 502 Bad Gateway"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name: "a query that ran out of its time is reported once, not retried",
		answer: newrelictest.Answer{Errors: []newrelictest.GraphQLError{{
			Message: "NRDB query duration exceeded the timeout", ErrorClass: "TIMEOUT",
		}}},
		wantErr:  []string{"NerdGraph error: NRDB query duration exceeded the timeout (TIMEOUT)"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:     "a 200 that is not JSON",
		answer:   newrelictest.Answer{Body: "<html>maintenance</html>"},
		wantErr:  []string{"NerdGraph's answer (HTTP 200) is not JSON"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:   "a profile of the metric's own",
		answer: newrelictest.Rows(map[string]any{"count": 1}),
		metric: spec.NewRelicMetric{Profile: "nr-checkout"},
		env: func(srv *newrelictest.Server) map[string]string {
			return profileVars("NR_CHECKOUT", map[string]string{"REGION": "EU", "BASE_URL_NERDGRAPH": srv.NerdGraphURL()})
		},
		wantResult: map[string]any{"count": float64(1)}, wantValue: `{"count":1}`,
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name: "a key echoed back by New Relic is redacted",
		answer: newrelictest.Answer{Errors: []newrelictest.GraphQLError{{
			Message: "key " + apiKey + " may not query this account",
		}}},
		wantErr:  []string{"NerdGraph error: key ***** may not query this account"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:     "rows of the wrong shape",
		answer:   newrelictest.Answer{Body: `{"data":{"actor":{"account":{"nrql":{"results":"many"}}}}}`},
		wantErr:  []string{"NerdGraph's answer could not be read: json: cannot unmarshal string"},
		wantSent: 1, wantTimeout: newrelic.DefaultNRQLTimeout,
	}, {
		name:    "no API key says what to set",
		vars:    map[string]string{"SLUICE_SECRET_NEWRELIC_PERSONAL_API_KEY": ""},
		wantErr: []string{"newRelic credentials", `secret "newrelic" key "personal-api-key"`, "SLUICE_SECRET_NEWRELIC_PERSONAL_API_KEY"},
	}, {
		name:    "no account id says what to set",
		vars:    map[string]string{"SLUICE_SECRET_NEWRELIC_ACCOUNT_ID": ""},
		wantErr: []string{"newRelic account", "SLUICE_SECRET_NEWRELIC_ACCOUNT_ID"},
	}, {
		name:    "an account id that is not a number",
		vars:    map[string]string{"SLUICE_SECRET_NEWRELIC_ACCOUNT_ID": "prod"},
		wantErr: []string{`key account-id of the Secret "newrelic": "prod" is not an account id`},
	}, {
		name:    "an unknown region",
		vars:    map[string]string{"SLUICE_SECRET_NEWRELIC_REGION": "mars"},
		wantErr: []string{`key region of the Secret "newrelic": "mars" is not a New Relic region`},
	}, {
		name:    "a NerdGraph URL that is not one",
		vars:    map[string]string{"SLUICE_SECRET_NEWRELIC_BASE_URL_NERDGRAPH": "api.newrelic.com/graphql"},
		wantErr: []string{"key base-url-nerdgraph of the Secret \"newrelic\": not an http or https URL"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Answer(tc.answer)
			before := len(srv.Requests())
			vars := env(srv)
			if tc.env != nil {
				vars = tc.env(srv)
			}
			for k, v := range tc.vars {
				vars[k] = v
			}
			metric := tc.metric
			metric.Query = nrql

			started := time.Now()
			m := p.Measure(context.Background(), request(&metric, vars))
			took := time.Since(started)

			if strings.Contains(m.Message+m.Value+m.Query, apiKey) || strings.Contains(m.Message, "NRAK-WRONGKEY") {
				t.Fatalf("the measurement holds the API key: %+v", m)
			}
			if m.Provider != newrelic.Type || m.Query != nrql || m.Metadata[newrelic.MetadataQuery] != nrql {
				t.Errorf("provider %q, query %q, metadata %v; want %q and the query", m.Provider, m.Query, m.Metadata, newrelic.Type)
			}
			if len(tc.wantErr) > 0 {
				if m.Phase != spec.AnalysisPhaseError {
					t.Fatalf("phase %q, result %#v; want Error", m.Phase, m.Result)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(m.Message, w) {
						t.Errorf("message %q\nwant it to contain %q", m.Message, w)
					}
				}
			} else {
				if m.Phase != "" {
					t.Fatalf("phase %q (%s); want a value for the conditions", m.Phase, m.Message)
				}
				if !reflect.DeepEqual(m.Result, tc.wantResult) {
					t.Errorf("result %#v; want %#v", m.Result, tc.wantResult)
				}
				if m.Value != tc.wantValue {
					t.Errorf("value %s; want %s", m.Value, tc.wantValue)
				}
			}

			sent := srv.Requests()[before:]
			if len(sent) != tc.wantSent {
				t.Fatalf("%d requests reached NerdGraph; want %d: %+v", len(sent), tc.wantSent, sent)
			}
			if tc.wantSent > 0 && took > noBackoff {
				t.Errorf("took %s: the client waited to retry", took)
			}
			for _, r := range sent {
				if r.Status == http.StatusUnauthorized {
					continue
				}
				if r.NRQL != nrql || r.Timeout != tc.wantTimeout || !strings.HasPrefix(r.UserAgent, "sluice-analyzer/") {
					t.Errorf("NerdGraph got %+v; want the query, timeout %d and Sluice's user agent", r, tc.wantTimeout)
				}
			}
		})
	}
}

func profileVars(secret string, extra map[string]string) map[string]string {
	vars := map[string]string{
		"SLUICE_SECRET_" + secret + "_PERSONAL_API_KEY": apiKey,
		"SLUICE_SECRET_" + secret + "_ACCOUNT_ID":       "1234567",
	}
	for k, v := range extra {
		vars["SLUICE_SECRET_"+secret+"_"+k] = v
	}
	return vars
}

// TestConditionsOnRealAnswers judges the results NerdGraph gives as the
// analysis does: a null or a missing row is never a success.
func TestConditionsOnRealAnswers(t *testing.T) {
	srv := start(t)
	p := provider(t, newrelic.Config{})
	for _, tc := range []struct {
		name             string
		answer           newrelictest.Answer
		success, failure string
		want             spec.AnalysisPhase
	}{
		{"Argo's documented condition passes", newrelictest.Rows(map[string]any{"successRate": 99.5}), "result.successRate >= 95", "", spec.AnalysisPhaseSuccessful},
		{"Argo's documented condition fails", newrelictest.Rows(map[string]any{"successRate": 80.0}), "result.successRate >= 95", "", spec.AnalysisPhaseFailed},
		{"a name with a dot, by index", newrelictest.Rows(map[string]any{"average.duration": 0.2}), "result['average.duration'] < 0.5", "", spec.AnalysisPhaseSuccessful},
		{"a null is an error, not a success", newrelictest.Rows(map[string]any{"average.duration": nil}), "result['average.duration'] < 0.5", "", spec.AnalysisPhaseError},
		{"a null under a failureCondition alone is an error, not a success", newrelictest.Rows(map[string]any{"errors": nil}), "", "result.errors > 10", spec.AnalysisPhaseError},
		{"a missing field is an error, not a success", newrelictest.Rows(map[string]any{"count": 3}), "result.successRate >= 95", "", spec.AnalysisPhaseError},
		{"no row is an error", newrelictest.Rows(), "result.successRate >= 95", "", spec.AnalysisPhaseError},
		{"no row is an error under a failureCondition alone", newrelictest.Rows(), "", "result.errors > 10", spec.AnalysisPhaseError},
		{"several rows", newrelictest.Rows(map[string]any{"count": 3}, map[string]any{"count": 5}), "all(result, {.count > 0}) && len(result) == 2", "", spec.AnalysisPhaseSuccessful},
		{"an error from New Relic", newrelictest.RateLimited(), "result.successRate >= 95", "", spec.AnalysisPhaseError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Answer(tc.answer)
			metric := spec.NewRelicMetric{Query: nrql}
			req := request(&metric, env(srv))
			req.Metric.SuccessCondition, req.Metric.FailureCondition = tc.success, tc.failure
			m := analysis.Judge(req.Metric, p.Measure(context.Background(), req))
			if m.Phase != tc.want {
				t.Fatalf("phase %q (%s); want %q", m.Phase, m.Message, tc.want)
			}
		})
	}
}

func TestMeasureUnreachable(t *testing.T) {
	srv := start(t)
	vars := env(srv)
	srv.Close()
	p := provider(t, newrelic.Config{})
	metric := spec.NewRelicMetric{Query: nrql}
	started := time.Now()
	m := p.Measure(context.Background(), request(&metric, vars))
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "POST "+srv.NerdGraphURL()) {
		t.Fatalf("phase %q, message %q; want Error naming the request", m.Phase, m.Message)
	}
	if took := time.Since(started); took > noBackoff {
		t.Errorf("took %s: the client waited to retry", took)
	}
}

// TestMeasureSlowAnswer: the measurement ends at its deadline, not at
// NerdGraph's answer.
func TestMeasureSlowAnswer(t *testing.T) {
	srv := start(t)
	srv.Answer(newrelictest.Answer{Delay: time.Minute, Results: []map[string]any{{"count": 1}}})
	p := provider(t, newrelic.Config{})
	metric := spec.NewRelicMetric{Query: nrql}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	m := p.Measure(ctx, request(&metric, env(srv)))
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "New Relic did not answer within") {
		t.Fatalf("phase %q, message %q; want Error: did not answer in time", m.Phase, m.Message)
	}
	// The server notes the request once its handler has seen the client
	// leave.
	poll.Until(t, "NerdGraph to see the request given up on", func() error {
		if reqs := srv.Requests(); len(reqs) != 1 || reqs[0].Status != 0 {
			return fmt.Errorf("requests %+v; want one, given up on", reqs)
		}
		return nil
	})
}

func TestMeasureLargeAnswer(t *testing.T) {
	srv := start(t)
	srv.Answer(newrelictest.Rows(map[string]any{"pad": strings.Repeat("x", 4096)}))
	p := provider(t, newrelic.Config{MaxResponseBytes: 1024})
	metric := spec.NewRelicMetric{Query: nrql}
	m := p.Measure(context.Background(), request(&metric, env(srv)))
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "too large") {
		t.Fatalf("phase %q, message %q; want Error: too large", m.Phase, m.Message)
	}
}

func TestTimeout(t *testing.T) {
	p := provider(t, newrelic.Config{})
	for _, tc := range []struct {
		timeout *int64
		want    time.Duration
	}{
		{nil, 15 * time.Second},
		{ptr[int64](0), 10 * time.Second},
		{ptr[int64](60), 70 * time.Second},
		{ptr[int64](-1), 15 * time.Second},
		{ptr[int64](1 << 40), 610 * time.Second},
	} {
		metric := spec.Metric{Provider: spec.MetricProvider{NewRelic: &spec.NewRelicMetric{Query: nrql, Timeout: tc.timeout}}}
		if got := p.Timeout(metric); got != tc.want {
			t.Errorf("Timeout(%v) = %s; want %s", tc.timeout, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	p := provider(t, newrelic.Config{})
	for _, tc := range []struct {
		name    string
		metric  *spec.NewRelicMetric
		wantErr string
	}{
		{"valid", &spec.NewRelicMetric{Query: nrql}, ""},
		{"no block", nil, "no newRelic provider"},
		{"negative timeout", &spec.NewRelicMetric{Query: nrql, Timeout: ptr[int64](-1)}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Check(spec.Metric{Provider: spec.MetricProvider{NewRelic: tc.metric}})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Check: %v; want %q", err, tc.wantErr)
			}
		})
	}
}

func TestNew(t *testing.T) {
	if _, err := newrelic.New(newrelic.Config{MaxResponseBytes: -1}); err == nil {
		t.Fatal("New accepted a negative MaxResponseBytes")
	}
	if p := provider(t, newrelic.Config{}); p.Type() != "newRelic" {
		t.Fatalf("Type %q", p.Type())
	}
}
