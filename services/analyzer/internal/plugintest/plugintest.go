// Package plugintest is an Argo Rollouts metric plugin for tests, written the
// way Argo's sample plugins are: an implementation of Argo's
// rpc.MetricProviderPlugin served by Argo's own server side
// (rpc.RpcMetricProviderPlugin over hashicorp/go-plugin's net/rpc), which
// judges its result with Argo's evaluate package. It is built with the
// other test binaries (internal/testbin; package metricplugin), and Build
// gives a test its own copy to configure as a metric plugin; the provider,
// the security and the e2e suites can share it.
//
// The plugin answers from its configuration, the metric's
// `provider.plugin.<name>` JSON (Config).
package plugintest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testbin"

	"github.com/argoproj/argo-rollouts/metricproviders/plugin/rpc"
	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/utils/evaluate"
	metricutil "github.com/argoproj/argo-rollouts/utils/metric"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Handshake is Argo Rollouts' handshake for metric plugins, copied here
// rather than shared with the provider so that a provider that drifts from
// Argo's fails the tests.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "ARGO_ROLLOUTS_RPC_PLUGIN",
	MagicCookieValue: "metricprovider",
}

// Config is the plugin's configuration in a metric:
//
//	provider:
//	  plugin:
//	    sluice-test/sample: {value: "0.9"}
type Config struct {
	// Value is the result, a float64 for the conditions when it parses as
	// one, else a string.
	Value string `json:"value,omitempty"`
	// Pending is how many Resume calls answer Running before the result.
	Pending int `json:"pending,omitempty"`
	// Error makes Run return an Error measurement with this message.
	Error string `json:"error,omitempty"`
	// Crash makes the process exit in the middle of Run.
	Crash bool `json:"crash,omitempty"`
	// Hang makes Run never answer.
	Hang bool `json:"hang,omitempty"`
}

// Name is the plugin's name in the tests' configurations; the plugin
// answers to any name it is configured under.
const Name = "sluice-test/sample"

// Metadata keys of the plugin's measurements.
const (
	// MetaPID is the plugin process's id: a restarted plugin has another.
	MetaPID = "pid"
	// MetaRemaining counts the Resume calls left before the result.
	MetaRemaining = "remaining"
	// MetaRun is the analysis run's namespace/name as the plugin saw it.
	MetaRun = "run"
	// MetaInit is "yes" when InitPlugin was called before Run.
	MetaInit = "init"
	// MetaSecretEnv counts the plugin's SLUICE_SECRET_* environment
	// variables (the local platform's Secrets), which it must not have.
	MetaSecretEnv = "secret-env"
)

// InitErrorArg, given to the plugin as its first argument (the plugin
// item's args), makes InitPlugin fail with the text that follows it.
const InitErrorArg = "--init-error="

// Plugin is the implementation behind Argo's RPC server.
type Plugin struct {
	initError string
	mu        sync.Mutex
	inited    bool
}

var _ rpc.MetricProviderPlugin = (*Plugin)(nil)

// InitPlugin fails when the plugin was started with InitErrorArg.
func (p *Plugin) InitPlugin() types.RpcError {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inited = true
	return types.RpcError{ErrorString: p.initError}
}

// Run measures from the metric's configuration.
func (p *Plugin) Run(run *v1alpha1.AnalysisRun, metric v1alpha1.Metric) v1alpha1.Measurement {
	now := metav1.Now()
	m := v1alpha1.Measurement{StartedAt: &now, Metadata: map[string]string{MetaPID: strconv.Itoa(os.Getpid())}}
	p.mu.Lock()
	if p.inited {
		m.Metadata[MetaInit] = "yes"
	}
	p.mu.Unlock()
	if run != nil {
		m.Metadata[MetaRun] = run.Namespace + "/" + run.Name
	}
	n := 0
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SLUICE_SECRET_") {
			n++
		}
	}
	m.Metadata[MetaSecretEnv] = strconv.Itoa(n)
	cfg, err := config(metric)
	if err != nil {
		return metricutil.MarkMeasurementError(m, err)
	}
	switch {
	case cfg.Crash:
		os.Exit(3)
	case cfg.Hang:
		select {}
	case cfg.Error != "":
		return metricutil.MarkMeasurementError(m, errors.New(cfg.Error))
	case cfg.Pending > 0:
		m.Phase = v1alpha1.AnalysisPhaseRunning
		m.Metadata[MetaRemaining] = strconv.Itoa(cfg.Pending)
		resume := metav1.NewTime(time.Now().Add(10 * time.Millisecond))
		m.ResumeAt = &resume
		return m
	}
	return result(m, metric, cfg)
}

