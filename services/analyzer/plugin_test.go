package analyzer

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/plugintest"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
)

// pluginProviders registers the providers with the test metric plugin
// configured, as the analyzer's --metric-plugins does.
func pluginProviders(t *testing.T) *metrics.Registry {
	t.Helper()
	path, sum := plugintest.Build(t)
	reg, err := DefaultProviders(ProviderConfig{Plugin: plugin.Config{
		Plugins:    []plugin.Plugin{{Name: plugintest.Name, Location: "file://" + path, Sha256: sum}},
		CheckNames: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	return reg
}

const pluginTemplate = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: plugin-rate
spec:
  args:
  - name: service
  metrics:
  - name: plugin-rate
    interval: 100ms
    count: 2
    successCondition: result >= 0.9
    provider:
      plugin:
        sluice-test/sample: {value: "{{args.service}}", pending: 2}
`

// TestPluginMetric: a run whose metric is an Argo metric plugin gets the
// plugin's verdicts, Resume included, with the run's arguments in the
// plugin's configuration.
func TestPluginMetric(t *testing.T) {
	t.Parallel()
	reg := pluginProviders(t)
	b := startBus(t)
	startAnalyzer(t, b, func(c *Config) { c.Providers = reg })
	rs := watchResults(t, b.client)
	tmpl := template(t, pluginTemplate)
	applyTemplates(t, b.client, "prod", tmpl)
	for _, tc := range []struct {
		name, value string
		phase       spec.AnalysisPhase
		message     string
		n           int
	}{
		{name: "good", value: "0.95", phase: successful, n: 2},
		{name: "bad", value: "0.5", phase: failedP, message: `metric "plugin-rate" assessed Failed`, n: 1},
	} {
		task := runTask(events.Ref{Namespace: "prod", Name: "checkout"}, "checkout-"+tc.name, 1, tc.value, []spec.AnalysisTemplate{tmpl})
		sendTask(t, b.client, task)
		checkVerdict(t, rs.finished(t, task), tc.phase, tc.message)
		for i, m := range checkMeasured(t, rs, task, "plugin-rate", tc.n, tc.phase) {
			if mm := m.Measurement; mm.Provider != plugin.Type || mm.Value != tc.value {
				t.Errorf("%s: measurement %d: provider %q value %q, want %q %q", tc.name, i+1, mm.Provider, mm.Value, plugin.Type, tc.value)
			}
		}
	}
}

// TestUnknownPluginTemplateRefused: a template naming a plugin the
// analyzer does not run is refused with what to configure.
func TestUnknownPluginTemplateRefused(t *testing.T) {
	reg := pluginProviders(t)
	tmpl := template(t, strings.Replace(pluginTemplate, "sluice-test/sample:", "acme/missing:", 1))
	problems := checkTemplateSpec(reg, tmpl.Spec)
	want := `spec.metrics[0].provider: metric "plugin-rate": no metric plugin named "acme/missing"; configure it in`
	if len(problems) != 1 || !strings.Contains(problems[0], want) {
		t.Fatalf("problems %q; want one saying %q", problems, want)
	}
	// sluice lint and the gateway, which do not know the analyzer's
	// plugins, accept it.
	zero, err := DefaultProviders(ProviderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if problems := checkTemplateSpec(zero, tmpl.Spec); len(problems) != 0 {
		t.Fatalf("with the zero ProviderConfig: %q", problems)
	}
}
