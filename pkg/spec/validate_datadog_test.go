package spec

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestValidateDatadog covers what Argo Rollouts accepts beside the
// testdata's template, and the rules one at a time.
func TestValidateDatadog(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    DatadogMetric
		want []string // the errors, as field.Error strings
	}{
		{"v1 query, defaults", DatadogMetric{Query: "avg:x{*}"}, nil},
		{"v2 query without formula", DatadogMetric{ApiVersion: "v2", Query: "avg:x{*}"}, nil},
		{"v2 one query without formula", DatadogMetric{ApiVersion: "v2", Queries: map[string]string{"a": "avg:x{*}"}}, nil},
		{"v2 every aggregator", DatadogMetric{ApiVersion: "v2", Query: "avg:x{*}", Aggregator: "percentile"}, nil},
		{"namespaced with a name", DatadogMetric{Query: "avg:x{*}", SecretRef: SecretRef{Name: "dd", Namespaced: true}}, nil},
		{"placeholders", DatadogMetric{ApiVersion: "{{args.v}}", Query: "{{args.q}}", Interval: "{{args.i}}", SecretRef: SecretRef{Name: "{{args.s}}"}}, nil},
		{"whitespace query", DatadogMetric{Query: "  "}, []string{"d.query: Required value: must set query, or queries with apiVersion v2"}},
		{"zero interval", DatadogMetric{Query: "avg:x{*}", Interval: "0s"}, []string{`d.interval: Invalid value: "0s": must be greater than 0`}},
		{"sub-second interval", DatadogMetric{Query: "avg:x{*}", Interval: "500ms"}, []string{`d.interval: Invalid value: "500ms": must be at least 1s`}},
		{"v2 formula with query", DatadogMetric{ApiVersion: "v2", Query: "avg:x{*}", Formula: "query * 2"}, []string{"d.formula: Forbidden: needs queries"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := validateDatadog(&tc.m, field.NewPath("d"))
			if len(got) != len(tc.want) {
				t.Fatalf("errors = %v; want %v", got, tc.want)
			}
			for i, e := range got {
				if e.Error() != tc.want[i] {
					t.Errorf("error %d = %q; want %q", i, e.Error(), tc.want[i])
				}
			}
		})
	}
}