// Resume answers Running until the measurement's remaining count is spent.
func (p *Plugin) Resume(run *v1alpha1.AnalysisRun, metric v1alpha1.Metric, m v1alpha1.Measurement) v1alpha1.Measurement {
	cfg, err := config(metric)
	if err != nil {
		return metricutil.MarkMeasurementError(m, err)
	}
	n, err := strconv.Atoi(m.Metadata[MetaRemaining])
	if err != nil {
		return metricutil.MarkMeasurementError(m, fmt.Errorf("resumed a measurement without %s metadata", MetaRemaining))
	}
	if n--; n > 0 {
		m.Metadata[MetaRemaining] = strconv.Itoa(n)
		return m
	}
	delete(m.Metadata, MetaRemaining)
	return result(m, metric, cfg)
}

// TerminatedMessage is the message of a measurement the plugin terminated.
const TerminatedMessage = "sample plugin: measurement terminated"

// Terminate ends a measurement in progress, as Argo's job-like plugins do.
func (p *Plugin) Terminate(run *v1alpha1.AnalysisRun, metric v1alpha1.Metric, m v1alpha1.Measurement) v1alpha1.Measurement {
	now := metav1.Now()
	m.Phase, m.Message, m.FinishedAt = v1alpha1.AnalysisPhaseSuccessful, TerminatedMessage, &now
	return m
}

// GarbageCollect has nothing to collect.
func (p *Plugin) GarbageCollect(*v1alpha1.AnalysisRun, v1alpha1.Metric, int) types.RpcError {
	return types.RpcError{}
}

// Type names the plugin.
func (p *Plugin) Type() string { return "SluiceTestSample" }

// GetMetadata returns the plugin's name, as a plugin's own metadata.
func (p *Plugin) GetMetadata(v1alpha1.Metric) map[string]string {
	return map[string]string{"plugin": Name}
}

func config(metric v1alpha1.Metric) (Config, error) {
	var cfg Config
	if len(metric.Provider.Plugin) != 1 {
		return cfg, fmt.Errorf("metric %q names %d plugins, want 1", metric.Name, len(metric.Provider.Plugin))
	}
	for name, raw := range metric.Provider.Plugin {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return cfg, fmt.Errorf("%s configuration: %w", name, err)
		}
	}
	return cfg, nil
}

// result judges cfg.Value with the metric's conditions, as Argo's sample
// plugins do.
func result(m v1alpha1.Measurement, metric v1alpha1.Metric, cfg Config) v1alpha1.Measurement {
	var res any = cfg.Value
	if f, err := strconv.ParseFloat(cfg.Value, 64); err == nil {
		res = f
	}
	m.Value = cfg.Value
	phase, err := evaluate.EvaluateResult(res, metric, *logrus.NewEntry(logrus.StandardLogger()))
	if err != nil {
		return metricutil.MarkMeasurementError(m, err)
	}
	now := metav1.Now()
	m.Phase, m.FinishedAt = phase, &now
	return m
}

// Serve serves the plugin on go-plugin's handshake, with the arguments of
// the process; it returns when the host kills the plugin.
func Serve(args []string) {
	p := &Plugin{}
	for _, a := range args {
		if msg, ok := strings.CutPrefix(a, InitErrorArg); ok && msg != "" {
			p.initError = msg
		}
	}
	logrus.SetOutput(os.Stderr)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins: map[string]goplugin.Plugin{
			"RpcMetricProviderPlugin": &rpc.RpcMetricProviderPlugin{Impl: p},
		},
	})
}

// Build copies the plugin, built with the other test binaries
// (internal/testbin), into a directory of t's, returning its path and
// sha256 (hex); a test may change or replace its copy.
func Build(t testing.TB) (path, sum string) {
	t.Helper()
	b, err := os.ReadFile(testbin.Path(t, "metricplugin"))
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	path = filepath.Join(t.TempDir(), "metricplugin")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	h := sha256.Sum256(b)
	return path, hex.EncodeToString(h[:])
}
