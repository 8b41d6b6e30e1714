package plugin_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/services/analyzer/metrics"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
	"github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
)

// TestBuiltinOnlyTheJudge: only the reserved name may be built in; any
// other provider offered as a built-in plugin is refused at start.
func TestBuiltinOnlyTheJudge(t *testing.T) {
	prom, err := prometheus.New(prometheus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = plugin.New(plugin.Config{Builtin: []metrics.Provider{prom}})
	if err == nil || !strings.Contains(err.Error(), `built-in plugin "prometheus": only sluice/judge is built in`) {
		t.Fatalf("New = %v, want the built-in refused", err)
	}
}
