package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLintCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := write("valid.yaml", `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {}}]
`)
	invalid := write("invalid.yaml", strings.Replace(strings.Replace(mustRead(t, valid), "setWeight: 20", "setWeight: 120", 1), "{pause: {}}", "{pause: {}, setWeight: 5}", 1))
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"valid", []string{"lint", "-f", valid}, exitOK, []string{"valid"}},
		{"invalid", []string{"lint", "-f", invalid}, exitFail, []string{
			"spec.strategy.canary.steps[0].setWeight: Invalid value: 120: must be between 0 and 100",
			"spec.strategy.canary.steps[1]",
		}},
		{"an invalid Experiment", []string{"lint", "-f", "../../pkg/spec/testdata/invalid-experiment.yaml"}, exitFail, []string{
			"invalid-experiment.yaml: Experiment default/web: spec.templates[0].selector: Required value",
			"invalid-experiment.yaml: Experiment default/analyses: spec.analyses[2].args[2].valueFrom: Forbidden: an Experiment has no rollout to take a value from",
		}},
		{"missing file", []string{"lint", "-f", filepath.Join(dir, "nope.yaml")}, exitFail, nil},
		{"no file flag", []string{"lint"}, exitUsage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			if code := run(context.Background(), tt.args, &out, &errOut); code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out.String(), errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// manifests used by the lint and apply tests.
const (
	successRateTemplate = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  metrics:
  - name: success-rate
    successCondition: CONDITION
    provider:
      prometheus:
        address: http://127.0.0.1:9090
        query: QUERY
`
	analysedRollout = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - analysis: {templates: [{templateName: success-rate}]}
`
	goodQuery = `sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))`
)

func lintTemplate(condition, query string) string {
	return strings.NewReplacer("CONDITION", condition, "QUERY", "'"+query+"'").Replace(successRateTemplate)
}

func TestLintChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", lintTemplate("result[0] < 0.05", goodQuery))
	bad := write("bad.yaml", lintTemplate("result[0] < 0.05", goodQuery)+"---\nkind: [\n")
	rollout := write("rollout.yaml", analysedRollout)
	brokenCondition := write("condition.yaml", lintTemplate(`"result[0] >= 0.95 &&"`, goodQuery))
	misplaced := write("misplaced.yaml", strings.Replace(lintTemplate("result[0] < 0.05", goodQuery), "    successCondition: result[0] < 0.05\n", "", 1)+
		"        successCondition: result[0] < 0.05\n")
	successOnly := write("success-only.yaml", lintTemplate("result[0] >= 0.95",
		`sum(rate(http_requests_total{code!~"5.."}[1m])) / sum(rate(http_requests_total[1m]))`))
	typo := write("typo.yaml", strings.Replace(analysedRollout, "spec:\n", "spec:\n  replicaz: 2\n", 1))
	clusterJudge := write("judge.yaml", strings.NewReplacer("kind: AnalysisTemplate", "kind: ClusterAnalysisTemplate", "{name: success-rate}", "{name: judge}").
		Replace(lintTemplate("result[0] < 0.05", goodQuery)))
	experiment := write("experiment.yaml", strings.Replace(analysedRollout, "      - analysis: {templates: [{templateName: success-rate}]}\n",
		"      - experiment: {templates: [{name: canary, specRef: canary}], analyses: [{name: rate, templateName: success-rate}, {name: shared, templateName: judge, clusterScope: true}]}\n", 1))
	example, withTemplate := experimentExample(t)
	standalone := write("standalone.yaml", example)
	namesake := write("namesake.yaml", strings.Replace(example, "name: checkout-1-5", "name: web", 1))

	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantOut  []string
	}{
		{"every -f is read", []string{"lint", "-f", bad, "-f", good}, "", exitFail, []string{"bad.yaml: document 2: malformed"}},
		{"every -f is read, in either order", []string{"lint", "-f", good, "-f", bad}, "", exitFail, []string{"bad.yaml: document 2: malformed"}},
		{"stdin with a file", []string{"lint", "-f", "-", "-f", rollout}, lintTemplate("result[0] < 0.05", goodQuery), exitOK, []string{"valid"}},
		{"a directory", []string{"lint", "-f", dir}, "", exitFail, []string{"bad.yaml: document 2", "condition.yaml: AnalysisTemplate default/success-rate: spec.metrics[0].successCondition"}},
		{"a condition that does not compile", []string{"lint", "-f", brokenCondition}, "", exitFail, []string{
			`condition.yaml: AnalysisTemplate default/success-rate: spec.metrics[0].successCondition: Invalid value: "result[0] >= 0.95 &&": unexpected token EOF`,
		}},
		{"a reference to a template in no file", []string{"lint", "-f", rollout}, "", exitFail, []string{
			`rollout.yaml: Rollout default/web: spec.strategy.canary.steps[1].analysis.templates[0].templateName: analysis template "success-rate" not found in namespace "default" in the files given`,
		}},
		{"a reference resolved by another file", []string{"lint", "-f", rollout, "-f", good}, "", exitOK, []string{"valid"}},
		{"an experiment's analyses are references too", []string{"lint", "-f", experiment}, "", exitFail, []string{
			`experiment.yaml: Rollout default/web: spec.strategy.canary.steps[1].experiment.analyses[0].templateName: analysis template "success-rate" not found in namespace "default" in the files given`,
			`experiment.yaml: Rollout default/web: spec.strategy.canary.steps[1].experiment.analyses[1].templateName: cluster analysis template "judge" not found in the files given`,
		}},
		{"an experiment's references resolved by other files", []string{"lint", "-f", experiment, "-f", good, "-f", clusterJudge}, "", exitOK, []string{"valid"}},
		{"a standalone Experiment's analyses are references", []string{"lint", "-f", standalone}, "", exitFail, []string{
			`standalone.yaml: Experiment default/checkout-1-5: spec.analyses[0].templateName: analysis template "error-ratio" not found in namespace "default" in the files given`,
			`standalone.yaml: Experiment default/checkout-1-5: spec.analyses[1].templateName: analysis template "error-ratio" not found in namespace "default" in the files given`,
		}},
		{"a standalone Experiment's references resolved", []string{"lint", "-f", withTemplate}, "", exitOK, []string{"valid"}},
		{"a Rollout and an Experiment of one name", []string{"lint", "-f", rollout, "-f", good, "-f", namesake}, "", exitFail, []string{
			"namesake.yaml: Experiment default/web: Rollout default/web (" + rollout + " document 1) has this name: a namespace holds one Rollout or Experiment of a name",
		}},
		{"unknown fields warn", []string{"lint", "-f", typo, "-f", good}, "", exitOK, []string{
			`typo.yaml: Rollout default/web: warning: spec.replicaz: unknown field (did you mean "replicas"?)`,
		}},
		{"--strict fails them", []string{"lint", "--strict", "-f", typo, "-f", good}, "", exitFail, []string{
			`typo.yaml: Rollout default/web: spec.replicaz: unknown field (did you mean "replicas"?)`,
		}},
		{"a misplaced condition", []string{"lint", "-f", misplaced}, "", exitOK, []string{
			"misplaced.yaml: AnalysisTemplate default/success-rate: warning: spec.metrics[0].provider.prometheus.successCondition: unknown field here; " +
				"successCondition belongs to the metric (spec.metrics[0].successCondition); without it the metric has no condition and every measurement passes",
		}},
		{"a success rate with no data when all fail", []string{"lint", "-f", successOnly}, "", exitOK, []string{
			`success-only.yaml: AnalysisTemplate default/success-rate: warning: spec.metrics[0].provider.prometheus.query: the numerator keeps only successful requests (code!~"5..")`,
			`append "or vector(0)" to the numerator`,
		}},
		{"an unknown platform", []string{"lint", "--platform", "mars", "-f", good}, "", exitUsage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withStdin(t, tt.stdin)
			var out, errOut strings.Builder
			code := run(context.Background(), tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out.String(), errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// withStdin makes content the process's standard input for the test.
func withStdin(t *testing.T, content string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = f
	t.Cleanup(func() { os.Stdin = old; f.Close() })
}

func TestLintPlatformLocal(t *testing.T) {
	dir := t.TempDir()
	rollout := func(name, annotations, container string) string {
		p := filepath.Join(dir, name+".yaml")
		doc := strings.NewReplacer("NAME", name, "ANNOTATIONS", annotations, "CONTAINER", container).Replace(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: NAME, annotations: {ANNOTATIONS}}
spec:
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec: {containers: [CONTAINER]}
  strategy: {canary: {steps: [{setWeight: 20}]}}
`)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	runnable := `{name: web, image: web:1, command: [sh, -c, "exec sleep 1000"]}`
	ok := rollout("ok", "local.sluice.io/listen: "+freeAddr(t), runnable)
	bare := rollout("bare", "", `{name: web, image: web:1}`)
	inUse := rollout("in-use", "local.sluice.io/listen: "+busy.Addr().String(), runnable)
	dup := rollout("dup", "local.sluice.io/listen: "+listenOf(t, ok), runnable)
	missing := rollout("missing", "local.sluice.io/listen: "+freeAddr(t), `{name: web, image: web:1, command: [no-such-program-sluice]}`)
	_, withTemplate := experimentExample(t)
	example := mustRead(t, withTemplate)
	bareExperiment := writeLintFile(t, "bare-experiment.yaml", example)
	experiment := writeLintFile(t, "experiment.yaml", strings.ReplaceAll(example, "          image: registry.example.com/checkout:", "          command: [sh, -c, \"exec sleep 1000\"]\n          image: registry.example.com/checkout:"))

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{"runnable", []string{"lint", "--platform", "local", "-f", ok}, exitOK, []string{"valid"}},
		{"without --platform nothing local is checked", []string{"lint", "-f", bare}, exitOK, []string{"valid"}},
		{"no command, no listen annotation", []string{"lint", "--platform", "local", "-f", bare}, exitFail, []string{
			"bare.yaml: Rollout default/bare: spec.template.spec.containers[0].command: required on the local platform, which has no image entrypoint to run",
			"bare.yaml: Rollout default/bare: metadata.annotations: the local proxy needs a listen address: add the annotation local.sluice.io/listen",
		}},
		{"a listen address in use", []string{"lint", "--platform", "local", "-f", inUse}, exitFail, []string{
			"in-use.yaml: Rollout default/in-use: metadata.annotations[local.sluice.io/listen]: cannot listen on " + busy.Addr().String() + " on this machine",
		}},
		{"a program that is not there", []string{"lint", "--platform", "local", "-f", missing}, exitFail, []string{
			`missing.yaml: Rollout default/missing: spec.template.spec.containers[0].command[0]: `, "no-such-program-sluice",
		}},
		{"two rollouts on one address", []string{"lint", "--platform", "local", "-f", ok, "-f", dup}, exitFail, []string{
			"dup.yaml: Rollout default/dup: metadata.annotations[local.sluice.io/listen]: ", "is also the address of default/ok",
		}},
		{"an Experiment's templates, which need no listen address", []string{"lint", "--platform", "local", "-f", experiment}, exitOK, []string{"valid"}},
		{"an Experiment's templates without a command", []string{"lint", "--platform", "local", "-f", bareExperiment}, exitFail, []string{
			"bare-experiment.yaml: Experiment default/checkout-1-5: spec.templates[0].template.spec.containers[0].command: required on the local platform, which has no image entrypoint to run",
			"bare-experiment.yaml: Experiment default/checkout-1-5: spec.templates[1].template.spec.containers[0].command: required on the local platform, which has no image entrypoint to run",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out.String(), errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// experimentExample returns the Experiment of docs/experiments.md's
// standalone example (pkg/spec/testdata/valid-experiment-example.yaml)
// alone, and the path of the whole file, which holds the AnalysisTemplate
// its analyses name too.
func experimentExample(t *testing.T) (experiment, withTemplate string) {
	t.Helper()
	withTemplate = "../../pkg/spec/testdata/valid-experiment-example.yaml"
	_, experiment, ok := strings.Cut(mustRead(t, withTemplate), "---\n")
	if !ok || !strings.Contains(experiment, "kind: Experiment") {
		t.Fatalf("%s: want its AnalysisTemplate, then ---, then its Experiment", withTemplate)
	}
	return experiment, withTemplate
}

// listenOf returns the local.sluice.io/listen address written in file.
func listenOf(t *testing.T, file string) string {
	t.Helper()
	_, rest, ok := strings.Cut(mustRead(t, file), "local.sluice.io/listen: ")
	if !ok {
		t.Fatalf("%s has no listen annotation", file)
	}
	addr, _, _ := strings.Cut(rest, "}")
	return addr
}
