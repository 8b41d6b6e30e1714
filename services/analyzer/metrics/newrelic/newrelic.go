// Package newrelic measures metrics with NRQL through New Relic's NerdGraph
// API, as Argo Rollouts' newRelic provider does, so its AnalysisTemplates
// work unchanged. It queries with github.com/newrelic/newrelic-client-go/v2,
// the client Argo Rollouts uses, with Argo's GraphQL query:
//
//	actor { account(id: $accountId) { nrql(query: $query, timeout: $timeout) { results } } }
//
// Fields: query (NRQL, required), timeout (seconds NerdGraph may spend on
// the query, default 5, sent as Argo sends it), profile (the Secret holding
// the account's settings, default "newrelic"). The profile's keys are
// Argo's: personal-api-key (read as a secret), account-id, region (us or
// eu, default us) and base-url-nerdgraph (read as settings); see
// readProfile.
//
// What the conditions see as `result`, as in Argo Rollouts:
//
//	one row         that row, a map        result.count > 10, result['average.duration'] < 0.5
//	several rows    the list of rows       result[0].count, len(result)
//	no row, or      an Error measurement   "no results returned from NRQL query"
//	one empty row
//
// Numbers are float64. A null (average() over no event) stays nil: a
// comparison with it cannot be evaluated, and package analysis makes that
// an Error, never a success. The recorded value is the JSON of the row or
// of the list.
//
// One request per measurement, bounded by Timeout: NerdGraph's own timeout
// plus RequestMargin. The client's retries are turned off (see oneShot);
// the metric's consecutiveErrorLimit retries. Every failure (refused,
// timed out, HTTP 401, 403, 429, 5xx, GraphQL errors) is an Error
// measurement that quotes New Relic's message, never the API key or a URL's
// query string.
package newrelic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/newrelic/newrelic-client-go/v2/pkg/config"
	"github.com/newrelic/newrelic-client-go/v2/pkg/nerdgraph"
	"github.com/newrelic/newrelic-client-go/v2/pkg/nrdb"

	"github.com/sluicehq/sluice/internal/buildinfo"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// Type is the provider's name in a metric's provider block.
const Type = "newRelic"

// Defaults.
const (
	// DefaultNRQLTimeout is the timeout sent to NerdGraph when the metric
	// sets none, in seconds, as in Argo Rollouts (and NerdGraph's own
	// default).
	DefaultNRQLTimeout = 5
	// RequestMargin is added to the NRQL timeout to bound the request:
	// NerdGraph answers a query that ran out of its time with an error,
	// which is worth waiting for.
	RequestMargin = 10 * time.Second
	// MaxWaitNRQLTimeout caps the NRQL timeout Timeout waits for, in
	// seconds: no NRQL query runs longer than 10 minutes (New Relic's
	// limit with Data Plus), and a larger timeout would overflow a
	// time.Duration. The timeout is still sent as the metric sets it.
	MaxWaitNRQLTimeout = 600
	// DefaultMaxResponseBytes bounds NerdGraph's answer.
	DefaultMaxResponseBytes = 10 << 20
)

// MetadataQuery is the measurement metadata key of the query as sent, the
// key Argo Rollouts uses.
const MetadataQuery = "ResolvedNewRelicQuery"

// Config configures the provider. The zero value is valid: the accounts'
// settings come with each metric, from its profile Secret.
type Config struct {
	// MaxResponseBytes bounds the answer read; a larger one is an Error
	// measurement. 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Now is the clock of the measurements' times; nil means time.Now.
	Now func() time.Time
}

// Provider is the newRelic metrics.Provider. Safe for concurrent use.
type Provider struct {
	cfg  Config
	pool transport.Pool
}

var (
	_ metrics.Provider = (*Provider)(nil)
	_ metrics.Checker  = (*Provider)(nil)
)

// New returns a provider with cfg. It returns an error for a negative
// MaxResponseBytes.
func New(cfg Config) (*Provider, error) {
	if cfg.MaxResponseBytes < 0 {
		return nil, errors.New("newRelic: MaxResponseBytes must not be negative")
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg}, nil
}

// Type returns "newRelic".
func (p *Provider) Type() string { return Type }

// Timeout is the metric's NRQL timeout (DefaultNRQLTimeout when unset, at
// most MaxWaitNRQLTimeout) plus RequestMargin.
func (p *Provider) Timeout(metric spec.Metric) time.Duration {
	secs := min(nrqlTimeout(metric.Provider.NewRelic), MaxWaitNRQLTimeout)
	return time.Duration(secs)*time.Second + RequestMargin
}

