// Package prometheus measures metrics with PromQL through the Prometheus
// HTTP API (github.com/prometheus/client_golang/api), as Argo Rollouts'
// prometheus provider does, so its AnalysisTemplates work unchanged.
//
// Supported: instant queries at the provider's clock; range queries
// (rangeQuery.start and .end are expr-lang expressions of time such as
// `now() - duration("10m")`, step a Go duration); timeout in seconds
// (default 30); custom headers; authentication.basicAuth and .oauth2
// (client credentials); a bearer token through an Authorization header or
// the analyzer's own credentials (Config); insecure and caCert.
//
// What the conditions see as `result`:
//
//	scalar        float64                                  value "0.99"
//	vector        []float64, one value per series           value "[0.99,0.5]"
//	matrix        []float64, every value of every series,   value "[1,2,3]"
//	              series after series, in time order
//	empty vector  []float64{} (len(result) == 0)            value "[]"
//
// NaN and ±Inf are kept as the float values they are (value "[NaN]",
// "[+Inf]"); conditions test them with isNaN and isInf. A comparison with
// NaN is false, so `result[0] < 0.01` fails on NaN, as in Argo Rollouts.
// An empty vector is not an error here: a condition that indexes it
// (`result[0]`) fails to evaluate, and package analysis makes that an Error
// measurement that says the query returned no data.
//
// Deliberately not supported: authentication.sigv4 (Check rejects it),
// string results (an Error measurement), native histogram samples (their
// float value is not defined; they are left out of the result).
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// Type is the provider's name in a metric's provider block.
const Type = "prometheus"

// DefaultTimeout bounds a query whose metric sets no timeout, as in Argo
// Rollouts.
const DefaultTimeout = 30 * time.Second

// MetadataQuery is the measurement metadata key of the query as sent, the
// key Argo Rollouts uses.
const MetadataQuery = "ResolvedPrometheusQuery"

// Environment variables read by ConfigFromEnv.
const (
	EnvAddress  = "SLUICE_PROMETHEUS_ADDRESS"
	EnvToken    = "SLUICE_PROMETHEUS_TOKEN"
	EnvUsername = "SLUICE_PROMETHEUS_USERNAME"
	EnvPassword = "SLUICE_PROMETHEUS_PASSWORD"
)

// Config is the analyzer's own Prometheus settings. The zero value is
// valid: no credentials of its own, the wall clock.
type Config struct {
	// Address is the Prometheus the credentials below belong to. They are
	// sent only to metrics whose address has the same scheme, host and
	// port, never to an address a template chose.
	Address string
	// BearerToken, or Username and Password, authenticate to Address when
	// the metric brings no credentials of its own.
	BearerToken string
	Username    string
	Password    string
	// Now is the clock instant queries are evaluated at and `now()` returns
	// in range expressions; nil means time.Now.
	Now func() time.Time
}

// ConfigFromEnv reads SLUICE_PROMETHEUS_ADDRESS, SLUICE_PROMETHEUS_TOKEN,
// SLUICE_PROMETHEUS_USERNAME and SLUICE_PROMETHEUS_PASSWORD through getenv
// (os.Getenv in production).
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		Address:     strings.TrimSpace(getenv(EnvAddress)),
		BearerToken: strings.TrimSpace(getenv(EnvToken)),
		Username:    getenv(EnvUsername),
		Password:    getenv(EnvPassword),
	}
}

// Validate reports a Config that cannot be used. Its messages name
// settings, never their values.
func (c Config) Validate() error {
	hasCreds := c.BearerToken != "" || c.Username != "" || c.Password != ""
	if c.BearerToken != "" && (c.Username != "" || c.Password != "") {
		return errors.New("prometheus: set a bearer token or a username and password, not both")
	}
	if c.Address == "" {
		if hasCreds {
			return fmt.Errorf("prometheus: credentials need %s, the address they belong to", EnvAddress)
		}
		return nil
	}
	u, err := url.Parse(c.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("prometheus: %s must be an http or https URL", EnvAddress)
	}
	if u.User != nil {
		return fmt.Errorf("prometheus: %s must not hold credentials; use %s and %s", EnvAddress, EnvUsername, EnvPassword)
	}
	return nil
}

// Provider is the prometheus metrics.Provider. Safe for concurrent use.
type Provider struct {
	cfg    Config
	origin string
	pool   transport.Pool
}

