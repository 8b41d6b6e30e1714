package analyzer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/analysis"
	"github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero value plus defaults"},
		{name: "negative lease margin", cfg: Config{LeaseMargin: -time.Second}, wantErr: "LeaseMargin -1s must be positive"},
		{name: "negative retention", cfg: Config{Retention: -time.Hour}, wantErr: "Retention -1h0m0s must be positive"},
		{name: "negative concurrency", cfg: Config{MaxConcurrentRuns: -1}, wantErr: "MaxConcurrentRuns -1 must be at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Defaults()
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.LeaseMargin != DefaultLeaseMargin || cfg.Retention != DefaultRetention || cfg.MaxConcurrentRuns != DefaultMaxConcurrentRuns || cfg.ID == "" {
					t.Fatalf("defaults not set: %+v", cfg)
				}
				return
			}
			if err == nil || !errors.Is(err, events.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v; want ErrInvalidConfig with %q", err, tc.wantErr)
			}
		})
	}
	a, b := Config{}, Config{}
	a.Defaults()
	b.Defaults()
	if a.ID == b.ID {
		t.Errorf("two services in one process share the ID %q", a.ID)
	}
}

func TestNewRejectsBadPrometheusEnvironment(t *testing.T) {
	env := map[string]string{prometheus.EnvAddress: "ftp://prometheus", prometheus.EnvToken: "t"}
	_, err := New(nil, Config{Getenv: func(k string) string { return env[k] }})
	if !errors.Is(err, events.ErrInvalidConfig) || !strings.Contains(err.Error(), prometheus.EnvAddress) {
		t.Fatalf("error %v; want an invalid configuration naming %s", err, prometheus.EnvAddress)
	}
}

func TestRunKey(t *testing.T) {
	r := events.Ref{Namespace: "prod", Name: "checkout"}
	tests := []struct {
		run, want, wantErr string
	}{
		{run: "checkout-6d9f7c8b5-7-2", want: "prod.checkout.checkout-6d9f7c8b5-7-2"},
		{run: "checkout-6d9f7c8b5-7-2.1", want: "prod.checkout.checkout-6d9f7c8b5-7-2.1"},
		{run: "", wantErr: "cannot be stored"},
		{run: "a..b", wantErr: "cannot be stored"},
		{run: "a b", wantErr: "cannot be stored"},
		{run: "a.*", wantErr: "cannot be stored"},
		{run: ".a", wantErr: "cannot be stored"},
	}
	for _, tc := range tests {
		got, err := runKey(r, tc.run)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("runKey(%q) = %q, %v; want error %q", tc.run, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("runKey(%q) = %q, %v; want %q", tc.run, got, err, tc.want)
		}
	}
}

func TestSecretEnv(t *testing.T) {
	tests := []struct {
		ref  spec.SecretKeyRef
		want string
	}{
		{spec.SecretKeyRef{Name: "prom-creds", Key: "token"}, "SLUICE_SECRET_PROM_CREDS_TOKEN"},
		{spec.SecretKeyRef{Name: "datadog", Key: "api.key"}, "SLUICE_SECRET_DATADOG_API_KEY"},
		{spec.SecretKeyRef{Name: "a.b", Key: "Client_Secret"}, "SLUICE_SECRET_A_B_CLIENT_SECRET"},
	}
	for _, tc := range tests {
		if got := SecretEnv(tc.ref); got != tc.want {
			t.Errorf("SecretEnv(%+v) = %q, want %q", tc.ref, got, tc.want)
		}
	}
}

func TestSecretValuesNameEveryMissingVariable(t *testing.T) {
	s := &Service{cfg: Config{Secrets: EnvSecrets{Getenv: func(k string) string {
		if k == "SLUICE_SECRET_A_KEY" {
			return "va"
		}
		return ""
	}}}}
	ref := func(name string) *spec.ValueFrom {
		return &spec.ValueFrom{SecretKeyRef: &spec.SecretKeyRef{Name: name, Key: "key"}}
	}
	values, err := s.secretValues(context.Background(), "prod", []spec.Argument{{Name: "a", ValueFrom: ref("a")}, {Name: "b", ValueFrom: ref("b")}, {Name: "c", ValueFrom: ref("c")}})
	if values["a"] != "va" {
		t.Errorf("values = %v", values)
	}
	if err == nil || !strings.Contains(err.Error(), "SLUICE_SECRET_B_KEY") || !strings.Contains(err.Error(), "SLUICE_SECRET_C_KEY") ||
		!errors.Is(err, ErrSecretNotFound) {
		t.Errorf("error %v; want both missing variables named", err)
	}
}

