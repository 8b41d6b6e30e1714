// Package metrics is the analyzer's extension point for metric backends: the
// Provider interface, the Measurement it returns, and the Registry that maps
// a metric's provider block (`provider: {prometheus: ...}`) to the Provider
// registered under that name.
//
// A provider takes one measurement and says what it saw. It does not decide
// whether the canary is healthy: package analysis judges a measurement with
// the metric's successCondition and failureCondition and applies the limits.
// A provider that judges by itself (a Kubernetes Job that exits 0 or not)
// sets the phase and leaves the conditions out.
//
// Verdicts are data, never Go errors. An unreachable backend, a timeout, a
// 500 or a response that cannot be read is a Measurement with phase Error
// and a message saying why; the analysis counts it against the metric's
// consecutiveErrorLimit. Go errors are kept for configuration that can never
// work (an unknown provider, an unparsable jsonPath) and are reported before
// a run starts, by Registry.Check.
//
// Each provider is one package implementing Provider (which names its Type
// and bounds its own Timeout), and optionally Checker, with its block in
// spec.MetricProvider and its validation in package spec. The interface
// carries no Kubernetes, NATS or clock dependency; credentials come through
// Request.Secret.
//
// Deliberately not supported: Argo Rollouts' asynchronous Resume/Terminate
// protocol (a provider's measurement always completes within Measure) and
// provider-side garbage collection (measurements hold no external
// resources).
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Provider takes measurements from one kind of metric backend. A Provider is
// long-lived and safe for concurrent use; everything it needs to know about
// a metric comes with the metric.
type Provider interface {
	// Measure takes one measurement of req.Metric. It never returns a Go
	// error for a verdict: an unreachable backend is a Measurement with
	// phase Error and a message.
	Measure(ctx context.Context, req Request) Measurement
	// Type is the provider's name, the key of its block in a metric's
	// provider: "prometheus", "web".
	Type() string
	// Timeout is how long one Measure of metric may take: the metric's own
	// timeout setting, or the provider's default. Measure bounds itself by
	// it, and the analyzer claims the metric for that long plus a margin.
	Timeout(metric spec.Metric) time.Duration
}

// Request is one measurement to take: the metric, with the run's arguments
// and secrets substituted, and where it comes from.
type Request struct {
	Metric spec.Metric
	// Namespace and Rollout name the rollout the run analyses (or the
	// standalone experiment, when OwnerKind is events.KindExperiment).
	Namespace, Rollout string
	// OwnerKind is the run's task's (tasks.Task.OwnerKind): empty for a
	// rollout, events.KindExperiment for a standalone Experiment. A
	// provider that creates cluster objects (a Job) owns them by that
	// object.
	OwnerKind string
	// Run is the analysis run's name.
	Run string
	// ID names this measurement: "<run>.<metric>.<n>" for the metric's
	// n-th measurement (from 1). A replica that measures in place of one
	// that died sees the same ID, so a provider that creates something
	// (a Job) can find what the first attempt created.
	ID string
	// At, when not zero, is the instant to measure at: a provider that
	// queries by time (prometheus: an instant query's time, now() in a
	// rangeQuery) uses it instead of its clock. The judge sets it so that
	// a baseline and a canary are measured over the same window. Providers
	// that cannot choose the instant ignore it.
	At time.Time
	// Secret returns key of the Secret name in the rollout's namespace
	// (the local platform reads SLUICE_SECRET_<NAME>_<KEY>). Its errors
	// wrap ErrSecretNotFound or ErrSecretForbidden and name the Secret and
	// key, never a value. Every value it returns is redacted from the
	// measurement by the analyzer. Nil when the run reads no Secrets
	// (tests): every read is then ErrSecretNotFound.
	Secret func(ctx context.Context, name, key string) (string, error)
	// Setting reads like Secret, for a key that holds no secret (an
	// address, a region, an account id): its value is not redacted, so a
	// short value such as "us" does not blank out every message.
	Setting func(ctx context.Context, name, key string) (string, error)
}

// ReadSecret calls r.Secret, or returns ErrSecretNotFound when it is nil.
func (r Request) ReadSecret(ctx context.Context, name, key string) (string, error) {
	return read(ctx, r.Secret, name, key)
}

