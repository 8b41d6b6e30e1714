package influxdb

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/internal/influxdbtest"
)

// TestRealInfluxDB runs the provider against a real InfluxDB 1.8 (built
// from the module proxy by scripts/influxdb.sh) with Flux enabled: points
// written with the line protocol come back through the provider as they
// were written, and InfluxDB's own errors become Error measurements.
func TestRealInfluxDB(t *testing.T) {
	d := influxdbtest.StartInfluxd(t)
	d.CreateDatabase(t, "app")
	now := time.Now().Unix()
	// Two pods' error rates a minute apart, request counts as integers.
	d.Write(t, "app", strings.Join([]string{
		fmt.Sprintf("http,pod=a error_rate=0.01,requests=100i %d", now-120),
		fmt.Sprintf("http,pod=a error_rate=0.03,requests=120i %d", now-60),
		fmt.Sprintf("http,pod=b error_rate=0.5,requests=7i %d", now-60),
	}, "\n"))
	const from = `from(bucket: "app/autogen") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "http" and r._field == "%s")`
	tests := []struct {
		name      string
		query     string
		token     string
		wantValue string
		wantError string
		check     func(t *testing.T, result []any)
	}{
		{
			name:      "every point of every series, series by series",
			query:     fmt.Sprintf(from, "error_rate"),
			wantValue: "[0.01 0.03 0.5]",
		},
		{
			name:      "an aggregate per series",
			query:     fmt.Sprintf(from, "error_rate") + ` |> max()`,
			wantValue: "[0.03 0.5]",
		},
		{
			name:  "one aggregate over every series",
			query: fmt.Sprintf(from, "error_rate") + ` |> group() |> mean()`,
			check: func(t *testing.T, result []any) {
				if f, ok := result[0].(float64); len(result) != 1 || !ok || math.Abs(f-0.18) > 1e-9 {
					t.Errorf("result %v; want [0.18]", result)
				}
			},
		},
		{
			name:      "integers stay integers",
			query:     fmt.Sprintf(from, "requests") + ` |> filter(fn: (r) => r.pod == "a")`,
			wantValue: "[100 120]",
			check: func(t *testing.T, result []any) {
				if _, ok := result[0].(int64); !ok {
					t.Errorf("result[0] is %T; want int64", result[0])
				}
			},
		},
		{
			name:      "infinities and NaN are kept",
			query:     "import \"math\"\n" + fmt.Sprintf(from, "error_rate") + ` |> filter(fn: (r) => r.pod == "a") |> map(fn: (r) => ({r with _value: if r._value > 0.02 then math.NaN() else math.mInf(sign: 1)}))`,
			wantValue: "[+Inf NaN]",
		},
		{
			name:      "an empty window is a null",
			query:     fmt.Sprintf(from, "error_rate") + ` |> filter(fn: (r) => r.pod == "b") |> aggregateWindow(every: 1m, fn: mean, createEmpty: true) |> filter(fn: (r) => not exists r._value) |> limit(n: 1)`,
			wantValue: "[<nil>]",
		},
		{
			name:      "a Flux runtime error is InfluxDB's message",
			query:     fmt.Sprintf(from, "error_rate") + ` |> map(fn: (r) => ({r with _value: r._value / 0.0}))`,
			wantError: "influxdb answered 500 Internal Server Error: failed to evaluate map function: cannot divide by zero",
		},
		{
			name:      "no matching series is no result",
			query:     fmt.Sprintf(from, "nope"),
			wantError: "no results returned from flux query",
		},
		{
			name:      "a wrong password is InfluxDB's 401",
			query:     fmt.Sprintf(from, "error_rate"),
			token:     d.Username + ":wrong",
			wantError: "influxdb answered 401 Unauthorized",
		},
		{
			name:      "a Flux error is InfluxDB's message",
			query:     `frm(bucket: "app/autogen")`,
			wantError: `influxdb answered 500 Internal Server Error: type error 1:1-1:4: undefined identifier "frm"`,
		},
		{
			name:      "an unknown database",
			query:     `from(bucket: "nope/autogen") |> range(start: -1h)`,
			wantError: "influxdb answered 500 Internal Server Error: failed to initialize execute state: no database",
		},
	}
	p := newProvider(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token
			if tok == "" {
				tok = d.Token()
			}
			s := secrets{"influxdb/address": d.URL, "influxdb/org": "any", "influxdb/authToken": tok}
			m := p.Measure(context.Background(), request(&spec.InfluxdbMetric{Query: tt.query}, s))
			if strings.Contains(m.Message, d.Password) {
				t.Fatalf("the password leaked: %q", m.Message)
			}
			if tt.wantError != "" {
				if m.Phase != spec.AnalysisPhaseError || m.Message != tt.wantError {
					t.Fatalf("phase %q message %q; want Error %q", m.Phase, m.Message, tt.wantError)
				}
				return
			}
			if m.Phase != "" || (tt.wantValue != "" && m.Value != tt.wantValue) {
				t.Fatalf("phase %q message %q value %q; want %q", m.Phase, m.Message, m.Value, tt.wantValue)
			}
			if tt.check != nil {
				tt.check(t, m.Result.([]any))
			}
		})
	}
}
