// Package plugin is the plugin metric provider: it runs Argo Rollouts'
// metric plugins, unchanged, over Argo's protocol (hashicorp/go-plugin with
// net/rpc, Argo's handshake and its RpcMetricProviderPlugin, through Argo's
// own client in metricproviders/plugin/rpc).
//
// A metric names one plugin and gives it its configuration:
//
//	provider:
//	  plugin:
//	    argoproj-labs/sample-prometheus: {address: ..., query: ...}
//
// The plugin gets that metric, as Argo's v1alpha1.Metric, and an
// AnalysisRun with the run's name and namespace. It judges by itself, as in
// Argo Rollouts: the phase it returns is the verdict. When it answers
// Running (an asynchronous measurement), Measure calls Resume, at the
// measurement's resumeAt or every ResumeInterval, until it is done; when the
// plugin's timeout passes first, Measure calls Terminate and the measurement
// is an Error.
//
// Plugins are configured by Config.Plugins (Argo's metricProviderPlugins
// list, see LoadFile). Each runs as one process, started at its first
// measurement and shared by every metric that names it; a process that
// crashed or stopped answering is killed and a new one is started for the
// next measurement. Close kills them all.
//
// The name Reserved (sluice/judge) is Sluice's own canary judge, given in
// Config.Builtin: a metric naming it is handed to it and no process runs.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/argoproj/argo-rollouts/metricproviders/plugin/rpc"
	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/hashicorp/go-hclog"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Type is the provider's name in a metric's provider block.
const Type = "plugin"

// Defaults.
const (
	// DefaultTimeout bounds one measurement of a plugin whose item sets no
	// timeout: starting the process, Run and every Resume.
	DefaultTimeout = time.Minute
	// DefaultResumeInterval is how soon Resume is called after a Running
	// measurement that names no resumeAt.
	DefaultResumeInterval = time.Second
	// TerminateTimeout bounds the Terminate call after a timeout, and the
	// kill of a plugin that does not answer it.
	TerminateTimeout = 5 * time.Second
)

// Config configures the provider. The zero value knows no plugins and
// checks no names: it is what `sluice lint` and the gateway use, which do
// not know which plugins the analyzer runs. The analyzer sets CheckNames.
type Config struct {
	// Plugins are the plugins the analyzer may run (LoadFile reads them
	// from a file).
	Plugins []Plugin
	// CheckNames makes Check refuse a metric that names a plugin not in
	// Plugins, so that its run fails before it starts.
	CheckNames bool
	// Source says where Plugins are configured, for the messages about a
	// plugin that is not ("--metric-plugins"). Default "the analyzer's
	// metric plugins".
	Source string
	// ResumeInterval is how soon a Running measurement without resumeAt is
	// resumed (default DefaultResumeInterval).
	ResumeInterval time.Duration
	// LogOutput receives go-plugin's log and the plugins' stderr, at
	// debug level and above (default os.Stderr).
	LogOutput io.Writer
	// Builtin are the plugins Sluice implements itself (the judge, under
	// Reserved), by their Type: a metric naming one is measured, checked
	// and timed by it, and no process is started.
	Builtin []metrics.Provider
}

// Provider is the plugin metrics.Provider. Safe for concurrent use.
type Provider struct {
	cfg     Config
	slots   map[string]*slot
	builtin map[string]metrics.Provider
}

var (
	_ metrics.Provider = (*Provider)(nil)
	_ metrics.Checker  = (*Provider)(nil)
	_ io.Closer        = (*Provider)(nil)
)