// ReadSetting calls r.Setting, or returns ErrSecretNotFound when it is nil.
func (r Request) ReadSetting(ctx context.Context, name, key string) (string, error) {
	return read(ctx, r.Setting, name, key)
}

func read(ctx context.Context, f func(context.Context, string, string) (string, error), name, key string) (string, error) {
	if f == nil {
		return "", fmt.Errorf("secret %q key %q: %w", name, key, ErrSecretNotFound)
	}
	return f(ctx, name, key)
}

// Errors of Secrets.Value and Request.Secret, wrapped with the namespace,
// Secret and key (never a value).
var (
	// ErrSecretNotFound: the Secret, the key or the variable does not
	// exist.
	ErrSecretNotFound = errors.New("secret not found")
	// ErrSecretForbidden: the analyzer may not read the Secret.
	ErrSecretForbidden = errors.New("secret not readable")
)

// Secrets reads the keys of Secrets: the values of analysis arguments given
// by valueFrom.secretKeyRef and the credentials of providers. A value is
// read for each measurement that needs it and redacted from the
// measurement: it is never stored.
type Secrets interface {
	// Value returns the value of ref.Key in the Secret ref.Name of
	// namespace, the rollout's. It returns an error wrapping
	// ErrSecretNotFound when the Secret or the key does not exist, and
	// ErrSecretForbidden when the analyzer may not read it; any other
	// error is the store's (the next measurement reads again).
	Value(ctx context.Context, namespace string, ref spec.SecretKeyRef) (string, error)
}

// Checker is implemented by providers that can tell, before a run starts,
// that a metric can never be measured (an unparsable jsonPath, an
// authentication method the provider does not support). Check returns nil
// for a metric that may work.
type Checker interface {
	Check(metric spec.Metric) error
}

