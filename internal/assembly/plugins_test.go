package assembly

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/daemon"
)

// TestMetricPluginsFlag: the analyzer refuses to start on a plugins file
// it cannot use, saying why.
func TestMetricPluginsFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{
			name: "an http location",
			file: write("http.yaml", "metricProviderPlugins:\n- name: argoproj-labs/sample-prometheus\n  location: https://github.com/argoproj-labs/sample/releases/download/v0.0.4/metric-plugin-linux-amd64\n"),
			want: "downloads nothing; download it (and check its sha256), then give its file:// location",
		},
		{
			name: "a checksum mismatch",
			file: write("sum.yaml", "metricProviderPlugins:\n- name: acme/true\n  location: file:///bin/true\n  sha256: "+strings.Repeat("ab", 32)+"\n"),
			want: "sha256 mismatch",
		},
		{name: "no such file", file: filepath.Join(dir, "missing.yaml"), want: "--metric-plugins: open "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions(func(string) string { return "" })
			fs := pflag.NewFlagSet("sluice-analyzer", pflag.ContinueOnError)
			o.AddFlags(Analyzer, fs)
			if err := fs.Parse([]string{"--metric-plugins", tc.file}); err != nil {
				t.Fatal(err)
			}
			_, err := o.Build(Analyzer, "sluice-analyzer", daemon.Env{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
