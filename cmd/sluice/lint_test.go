package main

import (
	"context"
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
