package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Plugin is one metric plugin the analyzer may run: an item of Argo
// Rollouts' metricProviderPlugins list (argo-rollouts-config ConfigMap),
// with its Location on this machine.
type Plugin struct {
	// Name is the name metrics use under provider.plugin, in Argo's
	// <namespace>/<name> form ("argoproj-labs/sample-prometheus").
	Name string `json:"name"`
	// Location is the plugin's executable: file:///path or a plain path
	// (relative to the plugins file). Nothing is downloaded: an http(s)
	// location is refused.
	Location string `json:"location"`
	// Sha256 is the executable's checksum (hex). When set, it is checked
	// at start and before each start of the process.
	Sha256 string `json:"sha256,omitempty"`
	// Args are the process's command-line arguments.
	Args []string `json:"args,omitempty"`
	// Timeout bounds one measurement, Resume calls included (a Sluice
	// extension; default DefaultTimeout), as a Go duration ("2m").
	Timeout string `json:"timeout,omitempty"`

	// Argo's fields that have no meaning here, refused when set.
	HeadersFrom []any `json:"headersFrom,omitempty"`
	Disabled    bool  `json:"disabled,omitempty"`
}

// Reserved is the plugin name that Sluice keeps for its own judge; no
// configured plugin may take it.
const Reserved = "sluice/judge"

// nameRE is Argo Rollouts' rule for plugin names (utils/config).
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9\-]+/[a-zA-Z0-9_\-.]+$`)

// ValidName reports whether name is a plugin name Argo Rollouts accepts.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// file is the plugins file: Argo's metricProviderPlugins list, either at
// the top level or as the argo-rollouts-config ConfigMap manifest whose
// data holds it.
type file struct {
	Kind                  string            `json:"kind,omitempty"`
	APIVersion            string            `json:"apiVersion,omitempty"`
	Metadata              map[string]any    `json:"metadata,omitempty"`
	Data                  map[string]string `json:"data,omitempty"`
	MetricProviderPlugins []Plugin          `json:"metricProviderPlugins,omitempty"`
}

// LoadFile reads the plugins file at path: a YAML document with Argo
// Rollouts' metricProviderPlugins list, or the argo-rollouts-config
// ConfigMap manifest holding it (its other keys are ignored). Relative
// locations are resolved against the file's directory. The list is not
// validated: New does that.
func LoadFile(path string) ([]Plugin, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f file
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ps := f.MetricProviderPlugins
	if f.Kind != "" {
		if f.Kind != "ConfigMap" || len(ps) > 0 {
			return nil, fmt.Errorf("%s: want a metricProviderPlugins list or a ConfigMap holding one, not kind %q", path, f.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(f.Data["metricProviderPlugins"]), &ps); err != nil {
			return nil, fmt.Errorf("%s: data.metricProviderPlugins: %w", path, err)
		}
	}
	dir := filepath.Dir(path)
	for i := range ps {
		if loc, ok := localPath(ps[i].Location); ok && loc != "" && !filepath.IsAbs(loc) {
			ps[i].Location = filepath.Join(dir, loc)
		}
	}
	return ps, nil
}

// localPath is the file a location names, and false for a location that
// is not a local file (http, https or another scheme).
func localPath(loc string) (string, bool) {
	if p, ok := strings.CutPrefix(loc, "file://"); ok {
		return p, true
	}
	if strings.Contains(loc, "://") {
		return "", false
	}
	return loc, true
}

// plugin is a validated Plugin.
type plugin struct {
	Plugin
	path    string
	timeout time.Duration
}

// check validates ps: each problem at once. The executables must exist and
// match their checksums.
func check(ps []Plugin) (map[string]plugin, error) {
	var errs []error
	out := make(map[string]plugin, len(ps))
	for i, p := range ps {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("metricProviderPlugins[%d] (%s): %s", i, p.Name, fmt.Sprintf(format, args...)))
		}
		switch {
		case p.Name == "":
			bad("name is required")
		case !ValidName(p.Name):
			bad("name must be <namespace>/<name>, as Argo Rollouts requires")
		case p.Name == Reserved:
			bad("the name %s is reserved for Sluice's built-in judge", Reserved)
		}
		if _, dup := out[p.Name]; dup && p.Name != "" {
			bad("configured twice")
		}
		if len(p.HeadersFrom) > 0 {
			bad("headersFrom is for downloads, which Sluice does not do: download the plugin and give its file:// location")
		}
		if p.Disabled {
			bad("disabled applies to step plugins only; remove the plugin instead")
		}
		v := plugin{Plugin: p, timeout: DefaultTimeout}
		if p.Timeout != "" {
			d, err := time.ParseDuration(p.Timeout)
			if err != nil || d <= 0 {
				bad("timeout %q must be a positive duration such as 2m", p.Timeout)
			}
			v.timeout = d
		}
		path, ok := localPath(p.Location)
		switch {
		case !ok:
			bad("location %q is not a local file: Sluice runs plugins from disk and downloads nothing; download it (and check its sha256), then give its file:// location", p.Location)
		case path == "":
			bad("location is required (file:///path/to/plugin)")
		default:
			v.path = path
			if err := verify(path, p.Sha256); err != nil {
				errs = append(errs, fmt.Errorf("metricProviderPlugins[%d] (%s): %w", i, p.Name, err))
			}
		}
		out[p.Name] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// ErrChecksum is wrapped by the error of an executable whose sha256 is not
// the configured one.
var ErrChecksum = errors.New("sha256 mismatch")

// verify checks that path is an executable file whose sha256 is sum (hex,
// any case), when sum is set.
func verify(path, sum string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	if sum == "" {
		return nil
	}
	want, err := hex.DecodeString(strings.TrimSpace(sum))
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("sha256 %q is not a hex SHA-256", sum)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%s: %w: the file's is %x", path, ErrChecksum, got)
	}
	return nil
}
