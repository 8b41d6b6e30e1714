// Package influxdb measures metrics with a Flux query through InfluxDB's
// /api/v2/query endpoint and the official client
// (github.com/influxdata/influxdb-client-go/v2), as Argo Rollouts' influxdb
// provider does, so its AnalysisTemplates work unchanged.
//
// The address, org and token come from the metric's profile: the Secret
// named by `profile` (default "influxdb") with the keys address, org and
// authToken, read at each measurement through metrics.Request (the rollout's
// namespace on kube, SLUICE_SECRET_INFLUXDB_<KEY> locally). The token is a
// secret and is redacted; address and org are settings.
//
// What the conditions see as `result` is what Argo Rollouts gives them: the
// `_value` of every row of every table of the response, in order, as a
// []any of the column's type (float64 for double, int64 for long, uint64
// for unsignedLong, string, bool, time.Time; nil for a null). The value is
// recorded as Argo records it, fmt.Sprint of that list: "[1 6.6]". NaN and
// infinities are the float values they are ("[NaN]", "[+Inf]"); a null is
// nil ("[<nil>]"), which no comparison takes for a number. A response with
// no rows is an Error measurement ("no results returned from flux query"),
// as in Argo Rollouts, so missing data never reaches the conditions.
//
// One query per measurement, no retries (the metric's
// consecutiveErrorLimit decides what an error costs), bounded by
// DefaultTimeout for the whole exchange, the body included.
package influxdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// Type is the provider's name in a metric's provider block.
const Type = "influxdb"

// DefaultTimeout bounds one query, as Argo Rollouts' 30 seconds do: the
// request, the response and reading its tables. The influxdb block has no
// timeout field.
const DefaultTimeout = 30 * time.Second

// DefaultProfile is the Secret read when the metric names no profile, the
// name Argo Rollouts uses.
const DefaultProfile = "influxdb"

// The keys of the profile Secret, Argo Rollouts' names.
const (
	KeyAddress   = "address"
	KeyOrg       = "org"
	KeyAuthToken = "authToken"
)

// Config is the provider's settings. The zero value is valid.
type Config struct {
	// Now is the clock of StartedAt and FinishedAt; nil means time.Now.
	Now func() time.Time
	// Timeout replaces DefaultTimeout when positive (tests).
	Timeout time.Duration
}

// Provider is the influxdb metrics.Provider. Safe for concurrent use.
type Provider struct {
	now     func() time.Time
	timeout time.Duration
	pool    transport.Pool
}

var _ metrics.Provider = (*Provider)(nil)

// New returns a provider with cfg. It never fails; the error is the
// shape every provider's New shares.
func New(cfg Config) (*Provider, error) {
	p := &Provider{now: cfg.Now, timeout: cfg.Timeout}
	if p.now == nil {
		p.now = time.Now
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	return p, nil
}

// Type returns "influxdb".
func (p *Provider) Type() string { return Type }

// Timeout is DefaultTimeout (Config.Timeout when set): Argo's influxdb
// block has no timeout of its own.
func (p *Provider) Timeout(spec.Metric) time.Duration { return p.timeout }

// profile is what the profile Secret holds.
type profile struct {
	address, org, token string
}

// Measure runs the metric's Flux query once. Every failure to get a value
// is an Error measurement whose message never holds the token.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	m := metrics.Measurement{Provider: Type, StartedAt: p.now()}
	im := req.Metric.Provider.Influxdb
	if im == nil {
		return p.fail(m, fmt.Sprintf("metric %q has no influxdb provider", req.Metric.Name))
	}
	m.Query = im.Query
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	prof, err := readProfile(ctx, req, profileName(im))
	if err != nil {
		return p.fail(m, err.Error()).Redact(prof.token)
	}
	values, err := p.query(ctx, prof, im.Query)
	if err != nil {
		msg := describe(err)
		if ctx.Err() != nil || timedOut(err) {
			msg = fmt.Sprintf("query timed out after %s: %s", p.timeout, msg)
		}
		return p.fail(m, msg).Redact(prof.token)
	}
	result, value, err := convert(values)
	if err != nil {
		return p.fail(m, err.Error()).Redact(prof.token)
	}
	m.Result, m.Value = result, value
	m.FinishedAt = p.now()
	return m.Redact(prof.token)
}

// query sends one Flux query and reads every row's _value. An error table
// in the response stream is an error, not a partial result.
func (p *Provider) query(ctx context.Context, prof profile, flux string) ([]any, error) {
	// The pool's client carries the project's proxy and TLS defaults; the
	// client library's own request timeout is replaced by ours.
	httpClient, err := p.pool.Client(transport.Settings{})
	if err != nil {
		return nil, err
	}
	httpClient.Timeout = p.timeout
	client := influxdb2.NewClientWithOptions(prof.address, prof.token, influxdb2.DefaultOptions().SetHTTPClient(httpClient))
	defer client.Close()
	res, err := client.QueryAPI(prof.org).Query(ctx, flux)
	if err != nil {
		return nil, err
	}
	defer func() { _ = res.Close() }()
	var values []any
	for res.Next() {
		values = append(values, res.Record().Value())
	}
	if err := res.Err(); err != nil {
		return nil, &streamError{err: err}
	}
	return values, nil
}

func profileName(m *spec.InfluxdbMetric) string {
	if name := strings.TrimSpace(m.Profile); name != "" {
		return name
	}
	return DefaultProfile
}

// readProfile reads the three keys of the profile Secret, reporting every
// missing one (the errors name the Secret or the variable to set, never a
// value). The token is returned even with an error, for redaction.
func readProfile(ctx context.Context, req metrics.Request, name string) (profile, error) {
	var prof profile
	var errs []string
	read := func(key string, secret bool) string {
		readKey := req.ReadSetting
		if secret {
			readKey = req.ReadSecret
		}
		v, err := readKey(ctx, name, key)
		if err == nil && strings.TrimSpace(v) == "" {
			err = fmt.Errorf("secret %q key %q is empty", name, key)
		}
		if err != nil {
			errs = append(errs, err.Error())
		}
		return strings.TrimSpace(v)
	}
	prof.address = read(KeyAddress, false)
	prof.org = read(KeyOrg, false)
	prof.token = read(KeyAuthToken, true)
	if len(errs) > 0 {
		return prof, fmt.Errorf("influxdb profile %q: %s", name, strings.Join(errs, "; "))
	}
	if u, err := url.Parse(prof.address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return prof, fmt.Errorf("influxdb profile %q: key %q must be an http or https URL", name, KeyAddress)
	} else if u.User != nil {
		return prof, fmt.Errorf("influxdb profile %q: key %q must not hold credentials; put the token in key %q", name, KeyAddress, KeyAuthToken)
	}
	return prof, nil
}

func (p *Provider) fail(m metrics.Measurement, msg string) metrics.Measurement {
	m.Phase = spec.AnalysisPhaseError
	m.Message = msg
	m.FinishedAt = p.now()
	return m
}

// streamError is an error met while reading the response's tables: an
// error table InfluxDB sent after the status line, or an unreadable row.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// timedOut reports an error of the HTTP client's own timeout, which may
// fire just before the context's.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var errNoResults = errors.New("no results returned from flux query")