// New checks cfg.Plugins (names, locations, executables and their sha256)
// and returns a provider that starts none of them yet. Every problem is
// reported at once; an http(s) location is one.
func New(cfg Config) (*Provider, error) {
	if cfg.ResumeInterval < 0 {
		return nil, errors.New("ResumeInterval must not be negative")
	}
	if cfg.ResumeInterval == 0 {
		cfg.ResumeInterval = DefaultResumeInterval
	}
	if cfg.Source == "" {
		cfg.Source = "the analyzer's metric plugins"
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	ps, err := check(cfg.Plugins)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, slots: make(map[string]*slot, len(ps)), builtin: make(map[string]metrics.Provider, len(cfg.Builtin))}
	for _, b := range cfg.Builtin {
		if b.Type() != Reserved {
			return nil, fmt.Errorf("built-in plugin %q: only %s is built in", b.Type(), Reserved)
		}
		p.builtin[b.Type()] = b
	}
	for name, pl := range ps {
		p.slots[name] = &slot{plugin: pl, log: hclog.New(&hclog.LoggerOptions{
			Name:   "metric-plugin." + name,
			Level:  hclog.Debug,
			Output: cfg.LogOutput,
		})}
	}
	return p, nil
}

// Type returns "plugin".
func (p *Provider) Type() string { return Type }

// Timeout is the named plugin's timeout (DefaultTimeout for a plugin that
// is not configured) plus twice TerminateTimeout: for a Resume call in
// flight at the timeout, and for Terminate.
func (p *Provider) Timeout(metric spec.Metric) time.Duration {
	if b := p.builtinOf(metric); b != nil {
		return b.Timeout(metric)
	}
	if s := p.slot(metric); s != nil {
		return s.plugin.timeout + 2*TerminateTimeout
	}
	return DefaultTimeout + 2*TerminateTimeout
}

// builtinOf is the built-in plugin metric names, or nil.
func (p *Provider) builtinOf(metric spec.Metric) metrics.Provider {
	name, err := pluginName(metric)
	if err != nil {
		return nil
	}
	return p.builtin[name]
}

func (p *Provider) slot(metric spec.Metric) *slot {
	name, err := pluginName(metric)
	if err != nil {
		return nil
	}
	return p.slots[name]
}

// pluginName is the one plugin metric names.
func pluginName(metric spec.Metric) (string, error) {
	names := make([]string, 0, len(metric.Provider.Plugin))
	for name := range metric.Provider.Plugin {
		names = append(names, name)
	}
	switch len(names) {
	case 0:
		return "", errors.New("no plugin provider")
	case 1:
		return names[0], nil
	}
	sort.Strings(names)
	return "", fmt.Errorf("the plugin provider names several plugins (%s); name one", strings.Join(names, ", "))
}

// ErrNoPlugin is wrapped by Check's and Measure's errors for a metric
// whose plugin is not configured.
var ErrNoPlugin = errors.New("no metric plugin")

// Check refuses a metric that names several plugins, and, with
// CheckNames, one whose plugin is not configured.
func (p *Provider) Check(metric spec.Metric) error {
	name, err := pluginName(metric)
	if err != nil {
		return err
	}
	if b := p.builtin[name]; b != nil {
		if c, ok := b.(metrics.Checker); ok {
			return c.Check(metric)
		}
		return nil
	}
	if p.cfg.CheckNames && p.slots[name] == nil {
		return p.unknown(name)
	}
	return nil
}

func (p *Provider) unknown(name string) error {
	known := slices.Sorted(func(yield func(string) bool) {
		for n := range p.slots {
			if !yield(n) {
				return
			}
		}
	})
	have := "none is configured"
	if len(known) > 0 {
		have = "configured: " + strings.Join(known, ", ")
	}
	return fmt.Errorf("%w named %q; configure it in %s (%s)", ErrNoPlugin, name, p.cfg.Source, have)
}

// Measure runs the metric's plugin: Run, then Resume while the measurement
// is Running, then Terminate if the plugin's timeout passes first. A
// plugin that cannot start, crashes, does not answer in time or returns an
// Error is an Error measurement saying so.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	if b := p.builtinOf(req.Metric); b != nil {
		return b.Measure(ctx, req)
	}
	m, err := p.measure(ctx, req)
	if err != nil {
		return metrics.Measurement{Phase: spec.AnalysisPhaseError, Provider: Type, Message: err.Error()}
	}
	m.Provider = Type
	return m
}

