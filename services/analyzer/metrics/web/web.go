// Package web measures a metric with one HTTP request whose JSON response
// holds the result, as Argo Rollouts' web provider does, so its
// AnalysisTemplates work unchanged.
//
// Supported: GET, POST and PUT; headers; a body as text (body) or JSON
// (jsonBody, sent with Content-Type: application/json unless a header sets
// another); jsonPath in Kubernetes JSONPath syntax (`{$.data.ok}`, default
// `{$}`), of whose matches the first is the result; timeoutSeconds (default
// 10); insecure; authentication.basicAuth and .oauth2 (client credentials).
//
// The result is the decoded JSON value: a number is a float64, so
// `result > 0.9` works, and asFloat/asInt convert strings. The recorded value
// is its JSON text (`"ok"` with quotes for a string, as Argo Rollouts
// records it).
//
// Every failure is an Error measurement: the request failing or timing out,
// a status outside 2xx, a response over Config.MaxResponseBytes, a jsonPath
// that matches nothing. One deliberate change from Argo Rollouts: a response
// that is not JSON becomes, with the default jsonPath `{$}`, the result as a
// string that the conditions judge (Argo marks it Successful without looking
// at the conditions); with any other jsonPath it is an Error.
//
// Not supported: authentication.sigv4 (Check rejects it), other methods.
package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/util/jsonpath"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/transport"
)

// Type is the provider's name in a metric's provider block.
const Type = "web"

// Defaults of Config and of a metric's unset fields.
const (
	DefaultTimeout          = time.Duration(spec.DefaultWebMetricTimeoutSeconds) * time.Second
	DefaultMaxResponseBytes = 10 << 20
)

// Config configures the provider. The zero value is valid.
type Config struct {
	// MaxResponseBytes bounds the response body read; a larger one is an
	// Error measurement. 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Now is the clock of the measurements' times; nil means time.Now.
	Now func() time.Time
}

// Provider is the web metrics.Provider. Safe for concurrent use.
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
		return nil, errors.New("web: MaxResponseBytes must not be negative")
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg}, nil
}

// Type returns "web".
func (p *Provider) Type() string { return Type }

// Timeout is the metric's web timeoutSeconds, or DefaultTimeout when it
// sets none.
func (p *Provider) Timeout(metric spec.Metric) time.Duration {
	if w := metric.Provider.Web; w != nil && w.TimeoutSeconds > 0 {
		return time.Duration(w.TimeoutSeconds) * time.Second
	}
	return DefaultTimeout
}

// Check rejects a metric that can never be measured: no web block, an
// unsupported method, a jsonPath that does not parse, sigv4
// authentication.
func (p *Provider) Check(metric spec.Metric) error {
	w := metric.Provider.Web
	if w == nil {
		return errors.New("no web provider")
	}
	if _, err := method(w); err != nil {
		return err
	}
	if !strings.Contains(w.JSONPath, "{{") {
		if _, err := parsePath(w.JSONPath); err != nil {
			return err
		}
	}
	return transport.Check(settings(w))
}

// Measure sends metric's request once. Every failure to get a value is an
// Error measurement whose message never holds a credential or the URL's
// query string.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	metric := req.Metric
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	w := metric.Provider.Web
	if w == nil {
		return p.fail(m, "metric %q has no web provider", metric.Name)
	}
	s := settings(w)
	secrets := s.Secrets()
	result, value, query, err := p.request(ctx, w, s, p.Timeout(metric))
	m.Query = query
	if err != nil {
		return p.fail(m, "%s", err).Redact(secrets...)
	}
	m.Result, m.Value = result, value
	m.FinishedAt = p.cfg.Now()
	return m.Redact(secrets...)
}

