package plugin_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/services/analyzer/internal/plugintest"
	"github.com/sluicehq/sluice/services/analyzer/metrics/plugin"
)

func TestLoadFile(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []plugin.Plugin
		err        string
	}{
		{
			name: "list",
			yaml: `
metricProviderPlugins:
  - name: argoproj-labs/sample-prometheus
    location: file:///opt/plugins/sample-prometheus
    sha256: 0a1b
    args: ["--log-level", "debug"]
  - name: acme/relative
    location: plugins/acme
    timeout: 2m
`,
			want: []plugin.Plugin{
				{Name: "argoproj-labs/sample-prometheus", Location: "file:///opt/plugins/sample-prometheus", Sha256: "0a1b", Args: []string{"--log-level", "debug"}},
				{Name: "acme/relative", Location: "DIR/plugins/acme", Timeout: "2m"},
			},
		},
		{
			name: "argo-rollouts-config ConfigMap",
			yaml: `
apiVersion: v1
kind: ConfigMap
metadata:
  name: argo-rollouts-config
data:
  trafficRouterPlugins: |-
    - name: argoproj-labs/gatewayAPI
      location: https://example.com/gateway
  metricProviderPlugins: |-
    - name: argoproj-labs/sample-prometheus
      location: file:///opt/plugins/sample-prometheus
`,
			want: []plugin.Plugin{{Name: "argoproj-labs/sample-prometheus", Location: "file:///opt/plugins/sample-prometheus"}},
		},
		{name: "unknown field", yaml: "metricProviderPlugins:\n  - name: a/b\n    locaton: x\n", err: `unknown field "locaton"`},
		{name: "another kind", yaml: "kind: Secret\n", err: `not kind "Secret"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "plugins.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := plugin.LoadFile(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("LoadFile: %v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			for i := range tc.want {
				tc.want[i].Location = strings.Replace(tc.want[i].Location, "DIR", dir, 1)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestNew: the plugins are checked at start, every problem at once.
func TestNew(t *testing.T) {
	path, sum := plugintest.Build(t)
	notExec := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("0", 64)
	for _, tc := range []struct {
		name     string
		plugins  []plugin.Plugin
		want     []string
		checksum bool // the error wraps ErrChecksum
	}{
		{name: "valid, with sha256", plugins: []plugin.Plugin{{Name: "a/b", Location: "file://" + path, Sha256: sum}}},
		{name: "valid, plain path without sha256", plugins: []plugin.Plugin{{Name: "a/b", Location: path}}},
		{name: "sha256 mismatch", plugins: []plugin.Plugin{{Name: "a/b", Location: path, Sha256: wrong}}, want: []string{"sha256 mismatch", "the file's is " + sum}, checksum: true},
		{name: "sha256 not hex", plugins: []plugin.Plugin{{Name: "a/b", Location: path, Sha256: "xyz"}}, want: []string{`sha256 "xyz" is not a hex SHA-256`}},
		{name: "http location", plugins: []plugin.Plugin{{Name: "a/b", Location: "https://github.com/acme/plugin/releases/plugin"}}, want: []string{"is not a local file", "downloads nothing", "file://"}},
		{name: "missing file", plugins: []plugin.Plugin{{Name: "a/b", Location: "/nonexistent/plugin"}}, want: []string{"/nonexistent/plugin"}},
		{name: "not executable", plugins: []plugin.Plugin{{Name: "a/b", Location: notExec}}, want: []string{"not an executable file"}},
		{
			name: "every problem at once",
			plugins: []plugin.Plugin{
				{Name: "no-namespace", Location: path},
				{Name: plugin.Reserved, Location: path},
				{Name: "a/b", Location: path, Timeout: "soon"},
				{Name: "a/b", Location: path},
				{Name: "c/d", Location: path, Disabled: true, HeadersFrom: []any{"x"}},
				{Name: "", Location: ""},
			},
			want: []string{
				"[0] (no-namespace): name must be <namespace>/<name>",
				"[1] (sluice/judge): the name sluice/judge is reserved",
				`[2] (a/b): timeout "soon" must be a positive duration`,
				"[3] (a/b): configured twice",
				"[4] (c/d): headersFrom is for downloads",
				"[4] (c/d): disabled applies to step plugins only",
				"[5] (): name is required",
				"[5] (): location is required",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plugin.New(plugin.Config{Plugins: tc.plugins})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New accepted %+v", tc.plugins)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if errors.Is(err, plugin.ErrChecksum) != tc.checksum {
				t.Errorf("error %v wraps ErrChecksum: %v, want %v", err, !tc.checksum, tc.checksum)
			}
		})
	}
}
