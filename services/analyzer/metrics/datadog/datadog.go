// Package datadog measures metrics with Datadog's metrics query API, as
// Argo Rollouts' datadog provider does, so its AnalysisTemplates work
// unchanged.
//
// apiVersion v1 (the default) sends query to GET /api/v1/query over the
// last interval (default 5m; from and to in Unix seconds); v2 sends queries
// and formula (or query, as the one query named "query") to POST
// /api/v2/query/scalar with aggregator (default "last"). Each measurement
// is one request, bounded by requestTimeout (default 10s), which is also
// the provider's Timeout. Keys are read at each measurement from the Secret
// secretRef.name (default "datadog"): api-key and app-key as secrets (sent
// as DD-API-KEY and DD-APPLICATION-KEY), address as a setting (default
// https://api.datadoghq.com).
//
// What the conditions see as `result`:
//
//	v1, series      the last point of the first series, a float64   value "0.5"
//	v1, no series   nil                                              value "[]"
//	v1, null point  nil (the last point is null)                     value "null"
//	v2              the first value of the first number column       value "0.5"
//	v2, no value    nil (no column, no row, or a null first value)   value "[]", "[null]"
//
// A nil result is no data: a condition that compares it (`result < 0.01`)
// fails to evaluate, and package analysis makes that an Error measurement.
// Only a template that says so (`default(result, 0) < 0.01`,
// `isNil(result) || ...`) lets missing data pass. JSON carries no NaN or
// infinity; Datadog sends null for them.
//
// Every failure is an Error measurement with Datadog's own message,
// trimmed: a status outside 2xx (401/403 say the keys were refused, 429
// says when the rate limit resets from X-RateLimit-Reset), a query error
// in a 200 body, a body that is not Datadog's JSON, a timeout, a missing
// key. Retrying is the metric's consecutiveErrorLimit's job: there is no
// retry here. The keys never appear in a measurement.
//
// Datadog's official Go client (github.com/DataDog/datadog-api-client-go/v2)
// is not used: its datadogV2 package is one package of some 8,500
// generated files, and building a program that imports only the metrics
// APIs of datadogV1 and datadogV2 (v2.67.0, its other dependencies already
// cached) took 6 min 38 s of user CPU on the project's 2-core machine, the
// compiler peaking above 7 GB of memory, far over the 60 s a dependency may
// add to a cold build (it added only 0.7 MB to the binary;
// docs/providers/datadog.md has the figures). Two endpoints with small JSON
// bodies do not need it; the requests go through the project's transport
// (proxies from the environment, shared connections).
package datadog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// Type is the provider's name in a metric's provider block.
const Type = "datadog"

// Secret and keys the credentials are read from, as Argo Rollouts names
// them.
const (
	DefaultSecret  = "datadog"
	KeyAPIKey      = "api-key"
	KeyAppKey      = "app-key"
	KeyAddress     = "address"
	DefaultAddress = "https://api.datadoghq.com"
)

// DefaultMaxResponseBytes bounds a response body read.
const DefaultMaxResponseBytes = 10 << 20

// Measurement metadata keys.
const (
	MetadataAPIVersion = "apiVersion"
	MetadataFrom       = "from"
	MetadataTo         = "to"
)

// Config configures the provider. The zero value is valid: the keys and
// the address come from the Secret each metric names.
type Config struct {
	// MaxResponseBytes bounds the response body read; a larger one is an
	// Error measurement. 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Now is the clock the queried window ends at; nil means time.Now.
	Now func() time.Time
}

// Provider is the datadog metrics.Provider. Safe for concurrent use.
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
		return nil, errors.New("datadog: MaxResponseBytes must not be negative")
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg}, nil
}

// Type returns "datadog".
func (p *Provider) Type() string { return Type }

// Timeout is the metric's requestTimeout, or DefaultRequestTimeout when it
// sets none or one that is not a positive duration (Measure reports that).
func (p *Provider) Timeout(metric spec.Metric) time.Duration {
	if dd := metric.Provider.Datadog; dd != nil && dd.RequestTimeout != "" {
		if d, err := dd.RequestTimeout.Duration(); err == nil && d > 0 {
			return d
		}
	}
	return DefaultRequestTimeout
}

// Check rejects a metric that can never be measured: no datadog block, or
// one that resolve refuses. A block with {{args.*}} placeholders is
// checked when its run substitutes them.
func (p *Provider) Check(metric spec.Metric) error {
	dd := metric.Provider.Datadog
	if dd == nil {
		return errors.New("no datadog provider")
	}
	if hasPlaceholder(dd) {
		return nil
	}
	_, err := resolve(dd)
	return err
}

func hasPlaceholder(dd *spec.DatadogMetric) bool {
	fields := []string{dd.ApiVersion, string(dd.Interval), string(dd.RequestTimeout), dd.Aggregator, dd.Query, dd.Formula}
	for k, v := range dd.Queries {
		fields = append(fields, k, v)
	}
	for _, f := range fields {
		if strings.Contains(f, "{{") {
			return true
		}
	}
	return false
}