// Check rejects a metric that can never be measured: no newRelic block, a
// negative timeout.
func (p *Provider) Check(metric spec.Metric) error {
	m := metric.Provider.NewRelic
	if m == nil {
		return errors.New("no newRelic provider")
	}
	if m.Timeout != nil && *m.Timeout < 0 {
		return fmt.Errorf("newRelic timeout %d must not be negative", *m.Timeout)
	}
	return nil
}

// nrqlTimeout is the timeout sent to NerdGraph, in seconds.
func nrqlTimeout(m *spec.NewRelicMetric) int64 {
	if m == nil || m.Timeout == nil || *m.Timeout < 0 {
		return DefaultNRQLTimeout
	}
	return *m.Timeout
}

// Measure runs metric's NRQL query once. Every failure to get rows is an
// Error measurement whose message never holds the API key.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	nr := req.Metric.Provider.NewRelic
	if nr == nil {
		return p.fail(m, "metric %q has no newRelic provider", req.Metric.Name)
	}
	m.Query = nr.Query
	m.Metadata = map[string]string{MetadataQuery: nr.Query}
	if err := p.Check(req.Metric); err != nil {
		return p.fail(m, "%v", err)
	}

	budget := p.Timeout(req.Metric)
	if d, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(d))
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	prof, err := readProfile(ctx, req, nr.Profile)
	if err != nil {
		return p.fail(m, "%v", err).Redact(prof.apiKey)
	}
	results, err := p.query(ctx, prof, nr, budget)
	if err != nil {
		return p.fail(m, "%v", err).Redact(prof.apiKey)
	}
	result, value, err := convert(results)
	if err != nil {
		return p.fail(m, "%v", err)
	}
	m.Result, m.Value = result, value
	m.FinishedAt = p.cfg.Now()
	return m.Redact(prof.apiKey)
}

// nrqlQuery is Argo Rollouts' NerdGraph query: the rows only.
const nrqlQuery = `query ($query: Nrql!, $accountId: Int!, $timeout: Seconds!) {
  actor {
    account(id: $accountId) {
      nrql(query: $query, timeout: $timeout) {
        results
      }
    }
  }
}`

type nrqlResponse struct {
	Actor struct {
		Account struct {
			NRQL nrdb.NRDBResultContainer `json:"nrql"`
		} `json:"account"`
	} `json:"actor"`
}

// query sends nr's query to NerdGraph through the New Relic client, once,
// within ctx, whose deadline is budget from the measurement's start.
func (p *Provider) query(ctx context.Context, prof profile, nr *spec.NewRelicMetric, budget time.Duration) ([]nrdb.NRDBResult, error) {
	httpClient, err := p.pool.Client(transport.Settings{})
	if err != nil {
		return nil, err
	}
	shot := &oneShot{ctx: ctx, base: httpClient.Transport, max: p.cfg.MaxResponseBytes}
	opts := []config.ConfigOption{
		config.ConfigPersonalAPIKey(prof.apiKey),
		config.ConfigRegion(string(prof.region)),
		config.ConfigHTTPTransport(shot),
		// The round tripper bounds the request with ctx; the client's
		// own timer must not fire first.
		config.ConfigHTTPTimeout(budget + time.Second),
		config.ConfigUserAgent("sluice-analyzer/" + buildinfo.Version()),
		config.ConfigServiceName("sluice"),
		config.ConfigLogLevel("error"),
	}
	if prof.nerdGraphURL != "" {
		opts = append(opts, config.ConfigNerdGraphBaseURL(prof.nerdGraphURL))
	}
	cfg := config.New()
	if err := cfg.Init(opts); err != nil {
		return nil, fmt.Errorf("newRelic client: %v", err)
	}
	client := nerdgraph.New(cfg)
	vars := map[string]any{
		"accountId": prof.accountID,
		"query":     nr.Query,
		"timeout":   nrqlTimeout(nr),
	}
	var resp nrqlResponse
	err = client.QueryWithResponseAndContext(ctx, nrqlQuery, vars, &resp)
	if a := shot.reply(); a != nil && !a.clean() {
		return nil, errors.New(describe(a, budget, prof.name))
	}
	if err != nil {
		return nil, fmt.Errorf("NerdGraph's answer could not be read: %s", transport.Describe(err))
	}
	return resp.Actor.Account.NRQL.Results, nil
}

func (p *Provider) fail(m metrics.Measurement, format string, args ...any) metrics.Measurement {
	m.Phase = spec.AnalysisPhaseError
	m.Message = fmt.Sprintf(format, args...)
	m.FinishedAt = p.cfg.Now()
	return m
}
