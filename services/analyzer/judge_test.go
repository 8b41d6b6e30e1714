package analyzer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/promtest"
	"github.com/sluicehq/sluice/services/analyzer/metrics/judge"
)

const judgeTemplate = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: canary-judge
spec:
  args:
  - name: service
  metrics:
  - name: judge
    successCondition: result >= 90
    provider:
      plugin:
        sluice/judge:
          baseline: base
          canary: "{{args.service}}"
          metrics:
          - name: latency
            direction: increase
            tolerance: 0.1
            critical: true
            mustHaveData: true
            provider:
              prometheus:
                address: ADDRESS
                query: latency_seconds{revision="{{judge.revision}}"}
                rangeQuery: {start: 'now() - duration("5m")', end: "now()", step: 30s}
`

// TestJudgeRun: the analyzer as deployed (its default providers) runs the
// built-in judge: a canary 3x as slow fails the run with the verdict in
// the measurement, an equal one passes.
func TestJudgeRun(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(19, 19))
	gauge := func(revision string, median float64) promtest.Series {
		values := make([]float64, 21)
		for i := range values {
			values[i] = median * (1 + 0.1*r.NormFloat64())
		}
		return promtest.Series{Labels: map[string]string{"__name__": "latency_seconds", "revision": revision}, Values: values}
	}
	srv := promtest.Start(t, []promtest.Series{gauge("base", 0.1), gauge("same", 0.1), gauge("slow", 0.3)}, promtest.Options{
		Epoch: time.Now().Add(-10 * time.Minute), Step: 30 * time.Second,
	})
	b := startBus(t)
	startAnalyzer(t, b, nil)
	rs := watchResults(t, b.client)
	tmpl := template(t, strings.Replace(judgeTemplate, "ADDRESS", srv.URL, 1))
	applyTemplates(t, b.client, "prod", tmpl)
	for _, tc := range []struct {
		canary, message string
		phase           spec.AnalysisPhase
	}{
		{canary: "same", phase: successful, message: "score 100: latency PASS critical"},
		{canary: "slow", phase: failedP, message: `successCondition "result >= 90" is false; score 0: latency FAIL critical`},
	} {
		task := runTask(events.Ref{Namespace: "prod", Name: "checkout"}, "judge-"+tc.canary, 1, tc.canary, []spec.AnalysisTemplate{tmpl})
		sendTask(t, b.client, task)
		rs.finished(t, task)
		got := checkMeasured(t, rs, task, "judge", 1, tc.phase)
		if mm := got[0].Measurement; mm.Provider != judge.Type || !strings.Contains(mm.Message, tc.message) {
			t.Errorf("%s: measurement from %q: %q; want %q from %s", tc.canary, mm.Provider, mm.Message, tc.message, judge.Type)
		}
	}
}
