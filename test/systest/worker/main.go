// Command worker is the fault-injection suite's worker process: the real
// replicas or traffic service (--service) on the suite's data plane
// (package dataplane), which can kill itself with SIGKILL just before an
// effect (--crash-before) or just after it, before the result is published
// and the task acknowledged (--crash-after), and can be slow (--slow).
// It is built and run by test/systest for the fault-injection suite
// (test/chaos) and the process benchmarks (test/bench).
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

func main() {
	os.Exit(daemon.Main(newSpec(), os.Args[1:], os.Stderr))
}

type options struct {
	service     string
	dataPlane   string
	name        string
	crashBefore float64
	crashAfter  float64
	slow        float64
	slowMax     time.Duration
}

func newSpec() daemon.Spec {
	var o options
	return daemon.Spec{
		Name: "chaos-worker",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&o.service, "service", "", "replicas or traffic")
			fs.StringVar(&o.dataPlane, "data-plane", "", "the data plane's URL")
			fs.StringVar(&o.name, "name", "", "this worker's name in the data plane's records")
			fs.Float64Var(&o.crashBefore, "crash-before", 0, "probability of SIGKILL just before an effect")
			fs.Float64Var(&o.crashAfter, "crash-after", 0, "probability of SIGKILL just after an effect, before its result is published")
			fs.Float64Var(&o.slow, "slow", 0, "probability that an effect is delayed")
			fs.DurationVar(&o.slowMax, "slow-max", 2*time.Second, "longest delay of a slow effect")
		},
		Build: func(env daemon.Env) (daemon.Service, error) {
			if o.dataPlane == "" {
				return nil, fmt.Errorf("--data-plane is required")
			}
			c := &dataplane.Client{URL: o.dataPlane, Worker: o.name}
			c.Before = func() {
				if rand.Float64() < o.slow {
					c.ReportFault("slow")
					time.Sleep(rand.N(o.slowMax))
				}
				crash(c, o.crashBefore, "before-effect")
			}
			c.After = func() { crash(c, o.crashAfter, "after-effect") }
			switch o.service {
			case "replicas":
				return replicas.New(env.Client, dataplane.Backend{Client: c}, replicas.Config{Bus: env.Bus, Logger: env.Log, ID: o.name, Clock: env.BusClock("replicas", clock.BusConfig{})})
			case "traffic":
				return traffic.New(env.Client, dataplane.Router{Client: c}, traffic.Config{Bus: env.Bus, Logger: env.Log, ID: o.name})
			}
			return nil, fmt.Errorf("--service %q: want replicas or traffic", o.service)
		},
	}
}

// crash kills the process with probability p, after telling the data plane.
func crash(c *dataplane.Client, p float64, point string) {
	if rand.Float64() >= p {
		return
	}
	c.ReportFault(point)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
