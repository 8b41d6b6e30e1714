// Package graphite measures metrics with Graphite's render API
// (`GET <address>/render?target=...&format=json`), as Argo Rollouts'
// graphite provider does, so its AnalysisTemplates work unchanged.
//
// The metric's query is the render request's query string, sent as
// written apart from its whitespace, which is removed (Argo does the same,
// so a long target can be written over several lines): from, until and
// every other render parameter are the template's. format is always json.
//
// What the conditions see as `result`: the non-null values of the first
// series Graphite returns, in time order, as a list of numbers, recorded
// as Argo records them ("[10.000000,5.500000]"). Other series are not
// measured. Graphite's infinities (1e9999) are ±Inf. A response with no
// series, or whose first series has no datapoint or only nulls, is an
// Error measurement: missing data never reaches the conditions, so no
// successCondition can pass on it (Argo lets an all-null series through as
// an empty list, on which `all(result, ...)` is true).
//
// Every failure to get a value is an Error measurement: the request
// failing or taking longer than the provider's timeout (10s, Argo's, not
// configurable per metric), a status outside 2xx (with the text of
// Graphite's answer, trimmed), a body over Config.MaxResponseBytes or that
// is not render API JSON.
//
// Graphite has no authentication of its own in Argo's provider; an address
// with user info (`https://user:password@graphite`) sends it as basic
// authentication, as Argo's does, and neither appears in a message.
package graphite

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// Type is the provider's name in a metric's provider block.
const Type = "graphite"

// Defaults of Config.
const (
	// DefaultTimeout bounds one render request, as Argo Rollouts' HTTP
	// client timeout does.
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 10 << 20
)

// maxErrorBytes bounds the body of an error response read for its
// message; graphite-web's error page with a traceback is a few KiB.
const maxErrorBytes = 64 << 10

// Metadata keys of a measurement.
const (
	// MetadataTarget is the name of the series measured, the first one.
	MetadataTarget = "target"
	// MetadataSeries is how many series Graphite returned.
	MetadataSeries = "series"
)

// Config configures the provider. The zero value is valid.
type Config struct {
	// Timeout bounds each render request; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds the response body read; a larger one is an
	// Error measurement. 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Now is the clock of the measurements' times; nil means time.Now.
	Now func() time.Time
}

// Provider is the graphite metrics.Provider. Safe for concurrent use.
type Provider struct {
	cfg  Config
	pool transport.Pool
}

var _ metrics.Provider = (*Provider)(nil)

// New returns a provider with cfg. It returns an error for a negative
// Timeout or MaxResponseBytes.
func New(cfg Config) (*Provider, error) {
	switch {
	case cfg.Timeout < 0:
		return nil, errors.New("graphite: Timeout must not be negative")
	case cfg.MaxResponseBytes < 0:
		return nil, errors.New("graphite: MaxResponseBytes must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg}, nil
}

// Type returns "graphite".
func (p *Provider) Type() string { return Type }

// Timeout is the provider's timeout: a graphite metric sets none.
func (p *Provider) Timeout(spec.Metric) time.Duration { return p.cfg.Timeout }

// Measure sends metric's render request once. Every failure to get a value
// is an Error measurement whose message holds neither the address's user
// info nor the request's query string.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	g := req.Metric.Provider.Graphite
	if g == nil {
		return p.fail(m, fmt.Errorf("metric %q has no graphite provider", req.Metric.Name))
	}
	secrets := userInfo(g.Address)
	params, query, err := renderQuery(g.Query)
	m.Query = query
	if err != nil {
		return p.fail(m, err).Redact(secrets...)
	}
	u, err := renderURL(g.Address, params)
	if err != nil {
		return p.fail(m, err).Redact(secrets...)
	}
	out, err := p.render(ctx, u)
	if err != nil {
		return p.fail(m, err).Redact(secrets...)
	}
	m.Result, m.Value = out.Values, valueText(out.Values)
	m.Metadata = map[string]string{MetadataTarget: out.Target, MetadataSeries: strconv.Itoa(out.Series)}
	m.FinishedAt = p.cfg.Now()
	return m.Redact(secrets...)
}

// render sends one render request to u and reads its answer.
func (p *Provider) render(ctx context.Context, u *url.URL) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	client, err := p.pool.Client(transport.Settings{})
	if err != nil {
		return outcome{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return outcome{}, errors.New("address is not an http or https URL")
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return outcome{}, fmt.Errorf("graphite did not answer within %s: %s", p.cfg.Timeout, transport.Describe(err))
		}
		return outcome{}, errors.New(transport.Describe(err))
	}
	defer func() { _ = resp.Body.Close() }()
	limit := p.cfg.MaxResponseBytes
	if resp.StatusCode/100 != 2 {
		limit = maxErrorBytes
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return outcome{}, fmt.Errorf("graphite did not answer within %s: reading the response: %v", p.cfg.Timeout, err)
		}
		return outcome{}, fmt.Errorf("reading the response of %s: %v", transport.SafeURL(u), err)
	}
	if resp.StatusCode/100 != 2 {
		msg := fmt.Sprintf("graphite answered %s", resp.Status)
		if text := errorText(body); text != "" {
			msg += ": " + text
		}
		return outcome{}, errors.New(msg)
	}
	if int64(len(body)) > limit {
		return outcome{}, fmt.Errorf("response is larger than %d bytes", limit)
	}
	return parseRender(body)
}

func (p *Provider) fail(m metrics.Measurement, err error) metrics.Measurement {
	m.Phase = spec.AnalysisPhaseError
	m.Message = err.Error()
	m.FinishedAt = p.cfg.Now()
	return m
}

// userInfo lists what an address's password would give away: the
// password, escaped or not, the user info as written, and the credential
// of the basic authentication header it becomes. A user name alone is not
// a secret (redacting it could blank out common words).
func userInfo(address string) []string {
	u, err := url.Parse(address)
	if err != nil || u.User == nil {
		return nil
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return nil
	}
	user := u.User.Username()
	return []string{u.User.String(), pw, url.QueryEscape(pw), base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))}
}