var (
	_ metrics.Provider = (*Provider)(nil)
	_ metrics.Checker  = (*Provider)(nil)
)

// New returns a provider with cfg, or cfg's Validate error.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Provider{cfg: cfg}
	if cfg.Address != "" {
		p.origin = origin(cfg.Address)
	}
	return p, nil
}

// Type returns "prometheus".
func (p *Provider) Type() string { return Type }

// Timeout is the metric's prometheus timeout (seconds), or DefaultTimeout
// when it sets none.
func (p *Provider) Timeout(metric spec.Metric) time.Duration {
	if pm := metric.Provider.Prometheus; pm != nil && pm.Timeout != nil && *pm.Timeout > 0 {
		return time.Duration(*pm.Timeout) * time.Second
	}
	return DefaultTimeout
}

// Check rejects a metric that can never be measured: no prometheus block,
// sigv4 authentication, a caCert without certificate, a range query whose
// start or end does not compile or whose step is not a duration.
func (p *Provider) Check(metric spec.Metric) error {
	m := metric.Provider.Prometheus
	if m == nil {
		return errors.New("no prometheus provider")
	}
	if err := transport.Check(p.settings(m)); err != nil {
		return err
	}
	if rq := m.RangeQuery; rq != nil {
		for _, f := range []struct{ name, src string }{{"start", rq.Start}, {"end", rq.End}} {
			if strings.Contains(f.src, "{{") {
				continue
			}
			if _, err := compileTime(f.src, p.cfg.Now); err != nil {
				return fmt.Errorf("rangeQuery.%s: %w", f.name, err)
			}
		}
		if !strings.Contains(rq.Step, "{{") {
			if _, err := parseStep(rq.Step); err != nil {
				return fmt.Errorf("rangeQuery.step: %w", err)
			}
		}
	}
	return nil
}

// Measure runs metric's query once. Every failure to get a value is an
// Error measurement whose message never holds a credential.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	metric := req.Metric
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	pm := metric.Provider.Prometheus
	if pm == nil {
		return finish(m, p.cfg.Now, "metric %q has no prometheus provider", metric.Name)
	}
	settings := p.settings(pm)
	secrets := settings.Secrets()
	m.Query = pm.Query
	m.Metadata = map[string]string{MetadataQuery: pm.Query}

	timeout := p.Timeout(metric)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	value, warnings, err := p.query(ctx, pm, settings, p.clock(req))
	if len(warnings) > 0 {
		m.Metadata["warnings"] = strings.Join(warnings, "; ")
	}
	if err != nil {
		msg := describe(err)
		if ctx.Err() != nil {
			msg = fmt.Sprintf("query timed out after %s: %s", timeout, msg)
		}
		return finish(m, p.cfg.Now, "%s", msg).Redact(secrets...)
	}
	result, text, err := convert(value)
	if err != nil {
		return finish(m, p.cfg.Now, "%v", err).Redact(secrets...)
	}
	m.Result, m.Value = result, text
	m.FinishedAt = p.cfg.Now()
	return m.Redact(secrets...)
}

// settings are the transport settings of m, with the analyzer's own
// credentials only for the Prometheus they belong to.
func (p *Provider) settings(m *spec.PrometheusMetric) transport.Settings {
	s := transport.Settings{Insecure: m.Insecure, CACert: m.CACert, Headers: m.Headers, Auth: m.Authentication}
	if p.origin != "" && origin(m.Address) == p.origin {
		s.Fallback = transport.Credentials{BearerToken: p.cfg.BearerToken, Username: p.cfg.Username, Password: p.cfg.Password}
	}
	return s
}

// clock is the instant req is measured at: req.At when set, the
// provider's clock otherwise.
func (p *Provider) clock(req metrics.Request) func() time.Time {
	if at := req.At; !at.IsZero() {
		return func() time.Time { return at }
	}
	return p.cfg.Now
}

