package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sluice lint checks a job metric's Job as the API server will.
func TestLintJobProvider(t *testing.T) {
	src, err := os.ReadFile("../../pkg/spec/testdata/valid-analysistemplate-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(string(src), "restartPolicy: Never", "restartPolicy: Always", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		file string
		code int
		want string
	}{
		{"the documented template", good, exitOK, "valid"},
		{"a Job that restarts Always", bad, exitFail,
			`bad.yaml: AnalysisTemplate default/smoke-test: spec.metrics[0].provider.job.spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "Never", "OnFailure"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			if code := run(context.Background(), []string{"lint", "-f", tc.file}, &out, &errOut); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}
