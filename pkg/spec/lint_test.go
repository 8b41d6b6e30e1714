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
				`document 2: unsupported apiVersion/kind: kind "Deployment" of apiVersion "apps/v1"; Sluice reads Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun and Experiment of argoproj.io/v1alpha1`,
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

func TestLintSources(t *testing.T) {
	template := func(metric string) string {
		return "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: success-rate}\nspec:\n  metrics:\n  - name: success-rate\n" + metric
	}
	tests := []struct {
		name      string
		srcs      []Source
		opts      LintOptions
		want      []string
		wantValid bool
	}{
		{
			name: "bad YAML names the file and its document",
			srcs: []Source{
				{Name: "good.yaml", Data: []byte(rolloutWith(""))},
				{Name: "bad.yaml", Data: []byte(strings.Replace(rolloutWith(""), "name: web", "name: api", 1) + "---\nkind: [\n")},
			},
			want: []string{"bad.yaml: document 2: malformed: "},
		},
		{
			name: "an object defined in two files",
			srcs: []Source{{Name: "a.yaml", Data: []byte(rolloutWith(""))}, {Name: "-", Data: []byte(rolloutWith(""))}},
			want: []string{"stdin: Rollout default/web: defined again; a.yaml document 1 defines it first"},
		},
		{
			name: "a Rollout and an Experiment of one name",
			srcs: []Source{{Name: "a.yaml", Data: []byte(rolloutWith(""))}, {Name: "b.yaml", Data: []byte(experimentWith("web", ""))}},
			want: []string{"b.yaml: Experiment default/web: Rollout default/web (a.yaml document 1) has this name: a namespace holds one Rollout or Experiment of a name, whose commands and status share subjects"},
		},
		{
			name:      "a Rollout and an Experiment of one name in two namespaces",
			srcs:      []Source{{Name: "a.yaml", Data: []byte(rolloutWith(""))}, {Name: "b.yaml", Data: []byte(strings.Replace(experimentWith("web", ""), "name: web", "{name: web, namespace: test}", 1))}},
			want:      []string{"valid"},
			wantValid: true,
		},
		{
			name: "a file with no documents",
			srcs: []Source{{Name: "empty.yaml", Data: []byte("# nothing\n")}},
			want: []string{"empty.yaml: no documents"},
		},
		{
			name:      "unknown fields are warnings",
			srcs:      []Source{{Name: "r.yaml", Data: []byte(strings.Replace(rolloutWith(""), "spec:\n", "spec:\n  replicaz: 2\n", 1))}},
			want:      []string{`r.yaml: Rollout default/web: warning: spec.replicaz: unknown field (did you mean "replicas"?)`},
			wantValid: true,
		},
		{
			name: "strict makes them errors",
			srcs: []Source{{Name: "r.yaml", Data: []byte(strings.Replace(rolloutWith(""), "spec:\n", "spec:\n  replicaz: 2\n", 1))}},
			opts: LintOptions{Strict: true},
			want: []string{`r.yaml: Rollout default/web: spec.replicaz: unknown field (did you mean "replicas"?)`},
		},
		{
			name: "a condition indented under the provider",
			srcs: []Source{{Name: "t.yaml", Data: []byte(template("    provider:\n      prometheus:\n        address: http://prom:9090\n        query: up\n        successCondition: result[0] >= 0.95\n"))}},
			want: []string{"t.yaml: AnalysisTemplate default/success-rate: warning: spec.metrics[0].provider.prometheus.successCondition: " +
				"unknown field here; successCondition belongs to the metric (spec.metrics[0].successCondition); without it the metric has no condition and every measurement passes"},
			wantValid: true,
		},
		{
			name: "a field one level too high",
			srcs: []Source{{Name: "r.yaml", Data: []byte(strings.Replace(rolloutWith(""), "    canary:", "    steps: [{setWeight: 10}]\n    canary:", 1))}},
			want: []string{"spec.strategy.steps: unknown field here; steps belongs at spec.strategy.canary.steps"},
			opts: LintOptions{Strict: true},
		},
		{
			name:      "replicas under the strategy",
			srcs:      []Source{{Name: "r.yaml", Data: []byte(strings.Replace(rolloutWith(""), "    canary:", "    replicas: 3\n    canary:", 1))}},
			want:      []string{"warning: spec.strategy.replicas: unknown field here; replicas belongs to the rollout's spec (spec.replicas); without it the rollout runs 1 replica"},
			wantValid: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := LintSources(tt.srcs, tt.opts)
			for _, w := range tt.want {
				if !strings.Contains(r.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, r)
				}
			}
			if got := r.Valid(); got != tt.wantValid {
				t.Errorf("Valid() = %v, want %v\n%s", got, tt.wantValid, r)
			}
		})
	}
}

func TestAnalysisRefs(t *testing.T) {
	canary := rolloutWith("analysis: {templates: [{templateName: bg}]}\nsteps:\n- setWeight: 10\n- analysis: {templates: [{templateName: a}, {templateName: c, clusterScope: true}]}\n" +
		"- experiment: {templates: [{name: base, specRef: stable}], analyses: [{name: one, templateName: e}, {name: two, templateName: ce, clusterScope: true}]}")
	blueGreen := strings.Replace(rolloutWith(""), "canary: {}", "blueGreen: {activeService: web, prePromotionAnalysis: {templates: [{templateName: pre}]}, postPromotionAnalysis: {templates: [{templateName: post}]}}", 1)
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"canary", canary, []string{
			"spec.strategy.canary.steps[1].analysis.templates[0].templateName=a",
			"spec.strategy.canary.steps[1].analysis.templates[1].templateName=c (cluster)",
			"spec.strategy.canary.steps[2].experiment.analyses[0].templateName=e",
			"spec.strategy.canary.steps[2].experiment.analyses[1].templateName=ce (cluster)",
			"spec.strategy.canary.analysis.templates[0].templateName=bg",
		}},
		{"experiment", experimentWith("web", "analyses: [{name: one, templateName: e}, {name: two, templateName: ce, clusterScope: true}]"), []string{
			"spec.analyses[0].templateName=e",
			"spec.analyses[1].templateName=ce (cluster)",
		}},
		{"blue/green", blueGreen, []string{
			"spec.strategy.blueGreen.prePromotionAnalysis.templates[0].templateName=pre",
			"spec.strategy.blueGreen.postPromotionAnalysis.templates[0].templateName=post",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Decode([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range AnalysisRefs(docs[0].Object) {
				s := r.Field + "=" + r.Ref.TemplateName
				if r.Ref.ClusterScope {
					s += " (cluster)"
				}
				got = append(got, s)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// experimentWith returns an Experiment named name with one template, and
// spec (YAML at the spec's level, without indentation) added.
func experimentWith(name, spec string) string {
	out := `apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata:
  name: ` + name + `
spec:
  templates:
  - name: canary
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec: {containers: [{name: web, image: web:2}]}
`
	if spec != "" {
		out += "  " + strings.ReplaceAll(spec, "\n", "\n  ") + "\n"
	}
	return out
}