func (p *Provider) query(ctx context.Context, m *spec.PrometheusMetric, s transport.Settings, now func() time.Time) (model.Value, []string, error) {
	address := m.Address
	if address == "" {
		address = p.cfg.Address
	}
	if address == "" {
		return nil, nil, errors.New("prometheus address is not configured")
	}
	httpClient, err := p.pool.Client(s)
	if err != nil {
		return nil, nil, err
	}
	client, err := api.NewClient(api.Config{Address: address, Client: httpClient})
	if err != nil {
		return nil, nil, errors.New("prometheus address is not a URL")
	}
	promAPI := v1.NewAPI(client)
	if rq := m.RangeQuery; rq != nil {
		r, err := queryRange(rq, now)
		if err != nil {
			return nil, nil, err
		}
		v, warnings, _, err := promAPI.QueryRange(ctx, m.Query, r)
		return v, warnings, err
	}
	v, warnings, _, err := promAPI.Query(ctx, m.Query, now())
	return v, warnings, err
}

func queryRange(rq *spec.PrometheusRangeQueryArgs, now func() time.Time) (v1.Range, error) {
	start, err := evalTime(rq.Start, now)
	if err != nil {
		return v1.Range{}, fmt.Errorf("rangeQuery.start: %w", err)
	}
	end, err := evalTime(rq.End, now)
	if err != nil {
		return v1.Range{}, fmt.Errorf("rangeQuery.end: %w", err)
	}
	step, err := parseStep(rq.Step)
	if err != nil {
		return v1.Range{}, fmt.Errorf("rangeQuery.step: %w", err)
	}
	if end.Before(start) {
		return v1.Range{}, fmt.Errorf("rangeQuery: end %s is before start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	return v1.Range{Start: start, End: end, Step: step}, nil
}

func parseStep(s string) (time.Duration, error) {
	d, err := spec.DurationString(strings.TrimSpace(s)).Duration()
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, errors.New("step must be greater than 0")
	}
	return d, nil
}

// compileTime compiles a range bound: an expr-lang expression of type
// time.Time, where now() is the provider's clock.
func compileTime(src string, now func() time.Time) (func() (time.Time, error), error) {
	nowFn := expr.Function("now", func(...any) (any, error) { return now(), nil }, new(func() time.Time))
	program, err := expr.Compile(src, nowFn)
	if err != nil {
		return nil, fmt.Errorf("expression %q: %w", src, err)
	}
	return func() (time.Time, error) {
		out, err := expr.Run(program, nil)
		if err != nil {
			return time.Time{}, fmt.Errorf("expression %q: %w", src, err)
		}
		t, ok := out.(time.Time)
		if !ok {
			return time.Time{}, fmt.Errorf("expression %q is a %T, not a time", src, out)
		}
		return t, nil
	}, nil
}

func evalTime(src string, now func() time.Time) (time.Time, error) {
	eval, err := compileTime(src, now)
	if err != nil {
		return time.Time{}, err
	}
	return eval()
}

// convert turns a query result into what conditions see and the value as
// Argo Rollouts records it.
func convert(v model.Value) (any, string, error) {
	switch v := v.(type) {
	case *model.Scalar:
		return float64(v.Value), formatFloat(float64(v.Value)), nil
	case model.Vector:
		values := make([]float64, 0, len(v))
		for _, s := range v {
			if s == nil || s.Histogram != nil {
				continue
			}
			values = append(values, float64(s.Value))
		}
		return values, formatList(values), nil
	case model.Matrix:
		values := []float64{}
		for _, s := range v {
			if s == nil {
				continue
			}
			for _, pt := range s.Values {
				values = append(values, float64(pt.Value))
			}
		}
		return values, formatList(values), nil
	case nil:
		return nil, "", errors.New("prometheus returned no result")
	}
	return nil, "", fmt.Errorf("prometheus result type %s is not supported; want scalar, vector or matrix", v.Type())
}

// formatFloat renders f as Prometheus does: "0.5", "NaN", "+Inf", "-Inf".
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func formatList(values []float64) string {
	parts := make([]string, len(values))
	for i, f := range values {
		parts[i] = formatFloat(f)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// describe renders a query error without URLs' query strings.
func describe(err error) string {
	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		return fmt.Sprintf("prometheus %s error: %s", apiErr.Type, apiErr.Msg)
	}
	return transport.Describe(err)
}

func finish(m metrics.Measurement, now func() time.Time, format string, args ...any) metrics.Measurement {
	m.Phase = spec.AnalysisPhaseError
	m.Message = fmt.Sprintf(format, args...)
	m.FinishedAt = now()
	return m
}

// origin is scheme://host:port of a URL, with the default port made
// explicit, or "" when raw is not a URL.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}
