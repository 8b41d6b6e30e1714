package assembly

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/clock"
)

// The services that keep the bus's time take --clock-max-uncertainty
// (sluice dev once for both); a bound nothing could meet is a usage
// error, not the default put silently in its place.
func TestClockMaxUncertaintyFlag(t *testing.T) {
	for _, tc := range []struct {
		name     string
		services []string
		args     []string
		want     time.Duration
		wantErr  string
	}{
		{name: "default", services: []string{Orchestrator}, want: clock.DefaultMaxUncertainty},
		{name: "orchestrator", services: []string{Orchestrator}, args: []string{"--clock-max-uncertainty", "2s"}, want: 2 * time.Second},
		{name: "analyzer", services: []string{Analyzer}, args: []string{"--clock-max-uncertainty", "600ms"}, want: 600 * time.Millisecond},
		{name: "replicas", services: []string{Replicas}, args: []string{"--clock-max-uncertainty", "750ms"}, want: 750 * time.Millisecond},
		{name: "all three, as sluice dev", services: []string{Orchestrator, Analyzer, Replicas}, args: []string{"--clock-max-uncertainty", "1s"}, want: time.Second},
		{name: "zero", services: []string{Orchestrator}, args: []string{"--clock-max-uncertainty", "0"}, wantErr: "must be positive"},
		{name: "negative", services: []string{Analyzer}, args: []string{"--clock-max-uncertainty", "-1s"}, wantErr: "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions(func(string) string { return "" })
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			for _, s := range tc.services {
				o.AddFlags(s, fs)
			}
			err := fs.Parse(tc.args)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "clock-max-uncertainty") {
					t.Fatalf("Parse: %v, want an error naming the flag and saying %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case o.ClockMaxUncertainty != tc.want:
				t.Errorf("--clock-max-uncertainty = %s, want %s", o.ClockMaxUncertainty, tc.want)
			}
		})
	}
	for _, s := range []string{Traffic, Gateway, Notifier} {
		fs := pflag.NewFlagSet(s, pflag.ContinueOnError)
		NewOptions(func(string) string { return "" }).AddFlags(s, fs)
		if fs.Lookup(FlagClockMaxUncertainty) != nil {
			t.Errorf("%s keeps no bus clock but takes --%s", s, FlagClockMaxUncertainty)
		}
	}
}
