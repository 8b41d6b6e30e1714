package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestLintPluginMetric: sluice lint validates a plugin metric's block but
// not its plugin's name, which only the analyzer's --metric-plugins knows.
func TestLintPluginMetric(t *testing.T) {
	testdata := filepath.Join("..", "..", "pkg", "spec", "testdata")
	for _, tc := range []struct {
		name, file string
		code       int
		out        string
	}{
		{name: "a plugin no file configures", file: "valid-analysistemplate-plugin.yaml", code: exitOK, out: "valid"},
		{name: "two plugins in one metric", file: "invalid-analysistemplate-plugin.yaml", code: exitFail, out: `spec.metrics[0].provider.plugin: Invalid value: "acme/one, acme/two": must name exactly one plugin`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(context.Background(), []string{"lint", "-f", filepath.Join(testdata, tc.file)}, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) {
				t.Fatalf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tc.code, tc.out, out.String(), errOut.String())
			}
		})
	}
}
