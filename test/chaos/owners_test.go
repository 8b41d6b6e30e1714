package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/test/chaos/invariants"
	"github.com/sluicehq/sluice/test/systest"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

// ownerPartitions is --partitions of TestOwnersPausedAndKilledMidDecision.
const ownerPartitions = 8

// TestOwnersPausedAndKilledMidDecision runs two orchestrators with one
// owner per rollout (--partitions 8, --owner-ttl 2s), the first alone at
// the start so that it owns every partition, the second as a standby.
// While a wave of updates is being decided:
//
//  1. the owner is paused (SIGSTOP, as a long GC pause or a frozen VM): it
//     keeps its decisions in hand and stops pulling; the standby takes
//     every partition once the pins expire and decides on; the paused one
//     is then resumed, and goes on with the decisions it held, on records
//     it still believes it owns. Two replicas believe they own the same
//     rollouts: the compare-and-swap must fence the stale one.
//  2. in the next wave the new owner is SIGKILLed (and kept down): the
//     first takes back every partition the new owner held (by then it
//     has been given back some by rebalancing, docs/orchestrator.md).
//
// The invariants of the chaos suite must hold: no violation. The
// take-over times (from the pause or kill until another replica holds
// the partition's pin) are logged, not asserted: they are PinnedTTL plus
// up to the pull expiry, on a loaded machine more.
func TestOwnersPausedAndKilledMidDecision(t *testing.T) {
	nats := systest.StartBus(t)
	dp, err := dataplane.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	prom := systest.StartPrometheus(t)
	logDir := t.TempDir()
	sys := systest.Start(t, systest.Spec{
		NATS: nats.URL, DataPlane: dp.URL(), LogDir: logDir, Replicas: 2,
		Orchestrator: []string{"--partitions", fmt.Sprint(ownerPartitions), "--owner-ttl", "2s"},
		Held:         []string{"orchestrator-2"},
	})
	defer func() {
		if t.Failed() {
			t.Logf("process logs (%s):\n%s", logDir, sys.LogTails(15))
		}
	}()
	first, second := sys.Proc("orchestrator-1"), sys.Proc("orchestrator-2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := events.Connect(ctx, events.ConnConfig{URLs: []string{nats.URL}, Name: "owners-suite"}, events.WithLogger(systest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	js := client.JetStream()
	poll.True(t, "every service but orchestrator-2 ready", func() bool {
		for _, p := range sys.Procs {
			if p != second && !p.Ready() {
				return false
			}
		}
		return true
	}, poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))

	for name, body := range templates(prom) {
		publish(t, client, events.Ref{Namespace: namespace, Name: name}, events.TypeAnalysisTemplateApply, body)
	}
	kv, err := js.KeyValue(ctx, orchestrator.BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	watch := followStates(ctx, t, kv)
	var rollouts []rollout
	for _, c := range classes[:2] { // good and slow: both go Healthy
		for i := range 6 {
			rollouts = append(rollouts, rollout{ref: events.Ref{Namespace: namespace, Name: fmt.Sprintf("own-%s-%d", c.name, i)}, class: c})
		}
	}
	live := make([]events.Ref, len(rollouts))
	for i, r := range rollouts {
		publish(t, client, r.ref, events.TypeRolloutRequested, manifest(r.ref.Name, r.class, "app:v1"))
		live[i] = r.ref
	}
	watch.waitLive(t, live, 2*time.Minute)
	const waves = 2
	expect := map[events.Ref]invariants.Expectation{}
	for _, r := range rollouts {
		st, _ := watch.state(r.ref)
		expect[r.ref] = invariants.Expectation{Phase: r.class.outcome, Revisions: 1 + waves, StableHash: st.StableHash}
	}
	watch.expect(expect)

	// The standby pulls every partition once it is ready.
	sys.Release(second)
	poll.True(t, "orchestrator-2 ready", second.Ready, poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))
	poll.Until(t, "both orchestrators pulling every partition", func() error {
		for p := range ownerPartitions {
			info, err := partitionInfo(ctx, js, p)
			if err != nil {
				return err
			}
			if info.NumWaiting < 2 {
				return fmt.Errorf("partition %d: %d pulls waiting", p, info.NumWaiting)
			}
		}
		return nil
	}, poll.Timeout(time.Minute))

	// wave requests the next revision of every rollout and returns once
	// decisions on it are under way: a state write of the wave was seen.
	wave := func(n int) {
		before := len(watch.writes())
		for _, r := range rollouts {
			publish(t, client, r.ref, events.TypeRolloutRequested, manifest(r.ref.Name, r.class, fmt.Sprintf("app:v%d", n)))
		}
		poll.Until(t, fmt.Sprintf("wave %d being decided", n), func() error {
			if len(watch.writes()) == before {
				return fmt.Errorf("no state write yet")
			}
			return nil
		}, poll.Every(5*time.Millisecond))
	}

	// 1. The owner paused mid-wave: the standby takes over, then both
	// believe they own every rollout.
	pins := currentPins(ctx, t, js)
	wave(2)
	if !sys.Pause(first) {
		t.Fatal("orchestrator-1 was not running")
	}
	paused := time.Now()
	logTakeOver(ctx, t, js, "orchestrator-1 paused (SIGSTOP)", pins, paused)
	// The new owner decides on (or the wave is over) before the old one
	// comes back with what it held.
	writes := len(watch.writes())
	poll.True(t, "the new owner deciding", func() bool {
		return len(watch.writes()) > writes
	}, poll.Timeout(time.Minute), poll.Every(20*time.Millisecond))
	if !sys.Resume(first) {
		t.Fatal("orchestrator-1 could not be resumed")
	}
	t.Logf("orchestrator-1 resumed after %s", time.Since(paused).Round(time.Millisecond))

	// 2. The new owner SIGKILLed mid-wave and kept down.
	poll.Until(t, "every rollout healthy at revision 2 after the pause", func() error {
		for _, r := range rollouts {
			if st, ok := watch.state(r.ref); !ok || st.Revision != 2 || st.Phase != "Healthy" {
				return fmt.Errorf("%s: %s at revision %d", r.ref, st.Phase, st.Revision)
			}
		}
		return nil
	}, poll.Timeout(2*time.Minute), poll.Every(200*time.Millisecond))
	pins = currentPins(ctx, t, js)
	wave(3)
	sys.Hold(second)
	killed := time.Now()
	logTakeOver(ctx, t, js, "orchestrator-2 killed (SIGKILL)", pins, killed)
	if err := poll.Wait("every rollout to settle", func() error {
		if n := watch.settledCount(); n != len(rollouts) {
			return fmt.Errorf("%d of %d settled", n, len(rollouts))
		}
		return nil
	}, poll.Timeout(2*time.Minute), poll.Every(200*time.Millisecond)); err != nil {
		t.Log(err)
	}
	t.Logf("every rollout settled %s after the kill", time.Since(killed).Round(time.Millisecond))
	t.Logf("orchestrator-1 (paused, then resumed): %s", ownerMetrics(first))

	h := collectHistory(ctx, t, js, expect, watch, dp, time.Now(), 2*time.Minute)
	violations := invariants.Check(h)
	t.Logf("status events: %d, state writes seen: %d, invariant violations: %d", len(h.Status), len(h.Writes), len(violations))
	for _, v := range violations {
		t.Error(v)
	}
}

