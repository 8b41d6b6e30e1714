package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/test/chaos/invariants"
	"github.com/sluicehq/sluice/test/systest"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

// linkDelays are the one-way delays of the services' links to the bus,
// one update wave each: none, a distant region's, and a round trip of a
// second. The last one once stalled every rollout at its first step: the
// replicas service's pending-task creates did not fit their write attempt
// and were reported as conflicts (internal/records,
// TestUpdateOverASlowLink; docs/reliability.md, "Slow links").
var linkDelays = []time.Duration{0, 200 * time.Millisecond, 500 * time.Millisecond}

// TestSlowLinksToTheBus runs two of every service on a three-node
// JetStream cluster (R3) through a delaying proxy per node
// (systest.DelayProxy: the CI kernel has no netem), and updates six
// canaries (four that complete, two aborted at their indefinite pause)
// once per delay of linkDelays, each way, on every service's every
// connection. The cluster does not advertise its nodes' URLs, so a
// reconnect cannot go around the proxies. Every update must reach its end
// within the bound, and the invariants (test/chaos/invariants) must hold
// over the whole history. The time each wave took is logged, not
// asserted (docs/reliability.md).
func TestSlowLinksToTheBus(t *testing.T) {
	logDir := t.TempDir()
	if d := os.Getenv("SLUICE_CHAOS_LOGS"); d != "" {
		logDir = d
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const bound = 3 * time.Minute
	cluster := systest.StartNATSCluster(t, systest.ClusterSpec{NoAdvertise: true})
	cluster.WaitHealthy(t, 2*time.Minute)
	var proxies []*systest.DelayProxy
	var urls []string
	for _, n := range cluster.Nodes {
		p := systest.StartDelayProxy(t, net.JoinHostPort(n.Host, strconv.Itoa(n.Port)))
		proxies = append(proxies, p)
		urls = append(urls, "nats://"+p.Addr())
	}
	setDelay := func(d time.Duration) {
		for _, p := range proxies {
			p.SetDelay(d)
		}
	}
	dp, err := dataplane.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	sys := systest.Start(t, systest.Spec{
		NATS: strings.Join(urls, ","), DataPlane: dp.URL(), LogDir: logDir, Replicas: 2, BusReplicas: 3,
		// A round trip of a second is slow, not broken: production's
		// ack wait, not the suite's 2 s, so that a message in hand is
		// not redelivered while its ack is on the way.
		AckWait:      30 * time.Second,
		Orchestrator: []string{"--task-start-timeout", "10s", "--task-max-attempts", "20"},
	})
	defer func() {
		if t.Failed() {
			t.Logf("process logs (%s):\n%s", logDir, sys.LogTails(20))
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The suite's client, an operator's, reaches the nodes directly.
	client, err := events.Connect(ctx, events.ConnConfig{URLs: strings.Split(cluster.ClientURLs(), ","), Name: "slow-links"}, events.WithLogger(systest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	js := client.JetStream()
	poll.True(t, "every service ready", sys.Ready, poll.Timeout(3*time.Minute), poll.Every(200*time.Millisecond))
	kv, err := js.KeyValue(ctx, orchestrator.BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	watch := followStates(ctx, t, kv)

	var rollouts []prollout
	for i := range 4 {
		rollouts = append(rollouts, prollout{ref: events.Ref{Namespace: namespace, Name: fmt.Sprintf("slow-good-%d", i)}})
	}
	for i := range 2 {
		rollouts = append(rollouts, prollout{ref: events.Ref{Namespace: namespace, Name: fmt.Sprintf("slow-abort-%d", i)}, abort: true})
	}
	for _, r := range rollouts {
		publish(t, client, r.ref, events.TypeRolloutRequested, partitionManifest(r.ref.Name, r.abort, "app:v1"))
	}
	watch.waitLive(t, refsOf(rollouts), 3*time.Minute)
	expect := expectWaves(rollouts, len(linkDelays))
	watch.expect(expect)

	var (
		took []string
		last time.Time
	)
	for w, d := range linkDelays {
		wave := int64(w + 2)
		setDelay(d)
		start := time.Now()
		aborts := requestWave(ctx, t, client, watch, rollouts, wave, bound)
		aborts.Wait()
		poll.Until(t, fmt.Sprintf("every rollout settled at revision %d with %s each way", wave, d), func() error {
			return unsettled(watch, rollouts, wave)
		}, poll.Timeout(bound), poll.Every(100*time.Millisecond))
		last = time.Now()
		took = append(took, fmt.Sprintf("%s each way: every update settled %s after the requests", d, last.Sub(start).Round(10*time.Millisecond)))
	}
	setDelay(0)

	h := collectHistory(ctx, t, js, expect, watch, dp, last, bound)
	violations := invariants.Check(h)
	var b strings.Builder
	fmt.Fprintf(&b, "slow links: %d rollouts (4 good, 2 aborted each update), one update per delay\n", len(rollouts))
	for _, s := range took {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	fmt.Fprintf(&b, "data plane calls: %d; status events: %d; state writes seen: %d; dead letters: %d\n", len(h.Calls), len(h.Status), len(h.Writes), len(h.DeadLetters))
	fmt.Fprintf(&b, "invariant violations: %d\n", len(violations))
	t.Log("\n" + b.String())
	for _, v := range violations {
		t.Error(v)
	}
}

// farDelay is the one-way delay of TestAServiceFarFromItsBus: a round
// trip of 800 ms, so the bus's time is known within 400 ms at best, over
// the default bound of 250 ms.
const farDelay = 400 * time.Millisecond

// TestAServiceFarFromItsBus starts an orchestrator and an analyzer, the
// services that keep the bus's time (internal/clock), 400 ms each way
// from their bus (systest.DelayProxy in front of a real NATS server).
// With the default --clock-max-uncertainty they stay not ready, and
// /readyz says why and names the flag; the same binaries with the flag
// at 2s become ready, and their sluice_clock_uncertainty_seconds gauges
// show the 400 ms they accepted. Before the flag, both stayed not ready
// with nothing to act on (docs/reliability.md, "Slow links").
func TestAServiceFarFromItsBus(t *testing.T) {
	bus := systest.StartBus(t)
	proxy := systest.StartDelayProxy(t, strings.TrimPrefix(bus.URL, "nats://"))
	proxy.SetDelay(farDelay)
	dp, err := dataplane.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	// Only the services that keep a clock run: the workers are held.
	start := func(extra ...string) *systest.System {
		return systest.Start(t, systest.Spec{NATS: "nats://" + proxy.Addr(), DataPlane: dp.URL(), LogDir: t.TempDir(),
			Held: []string{"replicas-1", "traffic-1"}, Orchestrator: extra, Analyzer: extra})
	}
	bounded := start()
	raised := start("--clock-max-uncertainty", "2s")
	clocked := []string{"orchestrator-1", "analyzer-1"}
	defer func() {
		if t.Failed() {
			t.Logf("default bound:\n%s\nraised:\n%s", bounded.LogTails(15), raised.LogTails(15))
		}
	}()

	begun := time.Now()
	for _, name := range clocked {
		p := raised.Proc(name)
		poll.True(t, name+" with --clock-max-uncertainty 2s ready "+farDelay.String()+" each way from its bus", p.Ready,
			poll.Timeout(4*time.Minute), poll.Every(200*time.Millisecond))
		service := strings.TrimSuffix(name, "-1")
		unc := procMetric(t, p, "sluice_clock_uncertainty_seconds", `service="`+service+`"`)
		if unc < farDelay.Seconds() || unc > 2 {
			t.Errorf("%s: sluice_clock_uncertainty_seconds %g, want at least the %s one way and within the bound of 2s", name, unc, farDelay)
		}
		if bound := procMetric(t, p, "sluice_clock_max_uncertainty_seconds", `service="`+service+`"`); bound != 2 {
			t.Errorf("%s: sluice_clock_max_uncertainty_seconds %g, want the flag's 2s (the SluiceClockUncertain alert compares with it)", name, bound)
		}
		t.Logf("%s ready %s after start, clock uncertainty %.3fs", name, time.Since(begun).Round(100*time.Millisecond), unc)
	}
	for _, name := range clocked {
		p := bounded.Proc(name)
		poll.Until(t, name+" with the default bound saying why it is not ready", func() error {
			why := p.NotReady()
			for _, want := range []string{"sync the clock to the bus", "the best round trip of", "--clock-max-uncertainty is 250ms", "set --clock-max-uncertainty to"} {
				if !strings.Contains(why, want) {
					return fmt.Errorf("/readyz says %q, not %q", why, want)
				}
			}
			return nil
		}, poll.Timeout(4*time.Minute), poll.Every(200*time.Millisecond))
		t.Logf("%s: %s", name, p.NotReady())
	}
}
