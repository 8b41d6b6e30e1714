package prometheus

import (
	"strings"
	"testing"
)

func TestHints(t *testing.T) {
	tests := []struct {
		name, query string
		want        string // "" for no hint
	}{
		{"success ratio", `sum(rate(http_requests_total{app="web",code!~"5.."}[1m])) / sum(rate(http_requests_total{app="web"}[1m]))`, `(code!~"5..")`},
		{"2xx ratio", `sum(rate(requests{status=~"2.."}[5m]))/sum(rate(requests[5m]))`, `status=~"2.."`},
		{"guarded with or vector", `(sum(rate(r{code!~"5.."}[1m])) or vector(0)) / sum(rate(r[1m]))`, ""},
		{"error ratio", `sum(rate(r{code=~"5.."}[1m])) / sum(rate(r[1m]))`, ""},
		{"no ratio", `sum(rate(r{code!~"5.."}[1m]))`, ""},
		{"matcher only in the denominator", `sum(rate(r[1m])) / sum(rate(r{code!~"5.."}[1m]))`, ""},
		{"slash in a label value", `sum(rate(r{path="/a/b"}[1m]))`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(Hints(tt.query), "\n")
			switch {
			case tt.want == "" && got != "":
				t.Errorf("hint %q, want none", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("hint %q, want one naming %s", got, tt.want)
			case tt.want != "" && !strings.Contains(got, "or vector(0)"):
				t.Errorf("hint %q does not suggest or vector(0)", got)
			}
		})
	}
}
