package spec

import (
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		want      string
		wantValid bool
	}{
		{
			name:      "valid",
			input:     rolloutWith("steps: [{setWeight: 10}]"),
			want:      "valid",
			wantValid: true,
		},
		{
			name:      "warnings only are still valid",
			input:     rolloutWith("stepz: []"),
			want:      `Rollout default/web: warning: spec.strategy.canary.stepz: unknown field (did you mean "steps"?)`,
			wantValid: true,
		},
		{
			name: "warnings, then errors, for every document",
			input: rolloutWith("steps:\n- setWeight: 120\n  pauze: {}") + "---\n" +
				"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n" +
				strings.Replace(rolloutWith(""), "name: web", "name: api\n  namespace: prod", 1),
			want: strings.Join([]string{
				`Rollout default/web: warning: spec.strategy.canary.steps[0].pauze: unknown field (did you mean "pause"?)`,
				`Rollout default/web: spec.strategy.canary.steps[0].setWeight: Invalid value: 120: must be between 0 and 100`,
				`document 2: unsupported apiVersion/kind: kind "Deployment" of apiVersion "apps/v1"; Sluice reads Rollout, AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun of argoproj.io/v1alpha1`,
			}, "\n"),
		},
		{
			name:  "an object defined twice",
			input: rolloutWith("") + "---\n" + strings.Replace(rolloutWith(""), "name: web", "name: web\n  namespace: default", 1),
			want:  "Rollout default/web: defined again; document 1 defines it first",
		},
		{
			name:  "same name in another namespace is another object",
			input: rolloutWith("") + "---\n" + strings.Replace(rolloutWith(""), "name: web", "name: web\n  namespace: prod", 1),
			want:  "valid", wantValid: true,
		},
		{
			name:  "no documents",
			input: "# nothing here\n---\n",
			want:  "input: no documents",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Lint([]byte(tt.input))
			if got := r.String(); got != tt.want {
				t.Errorf("String():\n got %s\nwant %s", got, tt.want)
			}
			if got := r.Valid(); got != tt.wantValid {
				t.Errorf("Valid() = %v, want %v", got, tt.wantValid)
			}
		})
	}
}