// Measurement is one observation of one metric.
//
// Phase is empty when the provider measured a value and leaves the verdict
// to the metric's conditions (analysis.Judge); Error when the value could not
// be taken; Successful, Failed or Inconclusive when the provider judged by
// itself. A provider never returns Pending or Running.
type Measurement struct {
	Phase spec.AnalysisPhase `json:"phase,omitempty"`
	// Value is the result as Argo Rollouts records it: "0.99" for a
	// scalar, "[0.99,0.5]" for a vector, the JSON text of a web result.
	Value string `json:"value,omitempty"`
	// Result is what the conditions see as `result`: float64, []float64,
	// a decoded JSON value (string, float64, bool, nil, map, slice), or a
	// provider's own typed value where Argo Rollouts hands the conditions
	// one (cloudWatch's MetricDataResults). It is not kept when a
	// measurement is stored.
	Result any `json:"-"`
	// Query is what was asked: the PromQL query, or the web request's
	// method and URL without its query string.
	Query string `json:"query,omitempty"`
	// Provider is the Type of the provider that took the measurement.
	Provider   string    `json:"provider,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	// Metadata is provider data, such as Prometheus warnings.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Judged reports whether m already has a verdict (or an error).
func (m Measurement) Judged() bool { return m.Phase != "" }

// Redaction replaces every secret that Redact finds.
const Redaction = "*****"

// Redact returns m with every occurrence of each non-empty secret replaced
// by Redaction in its Message, Value, Query and Metadata values. Result is
// left alone: it is never stored or sent. Longer secrets are replaced first,
// so a secret containing another is hidden whole.
func (m Measurement) Redact(secrets ...string) Measurement {
	ss := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s != "" {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return m
	}
	sort.Slice(ss, func(i, j int) bool { return len(ss[i]) > len(ss[j]) })
	redact := func(v string) string {
		for _, s := range ss {
			v = strings.ReplaceAll(v, s, Redaction)
		}
		return v
	}
	m.Message = redact(m.Message)
	m.Value = redact(m.Value)
	m.Query = redact(m.Query)
	if len(m.Metadata) > 0 {
		md := make(map[string]string, len(m.Metadata))
		for k, v := range m.Metadata {
			md[k] = redact(v)
		}
		m.Metadata = md
	}
	return m
}

// Event is m as the public io.sluice.analysis.measured.v1 data for metric.
func (m Measurement) Event(metric string) events.Measurement {
	return events.Measurement{
		Metric:     metric,
		Phase:      string(m.Phase),
		Value:      m.Value,
		Query:      m.Query,
		Provider:   m.Provider,
		Message:    m.Message,
		StartedAt:  m.StartedAt,
		FinishedAt: m.FinishedAt,
	}
}

// ErrNoProvider is wrapped by the errors of Registry for a metric whose
// provider is not registered.
var ErrNoProvider = errors.New("no metric provider")

// Registry maps provider names to providers. The zero value has none;
// a Registry is read-only after NewRegistry and safe for concurrent use.
type Registry struct {
	byType map[string]Provider
}

// NewRegistry registers providers under their Type. Two providers of one
// Type, or an empty Type, are an error.
func NewRegistry(providers ...Provider) (*Registry, error) {
	r := &Registry{byType: make(map[string]Provider, len(providers))}
	for _, p := range providers {
		t := p.Type()
		if t == "" {
			return nil, fmt.Errorf("metric provider %T has an empty type", p)
		}
		if _, dup := r.byType[t]; dup {
			return nil, fmt.Errorf("metric provider %q registered twice", t)
		}
		r.byType[t] = p
	}
	return r, nil
}

// Provider returns the provider for metric's provider block. It returns an
// error wrapping ErrNoProvider ("no metric provider named \"datadog\"") when
// that provider is not registered, and a plain error when the block names no
// provider or several.
func (r *Registry) Provider(metric spec.Metric) (Provider, error) {
	name, err := Type(metric.Provider)
	if err != nil {
		return nil, fmt.Errorf("metric %q: %w", metric.Name, err)
	}
	p, ok := r.byType[name]
	if !ok {
		return nil, fmt.Errorf("metric %q: %w named %q", metric.Name, ErrNoProvider, name)
	}
	return p, nil
}

// Close closes every provider that holds resources (an io.Closer, such as
// the plugin provider's processes) and returns their errors. The registry's
// owner calls it once no measurement is in progress.
func (r *Registry) Close() error {
	var errs []error
	for _, p := range r.byType {
		if c, ok := p.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// DefaultTimeout is the Timeout of a metric whose provider is not
// registered (it is never measured; the run fails its Check).
const DefaultTimeout = 30 * time.Second

// Timeout is the Timeout of metric's provider, or DefaultTimeout when that
// provider is not registered.
func (r *Registry) Timeout(metric spec.Metric) time.Duration {
	p, err := r.Provider(metric)
	if err != nil {
		return DefaultTimeout
	}
	return p.Timeout(metric)
}

// Check returns why metric can never be measured, or nil: its provider is
// not registered, or the provider's Checker rejects it.
func (r *Registry) Check(metric spec.Metric) error {
	p, err := r.Provider(metric)
	if err != nil {
		return err
	}
	if c, ok := p.(Checker); ok {
		if err := c.Check(metric); err != nil {
			return fmt.Errorf("metric %q: %w", metric.Name, err)
		}
	}
	return nil
}

// Type names the one provider set in p, by its key in the manifest
// ("prometheus", "web", "datadog", "newRelic", ...). It returns an error when
// none or several are set.
func Type(p spec.MetricProvider) (string, error) {
	var set []string
	add := func(name string, ok bool) {
		if ok {
			set = append(set, name)
		}
	}
	add("prometheus", p.Prometheus != nil)
	add("web", p.Web != nil)
	add("kayenta", present(p.Kayenta))
	add("datadog", p.Datadog != nil)
	add("wavefront", present(p.Wavefront))
	add("newRelic", p.NewRelic != nil)
	add("job", p.Job != nil)
	add("cloudWatch", p.CloudWatch != nil)
	add("graphite", p.Graphite != nil)
	add("influxdb", p.Influxdb != nil)
	add("skywalking", present(p.SkyWalking))
	add("plugin", len(p.Plugin) > 0)
	switch len(set) {
	case 0:
		return "", errors.New("no provider set")
	case 1:
		return set[0], nil
	}
	return "", fmt.Errorf("several providers set: %s", strings.Join(set, ", "))
}

// present reports whether a raw provider block is set: `datadog: null`
// is not.
func present(raw json.RawMessage) bool {
	v := strings.TrimSpace(string(raw))
	return v != "" && v != "null"
}