func (p *Provider) measure(ctx context.Context, req metrics.Request) (metrics.Measurement, error) {
	name, err := pluginName(req.Metric)
	if err != nil {
		return metrics.Measurement{}, err
	}
	s := p.slots[name]
	if s == nil {
		return metrics.Measurement{}, p.unknown(name)
	}
	am, err := argoMetric(req.Metric)
	if err != nil {
		return metrics.Measurement{}, err
	}
	run := analysisRun(req, am)
	timeout := s.plugin.timeout
	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	proc, err := s.get()
	if err != nil {
		return metrics.Measurement{}, fmt.Errorf("metric plugin %s: %w", name, err)
	}
	got, err := measurementCall(mctx, s, proc, func(c rpc.MetricProviderPlugin) v1alpha1.Measurement { return c.Run(run, am) })
	// A Resume call in flight when the timeout passes may finish within
	// TerminateTimeout; only a plugin that takes longer is killed.
	deadline, _ := mctx.Deadline()
	rctx, rcancel := context.WithDeadline(ctx, deadline.Add(TerminateTimeout))
	defer rcancel()
	for err == nil && !completed(got) {
		wait := p.cfg.ResumeInterval
		if got.ResumeAt != nil && time.Until(got.ResumeAt.Time) > 0 {
			wait = time.Until(got.ResumeAt.Time)
		}
		t := time.NewTimer(wait)
		select {
		case <-mctx.Done():
			t.Stop()
			return p.terminate(ctx, s, proc, run, am, got, timeout), nil
		case <-t.C:
		}
		prev := got
		got, err = measurementCall(rctx, s, proc, func(c rpc.MetricProviderPlugin) v1alpha1.Measurement { return c.Resume(run, am, prev) })
	}
	if err != nil {
		return metrics.Measurement{}, fmt.Errorf("metric plugin %s did not answer within %s; it was stopped and will be started again for the next measurement", name, timeout)
	}
	if got.Phase == v1alpha1.AnalysisPhaseError {
		if perr := proc.ping(); perr != nil {
			s.drop(proc)
			got.Message = fmt.Sprintf("metric plugin %s exited: %s; it will be started again for the next measurement", name, strings.TrimSpace(got.Message))
		}
		return measurement(got, nil), nil
	}
	md, _ := call(rctx, s, proc, func(c rpc.MetricProviderPlugin) map[string]string { return c.GetMetadata(am) })
	return measurement(got, md), nil
}

// terminate ends a measurement the plugin did not finish in time. Whatever
// Terminate answers, the measurement is an Error: it has no verdict.
func (p *Provider) terminate(ctx context.Context, s *slot, proc *process, run *v1alpha1.AnalysisRun, am v1alpha1.Metric, last v1alpha1.Measurement, timeout time.Duration) metrics.Measurement {
	name := s.plugin.Name
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), TerminateTimeout)
	defer cancel()
	msg := fmt.Sprintf("metric plugin %s did not finish the measurement within %s", name, timeout)
	got, err := measurementCall(tctx, s, proc, func(c rpc.MetricProviderPlugin) v1alpha1.Measurement { return c.Terminate(run, am, last) })
	switch {
	case err != nil:
		msg += "; it did not answer Terminate and was stopped"
	case strings.TrimSpace(got.Message) != "":
		msg += "; terminated: " + strings.TrimSpace(got.Message)
	default:
		msg += "; terminated"
	}
	m := measurement(got, nil)
	m.Phase, m.Message, m.Value = spec.AnalysisPhaseError, msg, ""
	return m
}

// Close kills every plugin process and starts no other. Measurements in
// progress end with an Error.
func (p *Provider) Close() error {
	for _, s := range p.slots {
		s.close()
	}
	return nil
}
