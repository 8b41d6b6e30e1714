package plugin_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/plugintest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
)

// newProvider returns a provider running the test plugin as each of items
// (Location and Sha256 filled in when empty), closed at t's end.
func newProvider(t *testing.T, items ...plugin.Plugin) *plugin.Provider {
	t.Helper()
	path, sum := plugintest.Build(t)
	for i := range items {
		if items[i].Location == "" {
			items[i].Location = "file://" + path
		}
		if items[i].Sha256 == "" {
			items[i].Sha256 = sum
		}
	}
	p, err := plugin.New(plugin.Config{Plugins: items, CheckNames: true, ResumeInterval: 5 * time.Millisecond, Source: "--metric-plugins", LogOutput: testWriter{t}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func metric(name, config string) spec.Metric {
	return spec.Metric{
		Name:             "success-rate",
		SuccessCondition: "result >= 0.9",
		Provider:         spec.MetricProvider{Plugin: map[string]json.RawMessage{name: json.RawMessage(config)}},
	}
}

func request(m spec.Metric) metrics.Request {
	return metrics.Request{Metric: m, Namespace: "shop", Rollout: "checkout", Run: "checkout-1", ID: "checkout-1.success-rate.1"}
}

func TestMeasure(t *testing.T) {
	const slow = "sluice-test/slow"
	p := newProvider(t, plugin.Plugin{Name: plugintest.Name}, plugin.Plugin{Name: slow, Timeout: "2s"})
	for _, tc := range []struct {
		name, plugin, config string
		phase                spec.AnalysisPhase
		value                string
		message              []string // substrings of the message
	}{
		{name: "success", plugin: plugintest.Name, config: `{"value":"0.95"}`, phase: spec.AnalysisPhaseSuccessful, value: "0.95"},
		{name: "failed by successCondition", plugin: plugintest.Name, config: `{"value":"0.5"}`, phase: spec.AnalysisPhaseFailed, value: "0.5"},
		{name: "running, then done through Resume", plugin: plugintest.Name, config: `{"value":"0.97","pending":3}`, phase: spec.AnalysisPhaseSuccessful, value: "0.97"},
		{name: "the plugin's error", plugin: plugintest.Name, config: `{"error":"backend said no"}`, phase: spec.AnalysisPhaseError, message: []string{"failed to run via plugin: backend said no"}},
		{name: "condition that cannot be evaluated", plugin: plugintest.Name, config: `{"value":"n/a"}`, phase: spec.AnalysisPhaseError, value: "n/a", message: []string{"successCondition"}},
		{name: "timeout while running: terminated", plugin: slow, config: `{"value":"0.97","pending":1000000}`, phase: spec.AnalysisPhaseError, message: []string{"did not finish the measurement within 2s", plugintest.TerminatedMessage}},
		{name: "not configured", plugin: "someone/else", config: `{}`, phase: spec.AnalysisPhaseError, message: []string{`no metric plugin named "someone/else"; configure it in --metric-plugins`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Measure(context.Background(), request(metric(tc.plugin, tc.config)))
			if m.Phase != tc.phase || m.Value != tc.value || m.Provider != plugin.Type {
				t.Fatalf("got phase %q value %q provider %q (%s), want %q %q %q", m.Phase, m.Value, m.Provider, m.Message, tc.phase, tc.value, plugin.Type)
			}
			for _, s := range tc.message {
				if !strings.Contains(m.Message, s) {
					t.Errorf("message %q does not say %q", m.Message, s)
				}
			}
			if tc.phase == spec.AnalysisPhaseSuccessful {
				// What the plugin saw, and its own metadata.
				for k, want := range map[string]string{plugintest.MetaRun: "shop/checkout-1", plugintest.MetaInit: "yes", "plugin": plugintest.Name} {
					if got := m.Metadata[k]; got != want {
						t.Errorf("metadata %s = %q, want %q (%v)", k, got, want, m.Metadata)
					}
				}
			}
		})
	}
}

// TestRestart: a plugin that crashes, or does not answer in time, is an
// Error measurement, and the next measurement has a new process.
func TestRestart(t *testing.T) {
	const slow = "sluice-test/slow"
	p := newProvider(t, plugin.Plugin{Name: plugintest.Name}, plugin.Plugin{Name: slow, Timeout: "2s"})
	for _, tc := range []struct {
		name, plugin, config, message string
	}{
		{name: "crash", plugin: plugintest.Name, config: `{"crash":true}`, message: "metric plugin " + plugintest.Name + " exited"},
		{name: "hang", plugin: slow, config: `{"hang":true}`, message: "did not answer within 2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.Measure(context.Background(), request(metric(tc.plugin, `{"value":"0.95"}`)))
			if before.Phase != spec.AnalysisPhaseSuccessful {
				t.Fatalf("first measurement: %q %s", before.Phase, before.Message)
			}
			m := p.Measure(context.Background(), request(metric(tc.plugin, tc.config)))
			if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, tc.message) {
				t.Fatalf("got %q %q, want Error saying %q", m.Phase, m.Message, tc.message)
			}
			after := p.Measure(context.Background(), request(metric(tc.plugin, `{"value":"0.95"}`)))
			if after.Phase != spec.AnalysisPhaseSuccessful {
				t.Fatalf("measurement after the %s: %q %s", tc.name, after.Phase, after.Message)
			}
			if before.Metadata[plugintest.MetaPID] == after.Metadata[plugintest.MetaPID] {
				t.Errorf("the same process (pid %s) measured before and after the %s", before.Metadata[plugintest.MetaPID], tc.name)
			}
		})
	}
}

// TestEnvironment: the plugin inherits the analyzer's environment without
// the local platform's Secrets.
func TestEnvironment(t *testing.T) {
	t.Setenv("SLUICE_SECRET_DATADOG_API_KEY", "not-for-plugins")
	t.Setenv("SLUICE_TEST_PLAIN", "x")
	p := newProvider(t, plugin.Plugin{Name: plugintest.Name})
	m := p.Measure(context.Background(), request(metric(plugintest.Name, `{"value":"0.95"}`)))
	if m.Phase != spec.AnalysisPhaseSuccessful || m.Metadata[plugintest.MetaSecretEnv] != "0" {
		t.Fatalf("got %q %q, %s SLUICE_SECRET_ variables in the plugin's environment; want Successful and none", m.Phase, m.Message, m.Metadata[plugintest.MetaSecretEnv])
	}
}

func TestInitError(t *testing.T) {
	p := newProvider(t, plugin.Plugin{Name: plugintest.Name, Args: []string{plugintest.InitErrorArg + "no API token"}})
	m := p.Measure(context.Background(), request(metric(plugintest.Name, `{"value":"0.95"}`)))
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "InitPlugin: no API token") {
		t.Fatalf("got %q %q, want an Error with InitPlugin's message", m.Phase, m.Message)
	}
}

