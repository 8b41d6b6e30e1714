package main

import (
	"context"
	"strings"
	"testing"
)

// TestLintCloudWatch runs `sluice lint` on the cloudWatch testdata of
// package spec: the valid template passes, the broken one is reported with
// field paths.
func TestLintCloudWatch(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		wantCode int
		wantOut  []string
	}{
		{name: "valid", file: "../../pkg/spec/testdata/valid-analysistemplate-cloudwatch.yaml", wantCode: exitOK},
		{name: "invalid", file: "../../pkg/spec/testdata/invalid-analysistemplate-cloudwatch.yaml", wantCode: exitFail, wantOut: []string{
			`spec.metrics[1].provider.cloudWatch.metricDataQueries[1].id: Invalid value: "Errors": must start with a lowercase letter`,
			`spec.metrics[1].provider.cloudWatch.metricDataQueries[3].id: Duplicate value: "rate"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), []string{"lint", "-f", tt.file}, &out, &errOut)
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
