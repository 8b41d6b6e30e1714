// Package job measures a metric by running a Kubernetes Job, as Argo
// Rollouts' job provider does: the measurement is Successful when the Job
// completes and Failed when it fails, whatever the metric's conditions
// say. A smoke test or a load test is a Job.
//
// On the kube platform (Config.Kube set) the Job is created from the
// metric's metadata and spec in the rollout's namespace, watched until it
// finishes, and kept: the last Config.Keep Jobs of each metric of a
// rollout stay for inspection, older ones are deleted, and the Rollout
// object the measurement is for, when there is one, owns the Job, so that
// Kubernetes' garbage collector deletes the rest with it. A Job whose pod
// cannot pull its image is Inconclusive, as in Argo. On the local
// platform (no Config.Kube) the Job's first container runs as a process
// of the analyzer's machine, its exit code deciding and its output (the
// last MaxOutput bytes) kept as the measurement's message.
//
// Unlike Argo Rollouts, whose controller comes back to a Job until it
// finishes, a measurement waits for its Job within Timeout: the Job's
// activeDeadlineSeconds plus DeadlineMargin, or Config.DefaultTimeout
// (10m) without one. A Job still running then is deleted and the
// measurement is an Error.
package job

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Type is the provider's name in a metric's provider block.
const Type = "job"

// Defaults of Config and bounds of a measurement.
const (
	// DefaultTimeout bounds a Job that sets no activeDeadlineSeconds.
	DefaultTimeout = 10 * time.Minute
	// DeadlineMargin is added to a Job's activeDeadlineSeconds to form
	// the measurement's timeout: the time for its pod to be scheduled
	// and for the Job controller to mark it failed once the deadline
	// passes.
	DeadlineMargin = 30 * time.Second
	// DefaultPodCheckInterval is how often a running Job's pods are
	// listed for a container that cannot start.
	DefaultPodCheckInterval = 5 * time.Second
	// DefaultKeep is how many Jobs of one metric of a rollout are kept:
	// Argo Rollouts' measurement history limit.
	DefaultKeep = 10
	// MaxOutput bounds the output, or pod termination message, kept in
	// a measurement's message: its last MaxOutput bytes.
	MaxOutput = 4 << 10
)

// Config configures the provider. The zero value runs Jobs as local
// processes.
type Config struct {
	// Kube is the cluster Jobs are created in (the analyzer's --platform
	// kube connection). Nil runs each Job's first container as a local
	// process instead.
	Kube kubernetes.Interface
	// Dynamic reads the Rollout object that owns a measurement's Job,
	// from the same connection as Kube. Nil creates Jobs without an
	// owner. Needs Kube.
	Dynamic dynamic.Interface
	// Keep is how many Jobs of one metric of one rollout are kept after
	// they finish; older ones are deleted (default DefaultKeep).
	Keep int
	// DefaultTimeout bounds a Job without activeDeadlineSeconds (default
	// DefaultTimeout).
	DefaultTimeout time.Duration
	// PodCheckInterval is how often a running Job's pods are listed for a
	// container that cannot start (default DefaultPodCheckInterval).
	PodCheckInterval time.Duration
	// Environ is the environment a local process starts from, before its
	// container's env. Default: PATH, HOME, USER, LANG, LC_*, TZ, TMPDIR,
	// SHELL and the proxy variables of the analyzer's environment, and
	// nothing else: the analyzer's credentials (SLUICE_*, NATS_*, cloud
	// keys) are not the Job's, as a pod does not get them either.
	Environ []string
	// Now is the clock of the measurements' times; nil means time.Now.
	Now func() time.Time
}

// Validate reports a Config that cannot be used.
func (c Config) Validate() error {
	if c.Keep < 0 {
		return errors.New("job: Keep must not be negative")
	}
	if c.Dynamic != nil && c.Kube == nil {
		return errors.New("job: Dynamic needs Kube")
	}
	if c.DefaultTimeout < 0 || c.PodCheckInterval < 0 {
		return errors.New("job: DefaultTimeout and PodCheckInterval must not be negative")
	}
	return nil
}

// Provider is the job metrics.Provider. Safe for concurrent use.
type Provider struct {
	cfg Config
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
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = DefaultTimeout
	}
	if cfg.PodCheckInterval == 0 {
		cfg.PodCheckInterval = DefaultPodCheckInterval
	}
	if cfg.Environ == nil {
		cfg.Environ = baseEnviron(os.Environ())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg}, nil
}

// Type returns "job".
func (p *Provider) Type() string { return Type }

// Timeout is the Job's activeDeadlineSeconds plus DeadlineMargin, or
// Config.DefaultTimeout when it sets none.
func (p *Provider) Timeout(metric spec.Metric) time.Duration {
	if j := metric.Provider.Job; j != nil && j.Spec.ActiveDeadlineSeconds != nil && *j.Spec.ActiveDeadlineSeconds > 0 {
		return time.Duration(*j.Spec.ActiveDeadlineSeconds)*time.Second + DeadlineMargin
	}
	return p.cfg.DefaultTimeout
}

// Check rejects a metric without a job block. What the local platform
// cannot run (valueFrom, volumes) is an Error measurement there, not a
// Check failure: the same template is valid on the kube platform.
func (p *Provider) Check(metric spec.Metric) error {
	if metric.Provider.Job == nil {
		return errors.New("no job provider")
	}
	return nil
}

// Measure runs the metric's Job once and waits for it within Timeout.
func (p *Provider) Measure(ctx context.Context, req metrics.Request) metrics.Measurement {
	m := metrics.Measurement{Provider: Type, StartedAt: p.cfg.Now()}
	if req.Metric.Provider.Job == nil {
		return p.finish(m, spec.AnalysisPhaseError, fmt.Sprintf("metric %q has no job provider", req.Metric.Name))
	}
	timeout := p.Timeout(req.Metric)
	if p.cfg.Kube != nil {
		return p.measureKube(ctx, req, m, timeout)
	}
	return p.measureLocal(ctx, req, m, timeout)
}

func (p *Provider) finish(m metrics.Measurement, phase spec.AnalysisPhase, msg string) metrics.Measurement {
	m.Phase, m.Message, m.FinishedAt = phase, msg, p.cfg.Now()
	return m
}

// baseEnviron keeps the variables of environ a local Job starts with.
func baseEnviron(environ []string) []string {
	keep := map[string]bool{
		"PATH": true, "HOME": true, "USER": true, "LANG": true, "TZ": true, "TMPDIR": true, "SHELL": true,
		"HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true, "http_proxy": true, "https_proxy": true, "no_proxy": true,
	}
	out := []string{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if keep[name] || strings.HasPrefix(name, "LC_") {
			out = append(out, kv)
		}
	}
	return out
}

// tail returns the last MaxOutput bytes of s, trimmed, marked when cut.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= MaxOutput {
		return s
	}
	s = s[len(s)-MaxOutput:]
	// Do not start in the middle of a UTF-8 sequence.
	for i := 0; i < len(s) && i < 4; i++ {
		if s[i]&0xC0 != 0x80 {
			s = s[i:]
			break
		}
	}
	return "..." + s
}
