package analysis

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/pkg/spec"
)

func str(s string) *string { return &s }

func strCount(s string) *intstr.IntOrString { x := intstr.FromString(s); return &x }

func TestSubstitute(t *testing.T) {
	in := spec.Metric{
		Name:                  "m",
		Count:                 strCount("{{args.count}}"),
		FailureLimit:          strCount("{{ args.limit }}"),
		SuccessCondition:      "result[0] <= {{args.threshold}}",
		ConsecutiveErrorLimit: strCount("{{args.limit}}"),
		Provider: spec.MetricProvider{Web: &spec.WebMetric{
			Method:   spec.WebMetricMethodPost,
			URL:      "{{args.base}}/check?svc={{args.svc}}",
			Headers:  []spec.WebMetricHeader{{Key: "X-Note", Value: "{{args.note}}"}, {Key: "Authorization", Value: "Bearer {{args.token}}"}},
			JSONBody: json.RawMessage(`{"target":"{{args.svc}}","n":1}`),
		}},
	}
	values := map[string]string{
		"count": "5", "limit": "2", "threshold": "0.5", "base": "https://x.example", "svc": "web",
		"note": "a \"quoted\"\nline <&>",
	}
	got, err := Substitute(in, values)
	if err != nil {
		t.Fatal(err)
	}
	w := got.Provider.Web
	checks := map[string][2]string{
		"count":     {got.Count.String(), "5"},
		"limit":     {got.FailureLimit.String(), "2"},
		"errLimit":  {got.ConsecutiveErrorLimit.String(), "2"},
		"condition": {got.SuccessCondition, "result[0] <= 0.5"},
		"url":       {w.URL, "https://x.example/check?svc=web"},
		"header":    {w.Headers[0].Value, values["note"]},
		"secret":    {w.Headers[1].Value, "Bearer {{args.token}}"},
		"body":      {string(w.JSONBody), `{"target":"web","n":1}`},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if got, want := Placeholders(got), []string{"token"}; !reflect.DeepEqual(got, want) {
		t.Errorf("placeholders left = %v, want %v", got, want)
	}
	if in.Provider.Web.URL != "{{args.base}}/check?svc={{args.svc}}" {
		t.Error("Substitute modified its argument")
	}
}

func TestMergeArgs(t *testing.T) {
	secret := &spec.ValueFrom{SecretKeyRef: &spec.SecretKeyRef{Name: "s", Key: "k"}}
	tests := []struct {
		name     string
		supplied []spec.AnalysisRunArgument
		declared []spec.Argument
		want     []spec.Argument
		wantErr  string
	}{
		{
			name:     "supplied values fill and replace; unknown ones are ignored",
			supplied: []spec.AnalysisRunArgument{{Name: "svc", Value: "web"}, {Name: "lookback", Value: "10m"}, {Name: "extra", Value: "x"}},
			declared: []spec.Argument{{Name: "svc"}, {Name: "lookback", Value: str("5m")}, {Name: "token", ValueFrom: secret}},
			want:     []spec.Argument{{Name: "svc", Value: str("web")}, {Name: "lookback", Value: str("10m")}, {Name: "token", ValueFrom: secret}},
		},
		{
			name:     "missing values are named, all of them",
			supplied: []spec.AnalysisRunArgument{{Name: "a", Value: "1"}},
			declared: []spec.Argument{{Name: "a"}, {Name: "svc"}, {Name: "namespace"}},
			wantErr:  `arguments "svc", "namespace" have no value`,
		},
		{
			name:     "one missing value",
			declared: []spec.Argument{{Name: "svc"}},
			wantErr:  `argument "svc" has no value`,
		},
		{
			name:     "an unresolved valueFrom is the caller's bug",
			supplied: []spec.AnalysisRunArgument{{Name: "hash", ValueFrom: &spec.ArgumentValueFrom{PodTemplateHashValue: ptr(spec.Latest)}}},
			declared: []spec.Argument{{Name: "hash"}},
			wantErr:  `argument "hash": valueFrom must be resolved`,
		},
		{
			name:     "a template fieldRef left unresolved has no value",
			declared: []spec.Argument{{Name: "app", ValueFrom: &spec.ValueFrom{FieldRef: &spec.FieldRef{FieldPath: "metadata.name"}}}},
			wantErr:  `argument "app" has no value`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MergeArgs(tc.supplied, tc.declared)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestMerge(t *testing.T) {
	tmpl := func(metrics []string, args ...spec.Argument) spec.AnalysisTemplateSpec {
		var s spec.AnalysisTemplateSpec
		for _, m := range metrics {
			s.Metrics = append(s.Metrics, metric(m))
		}
		s.Args = args
		return s
	}
	tests := []struct {
		name      string
		templates []spec.AnalysisTemplateSpec
		args      []spec.AnalysisRunArgument
		dryRun    []spec.DryRun
		wantErr   string
		check     func(t *testing.T, s spec.AnalysisRunSpec)
	}{
		{
			name:      "metrics in order, args merged",
			templates: []spec.AnalysisTemplateSpec{tmpl([]string{"a", "b"}, spec.Argument{Name: "svc"}), tmpl([]string{"c"}, spec.Argument{Name: "svc"}, spec.Argument{Name: "ns", Value: str("prod")})},
			args:      []spec.AnalysisRunArgument{{Name: "svc", Value: "web"}},
			check: func(t *testing.T, s spec.AnalysisRunSpec) {
				var names []string
				for _, m := range s.Metrics {
					names = append(names, m.Name)
				}
				if strings.Join(names, ",") != "a,b,c" {
					t.Errorf("metrics = %v", names)
				}
				want := []spec.Argument{{Name: "svc", Value: str("web")}, {Name: "ns", Value: str("prod")}}
				if !reflect.DeepEqual(s.Args, want) {
					t.Errorf("args = %+v", s.Args)
				}
			},
		},
		{
			name:      "a value replaces a declaration without one",
			templates: []spec.AnalysisTemplateSpec{tmpl([]string{"a"}, spec.Argument{Name: "ns"}), tmpl([]string{"b"}, spec.Argument{Name: "ns", Value: str("prod")})},
			check: func(t *testing.T, s spec.AnalysisRunSpec) {
				if *s.Args[0].Value != "prod" {
					t.Errorf("ns = %q", *s.Args[0].Value)
				}
			},
		},
		{
			name:      "duplicate metric names across templates",
			templates: []spec.AnalysisTemplateSpec{tmpl([]string{"a"}), tmpl([]string{"a"})},
			wantErr:   `two metrics have the same name "a"`,
		},
		{
			name:      "conflicting argument values",
			templates: []spec.AnalysisTemplateSpec{tmpl([]string{"a"}, spec.Argument{Name: "ns", Value: str("prod")}), tmpl([]string{"b"}, spec.Argument{Name: "ns", Value: str("dev")})},
			wantErr:   `argument "ns" specified multiple times with different values: "prod", "dev"`,
		},
		{
			name:      "duplicate dryRun rules",
			templates: []spec.AnalysisTemplateSpec{{Metrics: []spec.Metric{metric("a")}, DryRun: []spec.DryRun{{MetricName: "a"}}}},
			dryRun:    []spec.DryRun{{MetricName: "a"}},
			wantErr:   `two dryRun rules for metricName "a"`,
		},
		{
			name:      "missing argument named",
			templates: []spec.AnalysisTemplateSpec{tmpl([]string{"a"}, spec.Argument{Name: "svc"})},
			wantErr:   `argument "svc" has no value`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Merge(tc.templates, tc.args, tc.dryRun, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func TestNew(t *testing.T) {
	secret := &spec.ValueFrom{SecretKeyRef: &spec.SecretKeyRef{Name: "s", Key: "k"}}
	withArgs := func(args []spec.Argument, ms ...spec.Metric) spec.AnalysisRunSpec {
		return spec.AnalysisRunSpec{Metrics: ms, Args: args}
	}
	tests := []struct {
		name    string
		spec    spec.AnalysisRunSpec
		wantErr []string
		check   func(t *testing.T, r Run)
	}{
		{
			name: "args substituted, counts from args, secrets left as placeholders",
			spec: withArgs([]spec.Argument{{Name: "n", Value: str("3")}, {Name: "svc", Value: str("web")}, {Name: "token", ValueFrom: secret}},
				metric("m", interval("1m"), func(m *spec.Metric) {
					m.Count = strCount("{{args.n}}")
					m.Provider.Prometheus.Query = `up{svc="{{args.svc}}"}`
					m.Provider.Prometheus.Headers = []spec.WebMetricHeader{{Key: "Authorization", Value: "Bearer {{args.token}}"}}
				})),
			check: func(t *testing.T, r Run) {
				m := r.Metrics[0]
				if m.Provider.Prometheus.Query != `up{svc="web"}` || m.Count.String() != "3" {
					t.Errorf("metric = %+v", m)
				}
				if v := m.Provider.Prometheus.Headers[0].Value; v != "Bearer {{args.token}}" {
					t.Errorf("secret header = %q, want the placeholder kept", v)
				}
				if len(r.SecretArgs) != 1 || r.SecretArgs[0].Name != "token" {
					t.Errorf("secret args = %+v", r.SecretArgs)
				}
				if r.Phase != R || r.Results[0].Phase != P || !r.StartedAt.Equal(t0) {
					t.Errorf("run = %s, metric = %s", r.Phase, r.Results[0].Phase)
				}
				if d := r.Due(t0); len(d) != 1 {
					t.Errorf("due at start = %d metrics", len(d))
				}
			},
		},
		{
			name:    "every problem at once",
			spec:    withArgs([]spec.Argument{{Name: "a"}, {Name: "b"}}, metric("m", conds("result >", ""), func(m *spec.Metric) { m.Provider.Prometheus.Query = "{{args.zzz}}" })),
			wantErr: []string{`arguments "a", "b" have no value`, "{{args.zzz}}, which no template declares", `successCondition "result >"`},
		},
		{
			name:    "a count that is not an integer",
			spec:    withArgs([]spec.Argument{{Name: "n", Value: str("many")}}, metric("m", interval("1m"), func(m *spec.Metric) { m.Count = strCount("{{args.n}}") })),
			wantErr: []string{`count "many" is not an integer`},
		},
		{
			name:    "failureLimit -1 alone",
			spec:    withArgs(nil, metric("m", failureLimit(-1))),
			wantErr: []string{"failureLimit -1 needs a consecutiveSuccessLimit"},
		},
		{
			name:    "spec validation after substitution",
			spec:    withArgs([]spec.Argument{{Name: "addr", Value: str("not a url")}}, metric("m", func(m *spec.Metric) { m.Provider.Prometheus.Address = "{{args.addr}}" })),
			wantErr: []string{"spec.metrics[0].provider.prometheus.address"},
		},
		{
			name:    "count above one needs an interval",
			spec:    withArgs(nil, metric("m", count(3))),
			wantErr: []string{"spec.metrics[0].interval"},
		},
		{
			name:    "dryRun and retention rules must match",
			spec:    spec.AnalysisRunSpec{Metrics: []spec.Metric{metric("m")}, DryRun: []spec.DryRun{{MetricName: "nope"}}, MeasurementRetention: []spec.MeasurementRetention{{MetricName: "(", Limit: 2}}},
			wantErr: []string{`dryRun[0]: metricName "nope" matches no metric`, `measurementRetention[0]: metricName "("`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New("run", tc.spec, t0)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func TestCheckTemplate(t *testing.T) {
	tests := []struct {
		name    string
		t       spec.AnalysisTemplateSpec
		wantErr []string
	}{
		{"valid", spec.AnalysisTemplateSpec{Metrics: []spec.Metric{metric("a", conds("result[0] > 1", ""))}, DryRun: []spec.DryRun{{MetricName: "*"}}}, nil},
		{"placeholders wait for the run", spec.AnalysisTemplateSpec{Metrics: []spec.Metric{metric("a", conds("result[0] > {{args.x}}", ""), func(m *spec.Metric) { m.FailureLimit = strCount("{{args.n}}") })}}, nil},
		{"everything wrong", spec.AnalysisTemplateSpec{
			Metrics:              []spec.Metric{metric("a", conds("result[0] >", ""), failureLimit(-1))},
			DryRun:               []spec.DryRun{{MetricName: "*a"}},
			MeasurementRetention: []spec.MeasurementRetention{{MetricName: "(", Limit: 1}},
		}, []string{`metrics[0].successCondition: Invalid value: "result[0] >"`, `metrics[0] ("a"): failureLimit -1 needs`, `dryRun[0]: metricName "*a"`, `measurementRetention[0]: metricName "("`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTemplate(tc.t)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
