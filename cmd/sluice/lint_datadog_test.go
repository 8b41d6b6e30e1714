package main

import (
	"context"
	"strings"
	"testing"
)

// TestLintDatadog: sluice lint reports a datadog block's problems with
// their field paths, and passes the template docs/providers/datadog.md
// offers.
func TestLintDatadog(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		wantCode   int
		wantOut    string
	}{
		{"the documented template", "../../pkg/spec/testdata/valid-analysistemplate-datadog.yaml", exitOK, "valid"},
		{"every problem with its path", "../../pkg/spec/testdata/invalid-analysistemplate-datadog.yaml", exitFail,
			"spec.metrics[2].provider.datadog.formula: Required value: must be set when queries has more than one query"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			if code := run(context.Background(), []string{"lint", "-f", tt.file}, &out, &errOut); code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}
