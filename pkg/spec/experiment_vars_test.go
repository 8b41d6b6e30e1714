package spec

import "testing"

func TestExpandExperimentVariables(t *testing.T) {
	vars := map[string]string{
		ExperimentPodTemplateHash("baseline"): "abc123",
		ExperimentReplicaSetName("baseline"):  "web-xyz-3-1-baseline",
		ExperimentAvailableAt:                 "2026-12-07T05:00:00Z",
	}
	tests := []struct {
		name, value, want, wantErr string
	}{
		{"no placeholder", "plain", "plain", ""},
		{"a hash", "{{templates.baseline.podTemplateHash}}", "abc123", ""},
		{"spaces inside the braces, as Argo allows", `rs="{{ templates.baseline.replicaset.name }}" at {{experiment.availableAt}}`,
			`rs="web-xyz-3-1-baseline" at 2026-12-07T05:00:00Z`, ""},
		{"an unknown template is named and left in place", "{{templates.canary.podTemplateHash}}/{{templates.baseline.podTemplateHash}}",
			"{{templates.canary.podTemplateHash}}/abc123", "no value for {{templates.canary.podTemplateHash}}"},
		{"not an experiment variable", "{{args.x}}", "{{args.x}}", "no value for {{args.x}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExpandExperimentVariables(tt.value, vars)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}