func (p *Provider) request(ctx context.Context, w *spec.WebMetric, s transport.Settings, timeout time.Duration) (result any, value, query string, err error) {
	verb, err := method(w)
	if err != nil {
		return nil, "", "", err
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", "", errors.New("url is not an http or https URL")
	}
	query = string(verb) + " " + transport.SafeURL(u)
	path, err := parsePath(w.JSONPath)
	if err != nil {
		return nil, "", query, err
	}

	var body io.Reader
	switch {
	case w.Body != "" && len(w.JSONBody) > 0:
		return nil, "", query, errors.New("use either body or jsonBody, not both")
	case (w.Body != "" || len(w.JSONBody) > 0) && verb == spec.WebMetricMethodGet:
		return nil, "", query, errors.New("body and jsonBody need method POST or PUT")
	case w.Body != "":
		body = strings.NewReader(w.Body)
	case len(w.JSONBody) > 0:
		body = bytes.NewReader(w.JSONBody)
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	client, err := p.pool.Client(s)
	if err != nil {
		return nil, "", query, err
	}
	req, err := http.NewRequestWithContext(ctx, string(verb), u.String(), body)
	if err != nil {
		return nil, "", query, errors.New("cannot build the request")
	}
	if len(w.JSONBody) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", query, fmt.Errorf("request timed out after %s: %s", timeout, transport.Describe(err))
		}
		return nil, "", query, errors.New(transport.Describe(err))
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", query, fmt.Errorf("reading the response timed out after %s", timeout)
		}
		return nil, "", query, fmt.Errorf("reading the response: %v", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, "", query, fmt.Errorf("received non 2xx response code: %d", resp.StatusCode)
	}
	if int64(len(data)) > p.cfg.MaxResponseBytes {
		return nil, "", query, fmt.Errorf("response is larger than %d bytes", p.cfg.MaxResponseBytes)
	}
	result, value, err = extract(data, w.JSONPath, path)
	return result, value, query, err
}

// extract applies the parsed jsonPath to a response body.
func extract(data []byte, src string, path *jsonpath.JSONPath) (any, string, error) {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		if isRoot(src) {
			return string(data), string(data), nil
		}
		return nil, "", fmt.Errorf("response is not JSON, so jsonPath %s cannot apply", src)
	}
	found, err := path.FindResults(doc)
	if err != nil {
		return nil, "", fmt.Errorf("jsonPath %s: %v", displayPath(src), err)
	}
	for _, values := range found {
		for _, v := range values {
			if !v.IsValid() {
				return nil, "null", nil
			}
			result := v.Interface()
			text, err := json.Marshal(result)
			if err != nil {
				return nil, "", fmt.Errorf("jsonPath %s: %v", displayPath(src), err)
			}
			return result, string(text), nil
		}
	}
	return nil, "", fmt.Errorf("jsonPath %s matched nothing in the response", displayPath(src))
}

func isRoot(src string) bool {
	s := strings.TrimSpace(src)
	return s == "" || s == spec.DefaultWebMetricJSONPath
}

func displayPath(src string) string {
	if strings.TrimSpace(src) == "" {
		return spec.DefaultWebMetricJSONPath
	}
	return src
}

func parsePath(src string) (*jsonpath.JSONPath, error) {
	p := jsonpath.New("jsonPath")
	if err := p.Parse(displayPath(src)); err != nil {
		return nil, fmt.Errorf("jsonPath %s: %v", displayPath(src), err)
	}
	return p, nil
}

func method(w *spec.WebMetric) (spec.WebMetricMethod, error) {
	switch m := spec.WebMetricMethod(strings.ToUpper(string(w.Method))); m {
	case "":
		return spec.WebMetricMethodGet, nil
	case spec.WebMetricMethodGet, spec.WebMetricMethodPost, spec.WebMetricMethodPut:
		return m, nil
	}
	return "", fmt.Errorf("method %q is not supported; use GET, POST or PUT", w.Method)
}

func settings(w *spec.WebMetric) transport.Settings {
	return transport.Settings{Insecure: w.Insecure, Headers: w.Headers, Auth: w.Authentication}
}

func (p *Provider) fail(m metrics.Measurement, format string, args ...any) metrics.Measurement {
	m.Phase = spec.AnalysisPhaseError
	m.Message = fmt.Sprintf(format, args...)
	m.FinishedAt = p.cfg.Now()
	return m
}
