package spec

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDurationString(t *testing.T) {
	tests := []struct {
		in      DurationString
		want    time.Duration
		wantErr string
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "5m", want: 5 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "0", want: 0},
		{in: "30", wantErr: `duration "30" has no unit; want e.g. 30s`},
		{in: "1d", wantErr: `invalid duration "1d"; want a number with a unit, such as 30s, 5m or 1h`},
		{in: "-5s", wantErr: `duration "-5s" is negative`},
		{in: "", wantErr: "empty duration; want a number with a unit, such as 30s, 5m or 1h"},
	}
	for _, tt := range tests {
		t.Run(string(tt.in), func(t *testing.T) {
			got, err := tt.in.Duration()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Duration() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Duration() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestPauseLength(t *testing.T) {
	intDur := func(i int32) *intstr.IntOrString { v := intstr.FromInt32(i); return &v }
	strDur := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	tests := []struct {
		name           string
		pause          RolloutPause
		want           time.Duration
		wantIndefinite bool
		wantErr        string
	}{
		{name: "no duration waits for a promote", pause: RolloutPause{}, wantIndefinite: true},
		{name: "integer is seconds", pause: RolloutPause{Duration: intDur(45)}, want: 45 * time.Second},
		{name: "numeric string is seconds", pause: RolloutPause{Duration: strDur("30")}, want: 30 * time.Second},
		{name: "Go duration", pause: RolloutPause{Duration: strDur("1h30m")}, want: 90 * time.Minute},
		{name: "zero", pause: RolloutPause{Duration: intDur(0)}, want: 0},
		{name: "negative integer", pause: RolloutPause{Duration: intDur(-1)}, wantErr: "duration -1 is negative"},
		{name: "negative string", pause: RolloutPause{Duration: strDur("-10s")}, wantErr: `duration "-10s" is negative`},
		{name: "garbage", pause: RolloutPause{Duration: strDur("soon")}, wantErr: `invalid duration "soon"; want seconds (30) or a number with a unit (30s, 5m, 1h)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pause.Indefinite(); got != tt.wantIndefinite {
				t.Errorf("Indefinite() = %v, want %v", got, tt.wantIndefinite)
			}
			got, err := tt.pause.Length()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Length() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Length() = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestDurationStringDecodesNumbers(t *testing.T) {
	// A YAML number for an interval decodes, so that Validate can name the
	// field and the missing unit instead of the whole document failing.
	docs, err := Decode([]byte("apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\nspec:\n  metrics:\n  - name: m\n    interval: 30\n    provider: {web: {url: 'http://w'}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	errs := docs[0].Object.Validate()
	want := `spec.metrics[0].interval: Invalid value: "30": duration "30" has no unit; want e.g. 30s`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Errorf("Validate() = %v, want [%s]", errs, want)
	}
}
