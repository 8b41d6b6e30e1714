package main

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/pkg/events"
)

// TestDevHonoursOrRefusesEveryServiceFlag: every flag of every service
// binary is a flag of sluice dev of the same type, or sluice dev refuses it
// with a reason. sluice dev registers the services' flags through the
// composition root the binaries use, so an honoured flag sets the same
// field of the same configuration.
func TestDevHonoursOrRefusesEveryServiceFlag(t *testing.T) {
	dev := newRootCmd()
	devCmd, _, err := dev.Find([]string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	var conn events.ConnConfig
	connFlags := pflag.NewFlagSet("conn", pflag.ContinueOnError)
	conn.AddFlags(connFlags)
	for _, name := range assembly.Names {
		binary := assembly.Binary(name, func(string) string { return "" })
		binary.FlagSet().VisitAll(func(f *pflag.Flag) {
			if f.Name == "version" {
				return // each binary's own; sluice dev's is `sluice --version`
			}
			why, refused := devRefused[f.Name]
			if connFlags.Lookup(f.Name) != nil {
				why, refused = devRefusedConn, true
			}
			d := devCmd.Flags().Lookup(f.Name)
			if d == nil {
				d = dev.PersistentFlags().Lookup(f.Name)
			}
			switch {
			case refused && why == "":
				t.Errorf("%s --%s: refused without a reason", binary.Name, f.Name)
			case refused:
				checkRefused(t, f.Name, why)
			case d == nil:
				t.Errorf("%s --%s: sluice dev neither takes nor refuses it", binary.Name, f.Name)
			case d.Hidden:
				t.Errorf("%s --%s: hidden in sluice dev but not refused", binary.Name, f.Name)
			case d.Value.Type() != f.Value.Type():
				t.Errorf("%s --%s: a %s, but a %s in sluice dev", binary.Name, f.Name, f.Value.Type(), d.Value.Type())
			}
		})
	}
}

// checkRefused runs sluice dev with the flag and wants a usage error that
// says why.
func checkRefused(t *testing.T, flag, why string) {
	t.Helper()
	var stderr strings.Builder
	args := []string{"dev", "--" + flag + "=" + refusedValue(flag)}
	if code := run(context.Background(), args, &strings.Builder{}, &stderr); code != exitUsage {
		t.Errorf("sluice %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
	}
	if !strings.Contains(stderr.String(), why) || !strings.Contains(stderr.String(), "--"+flag) {
		t.Errorf("sluice %s: stderr %q does not name the flag and say %q", strings.Join(args, " "), stderr.String(), why)
	}
}

func refusedValue(flag string) string {
	switch flag {
	case "router":
		return "kube"
	case "stop-on-exit":
		return "false"
	case "nats-url":
		return "nats://127.0.0.1:1"
	}
	return "x"
}

// TestDevTakesTheServiceFlags: service flags given to sluice dev reach the
// services' configuration, the ones sluice dev used to drop among them.
func TestDevTakesTheServiceFlags(t *testing.T) {
	var cfg devConfig
	fs := pflag.NewFlagSet("dev", pflag.ContinueOnError)
	cfg.addFlags(fs)
	err := fs.Parse([]string{"--platform", "kube", "--namespace", "shop", "--istio-api-version", "v1", "--smi-api-version", "v1alpha2",
		"--task-start-timeout", "5s", "--state-cache", "0", "--scale-wait", "1m", "--stop-timeout", "7s", "--log-format", "json"})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Services
	if o.Platform.Value() != "kube" || o.Namespace != "shop" || o.IstioAPIVersion != "v1" || o.SMIAPIVersion != "v1alpha2" {
		t.Errorf("kube flags not taken: %+v", o)
	}
	if o.Orchestrator.Machine.TaskStartTimeout.String() != "5s" || o.Orchestrator.StateCache >= 0 || o.Replicas.Wait.String() != "1m0s" {
		t.Errorf("service flags not taken: %+v %+v", o.Orchestrator, o.Replicas)
	}
	if cfg.Process.StopTimeout.String() != "7s" || cfg.Process.LogFormat != "json" {
		t.Errorf("process flags not taken: %+v", cfg.Process)
	}
}

// TestBadServiceFlagsAreUsageErrors: a value a service cannot use fails at
// start, naming the flag, in sluice dev as in the binaries.
func TestBadServiceFlagsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"dev", "--task-start-timeout", "-1s"},
		{"dev", "--task-max-attempts", "-2"},
		{"dev", "--state-cache", "-5"},
		{"dev", "--stop-timeout", "-1s"},
	} {
		var stderr strings.Builder
		if code := run(context.Background(), args, &strings.Builder{}, &stderr); code != exitUsage {
			t.Errorf("sluice %s: exit %d, want %d", strings.Join(args, " "), code, exitUsage)
		}
		if !strings.Contains(stderr.String(), args[1]) {
			t.Errorf("sluice %s: stderr %q does not name the flag", strings.Join(args, " "), stderr.String())
		}
	}
}