// Measure runs metric's query once. Every failure to get a value is an
// Error measurement whose message never holds a key.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	dd := req.Metric.Provider.Datadog
	if dd == nil {
		return p.fail(m, "metric %q has no datadog provider", req.Metric.Name)
	}
	pl, err := resolve(dd)
	if err != nil {
		return p.fail(m, "%v", err)
	}
	m.Query = pl.describe()
	from, to := pl.window(p.cfg.Now())
	m.Metadata = map[string]string{
		MetadataAPIVersion: pl.version,
		MetadataFrom:       time.Unix(from, 0).UTC().Format(time.RFC3339),
		MetadataTo:         time.Unix(to, 0).UTC().Format(time.RFC3339),
	}

	ctx, cancel := context.WithTimeout(ctx, pl.timeout)
	defer cancel()
	creds, err := readCredentials(ctx, req, dd.SecretRef.Name)
	if err != nil {
		return p.fail(m, "%v", err)
	}
	result, value, err := p.query(ctx, pl, creds, from, to)
	if err != nil {
		return p.fail(m, "%v", err).Redact(creds.apiKey, creds.appKey)
	}
	m.Result, m.Value = result, value
	m.FinishedAt = p.cfg.Now()
	return m.Redact(creds.apiKey, creds.appKey)
}

// credentials are one metric's keys and the API's base URL.
type credentials struct {
	apiKey, appKey string
	address        *url.URL
}

// readCredentials reads the keys and the address from the Secret name
// (DefaultSecret when empty). A missing address is DefaultAddress; a
// missing key is an error that says what to set.
func readCredentials(ctx context.Context, req metrics.Request, name string) (credentials, error) {
	if name == "" {
		name = DefaultSecret
	}
	var c credentials
	for _, k := range []struct {
		key string
		to  *string
	}{{KeyAPIKey, &c.apiKey}, {KeyAppKey, &c.appKey}} {
		v, err := req.ReadSecret(ctx, name, k.key)
		if err != nil {
			return credentials{}, fmt.Errorf("datadog %s: %w", k.key, err)
		}
		if *k.to = strings.TrimSpace(v); *k.to == "" {
			return credentials{}, fmt.Errorf("datadog %s: key %q of secret %q is empty", k.key, k.key, name)
		}
	}
	address, err := req.ReadSetting(ctx, name, KeyAddress)
	switch {
	case errors.Is(err, metrics.ErrSecretNotFound):
		address = DefaultAddress
	case err != nil:
		return credentials{}, fmt.Errorf("datadog address: %w", err)
	case strings.TrimSpace(address) == "":
		address = DefaultAddress
	}
	u, err := url.Parse(strings.TrimSpace(address))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return credentials{}, fmt.Errorf("datadog address: key %q of secret %q must be an http or https URL without credentials, such as %s", KeyAddress, name, DefaultAddress)
	}
	c.address = u
	return c, nil
}

// query sends the one request of a measurement and reads its answer.
func (p *Provider) query(ctx context.Context, pl plan, c credentials, from, to int64) (any, string, error) {
	client, err := p.pool.Client(transport.Settings{})
	if err != nil {
		return nil, "", err
	}
	var req *http.Request
	if pl.version == "v1" {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, v1URL(c.address, pl.query, from, to), nil)
	} else {
		var body []byte
		if body, err = v2Body(pl, from, to); err == nil {
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, v2URL(c.address), bytes.NewReader(body))
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("cannot build the datadog request: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("DD-API-KEY", c.apiKey)
	req.Header.Set("DD-APPLICATION-KEY", c.appKey)

	resp, err := client.Do(req)
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, "", fmt.Errorf("datadog request timed out after %s: %s", pl.timeout, transport.Describe(err))
	case ctx.Err() != nil:
		return nil, "", errors.New("datadog request cancelled: the analyzer is stopping")
	default:
		return nil, "", errors.New(transport.Describe(err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxResponseBytes+1))
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, "", fmt.Errorf("reading datadog's response timed out after %s", pl.timeout)
	case err != nil:
		return nil, "", fmt.Errorf("reading datadog's response: %v", err)
	case int64(len(body)) > p.cfg.MaxResponseBytes:
		return nil, "", fmt.Errorf("datadog's response is larger than %d bytes", p.cfg.MaxResponseBytes)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, "", statusError(resp.StatusCode, resp.Header, body)
	case pl.version == "v1":
		return parseV1(body)
	}
	return parseV2(body)
}

func (p *Provider) fail(m metrics.Measurement, format string, args ...any) metrics.Measurement {
	m.Phase = spec.AnalysisPhaseError
	m.Message = fmt.Sprintf(format, args...)
	m.FinishedAt = p.cfg.Now()
	return m
}
