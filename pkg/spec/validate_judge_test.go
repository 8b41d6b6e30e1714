package spec

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestValidateJudge(t *testing.T) {
	const prom = `{"prometheus": {"address": "http://p:9090", "query": "up{revision=\"{{ judge.revision }}\"}"}}`
	judge := func(metrics string) string {
		return `{"baseline": "{{args.b}}", "canary": "{{args.c}}", "metrics": [` + metrics + `]}`
	}
	for _, tc := range []struct {
		name, raw string
		want      []string // each a substring of one error, in order
	}{
		{name: "valid, placeholder with spaces", raw: judge(`{"name": "up", "direction": "either", "provider": ` + prom + `}`)},
		{name: "not an object", raw: `[1]`, want: []string{`p: Invalid value: "[1]": must be an object`}},
		{name: "a number where a string goes", raw: `{"baseline": 1}`, want: []string{"p: Invalid value"}},
		{
			name: "a judge inside the judge",
			raw:  judge(`{"name": "up", "direction": "increase", "provider": {"plugin": {"sluice/judge": ` + judge("") + `}}}`),
			want: []string{"p.metrics[0].provider.plugin.sluice/judge.metrics: Required value", "p.metrics[0].provider.plugin: Forbidden: judges by itself"},
		},
		{
			name: "a web provider without the placeholder",
			raw:  judge(`{"name": "up", "direction": "decrease", "weight": -1, "provider": {"web": {"url": "http://x/y"}}}`),
			want: []string{"p.metrics[0].weight: Invalid value: -1", "p.metrics[0].provider: Invalid value"},
		},
		{
			name: "cloudWatch, whose result is not numbers",
			raw:  judge(`{"name": "up", "direction": "increase", "provider": {"cloudWatch": {"metricDataQueries": [{"id": "q", "expression": "{{judge.revision}}"}]}}}`),
			want: []string{"p.metrics[0].provider.cloudWatch: Forbidden: returns CloudWatch's MetricDataResults"},
		},
		{
			name: "newRelic, whose result is rows",
			raw:  judge(`{"name": "up", "direction": "increase", "provider": {"newRelic": {"query": "SELECT count(*) FROM T WHERE v = '{{judge.revision}}'"}}}`),
			want: []string{"p.metrics[0].provider.newRelic: Forbidden: returns NRQL rows"},
		},
		{name: "no name", raw: judge(`{"direction": "decrease", "provider": ` + prom + `}`), want: []string{"p.metrics[0].name: Required value"}},
		{name: "no direction", raw: judge(`{"name": "x", "provider": ` + prom + `}`), want: []string{"p.metrics[0].direction: Required value"}},
		{name: "confidence 0", raw: `{"baseline": "a", "canary": "b", "confidence": 0, "metrics": [{"name": "x", "direction": "either", "provider": ` + prom + `}]}`, want: []string{"p.confidence: Invalid value: 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := validateJudge([]byte(tc.raw), field.NewPath("p"))
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(errs), len(tc.want), errs.ToAggregate())
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}
