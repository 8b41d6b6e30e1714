package main

import (
	"context"
	"strings"
	"testing"
)

// TestLintNewRelic: sluice lint runs the newRelic provider's validation, on
// the templates package spec tests.
func TestLintNewRelic(t *testing.T) {
	for _, tt := range []struct {
		file     string
		wantCode int
		wantOut  []string
	}{
		{"valid-analysistemplate-newrelic.yaml", exitOK, []string{"valid"}},
		{"invalid-analysistemplate-newrelic.yaml", exitFail, []string{
			"spec.metrics[0].provider.newRelic.query: Required value",
			"spec.metrics[0].provider.newRelic.timeout: Invalid value: -1",
			`spec.metrics[1].provider.newRelic.profile: Invalid value: "New_Relic": must name a Secret`,
		}},
	} {
		t.Run(tt.file, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), []string{"lint", "-f", "../../pkg/spec/testdata/" + tt.file}, &out, &errOut)
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