// TestParseTemplate reads testdata/templates: valid-*.yaml must be
// accepted, invalid-*.yaml rejected with the problem on their "# want:"
// line. Each file's "# subject:" line is the subject it is published on.
func TestParseTemplate(t *testing.T) {
	reg, err := DefaultProviders(ProviderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{cfg: Config{Providers: reg}}
	files, err := filepath.Glob("testdata/templates/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test templates: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			subject, want := header(string(data), "# subject: "), header(string(data), "# want: ")
			r, err := events.ParseRef(subject)
			if err != nil {
				t.Fatalf("# subject: %v", err)
			}
			j, err := yaml.YAMLToJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			tmpl, _, problems := parseTemplate(s.cfg.Providers, r, j)
			valid := strings.HasPrefix(filepath.Base(file), "valid-")
			switch {
			case valid && len(problems) > 0:
				t.Fatalf("rejected: %q", problems)
			case valid:
				if err := analysis.CheckTemplate(tmpl.Spec); err != nil || tmpl.Name != r.Name {
					t.Fatalf("stored %+v (%v)", tmpl, err)
				}
				if (tmpl.Kind == spec.KindClusterAnalysisTemplate) != (tmpl.Namespace == "") {
					t.Fatalf("kind %s in namespace %q", tmpl.Kind, tmpl.Namespace)
				}
			case want == "":
				t.Fatal("invalid test template without a # want: line")
			case !strings.Contains(strings.Join(problems, "\n"), want):
				t.Fatalf("problems %q; want %q", problems, want)
			}
		})
	}
}

func header(doc, prefix string) string {
	for _, line := range strings.Split(doc, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestTemplateKeysCannotCollide(t *testing.T) {
	// A namespace is a DNS-1123 label: it never starts with "_".
	if err := events.ValidateName("namespace", clusterPrefix); err == nil {
		t.Fatalf("%q is a valid namespace", clusterPrefix)
	}
	if a, c := templateKey("prod", "x"), templateKey("", "x"); a == c {
		t.Fatalf("keys collide: %s", a)
	}
}

func TestRecordWakeup(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0).UTC()
	run, err := analysis.New("r", spec.AnalysisRunSpec{Metrics: []spec.Metric{{
		Name: "m", Interval: "1m", InitialDelay: "30s",
		Provider: spec.MetricProvider{Prometheus: &spec.PrometheusMetric{Address: "http://p:9090", Query: "up"}},
	}}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	const margin, retention = 10 * time.Second, time.Hour
	tests := []struct {
		name string
		rec  runRecord
		want time.Time // zero: none
	}{
		{name: "the run's next measurement", rec: runRecord{Run: &run}, want: t0.Add(30 * time.Second)},
		{name: "a lease until it expires", rec: runRecord{Run: &run, Lease: &lease{Expires: t0.Add(40 * time.Second)}}, want: t0.Add(40 * time.Second)},
		{name: "an outbox after its grace", rec: runRecord{Run: &run, Outbox: []report{{ID: "x"}}, OutboxAt: t0}, want: t0.Add(margin)},
		{name: "a done record at the end of its retention", rec: runRecord{Run: &run, DoneAt: t0}, want: t0.Add(retention)},
		{name: "a tombstone without retention", rec: runRecord{}, want: time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.rec.wakeup(margin, retention)
			switch {
			case tc.want.IsZero() && got != nil:
				t.Fatalf("wakeup %s, want none", got)
			case !tc.want.IsZero() && (got == nil || !got.Equal(tc.want)):
				t.Fatalf("wakeup %v, want %s", got, tc.want)
			}
		})
	}
}