// partitionInfo is partition p's consumer's info, read now.
func partitionInfo(ctx context.Context, js jetstream.JetStream, p int) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, orchestrator.StreamOwners, orchestrator.DurablePartition(p))
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// pinOf is the pin of a consumer, empty when none.
func pinOf(info *jetstream.ConsumerInfo) string {
	for _, g := range info.PriorityGroups {
		return g.PinnedClientID
	}
	return ""
}

// currentPins are the pins of every partition, empty for one that is
// not pinned: the server pins a partition when it delivers a message of
// it, and a partition none of the rollouts falls in has none.
func currentPins(ctx context.Context, t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	pins := make([]string, ownerPartitions)
	poll.Until(t, "the partitions' pins", func() error {
		for p := range pins {
			info, err := partitionInfo(ctx, js, p)
			if err != nil {
				return err
			}
			pins[p] = pinOf(info)
		}
		return nil
	}, poll.Timeout(time.Minute))
	return pins
}

// logTakeOver waits until no partition is pinned as in pins to the
// stopped or killed owner, and logs when each changed, counted from
// since. Rebalancing gives a replica some partitions of the one that
// held them all, so the other replica may hold some of pins: a pin the
// server still has ownerLive after since was renewed by a live puller (a
// stopped one's expires after the owner TTL, 2 s), and is counted as the
// other replica's. At least one partition must leave the old owner.
func logTakeOver(ctx context.Context, t *testing.T, js jetstream.JetStream, what string, pins []string, since time.Time) {
	t.Helper()
	took := make([]time.Duration, len(pins))
	kept := 0
	poll.Until(t, "another orchestrator pinned to every partition after "+what, func() error {
		waiting := 0
		kept = 0
		for p, old := range pins {
			if took[p] != 0 || old == "" {
				continue
			}
			info, err := partitionInfo(ctx, js, p)
			if err != nil {
				return err
			}
			// A partition with no message since is unpinned (free for
			// the first pull that a message finds) rather than pinned
			// anew.
			if pinOf(info) != old {
				took[p] = time.Since(since)
				continue
			}
			if time.Since(since) > ownerLive {
				kept++
				continue
			}
			waiting++
		}
		if waiting > 0 {
			return fmt.Errorf("%d partitions still pinned to the old owner", waiting)
		}
		return nil
	}, poll.Timeout(time.Minute), poll.Every(20*time.Millisecond))
	var (
		lo, hi time.Duration
		n      int
	)
	for _, d := range took {
		if d == 0 {
			continue
		}
		if n == 0 || d < lo {
			lo = d
		}
		hi, n = max(hi, d), n+1
	}
	if n == 0 {
		t.Fatalf("%s: no partition left the old owner, so no take-over was seen", what)
	}
	t.Logf("%s: each of the %d partitions of the old owner left it %s to %s later (owner TTL 2s, pull expiry 1s); %d stayed with the other replica", what, n, lo.Round(time.Millisecond), hi.Round(time.Millisecond), kept)
}

// ownerLive is how long after an owner stopped a pin it held surely
// expired: three owner TTLs.
const ownerLive = 6 * time.Second

// ownerMetrics are an orchestrator's counts of lost writes, decisions
// made again on a stale record, and partitions pinned anew.
func ownerMetrics(p *systest.Proc) string {
	resp, err := http.Get(p.URL("/metrics"))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		for _, m := range []string{"sluice_orchestrator_cas_conflicts_total", `sluice_orchestrator_state_reads_total{reason="stale"}`, "sluice_orchestrator_pin_changes_total"} {
			if strings.HasPrefix(line, m+" ") {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "; ")
}