// TestReplacedExecutable: a plugin whose file changed after start is not
// started.
func TestReplacedExecutable(t *testing.T) {
	path, sum := plugintest.Build(t)
	p, err := plugin.New(plugin.Config{Plugins: []plugin.Plugin{{Name: plugintest.Name, Location: path, Sha256: sum}}, LogOutput: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := p.Measure(context.Background(), request(metric(plugintest.Name, `{"value":"0.95"}`)))
	if m.Phase != spec.AnalysisPhaseError || !strings.Contains(m.Message, "sha256 mismatch") {
		t.Fatalf("got %q %q, want an Error for the changed file", m.Phase, m.Message)
	}
}

// TestClose: Close kills the processes; a measurement after it is an
// Error.
func TestClose(t *testing.T) {
	p := newProvider(t, plugin.Plugin{Name: plugintest.Name})
	m := p.Measure(context.Background(), request(metric(plugintest.Name, `{"value":"0.95"}`)))
	if m.Phase != spec.AnalysisPhaseSuccessful {
		t.Fatalf("got %q %q", m.Phase, m.Message)
	}
	pid := m.Metadata[plugintest.MetaPID]
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/proc/" + pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("plugin process %s still exists after Close (%v)", pid, err)
	}
	if m := p.Measure(context.Background(), request(metric(plugintest.Name, `{"value":"0.95"}`))); m.Phase != spec.AnalysisPhaseError {
		t.Errorf("measurement after Close: %q, want Error", m.Phase)
	}
}

func TestCheck(t *testing.T) {
	path, sum := plugintest.Build(t)
	configured := []plugin.Plugin{{Name: plugintest.Name, Location: path, Sha256: sum}}
	two := metric(plugintest.Name, `{}`)
	two.Provider.Plugin["other/one"] = json.RawMessage(`{}`)
	for _, tc := range []struct {
		name   string
		cfg    plugin.Config
		metric spec.Metric
		want   string // "" for no error
		noPlug bool   // the error wraps ErrNoPlugin
	}{
		{name: "configured", cfg: plugin.Config{Plugins: configured, CheckNames: true}, metric: metric(plugintest.Name, `{}`)},
		{name: "not configured", cfg: plugin.Config{Plugins: configured, CheckNames: true, Source: "--metric-plugins"}, metric: metric("other/one", `{}`), want: `no metric plugin named "other/one"; configure it in --metric-plugins (configured: ` + plugintest.Name + `)`, noPlug: true},
		{name: "none configured", cfg: plugin.Config{CheckNames: true}, metric: metric("other/one", `{}`), want: "none is configured", noPlug: true},
		{name: "names unchecked (lint, gateway)", cfg: plugin.Config{}, metric: metric("other/one", `{}`)},
		{name: "several plugins", cfg: plugin.Config{}, metric: two, want: "names several plugins (other/one, " + plugintest.Name + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := plugin.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check(tc.metric)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want an error saying %q", err, tc.want)
			case tc.noPlug != errors.Is(err, plugin.ErrNoPlugin):
				t.Fatalf("Check: %v; wraps ErrNoPlugin: %v, want %v", err, errors.Is(err, plugin.ErrNoPlugin), tc.noPlug)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	p := newProvider(t, plugin.Plugin{Name: plugintest.Name, Timeout: "2m"})
	if got, want := p.Timeout(metric(plugintest.Name, `{}`)), 2*time.Minute+2*plugin.TerminateTimeout; got != want {
		t.Errorf("Timeout = %s, want %s", got, want)
	}
	if got, want := p.Timeout(metric("other/one", `{}`)), plugin.DefaultTimeout+2*plugin.TerminateTimeout; got != want {
		t.Errorf("Timeout of an unknown plugin = %s, want %s", got, want)
	}
}
