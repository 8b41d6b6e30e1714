package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/test/chaos/invariants"
	"github.com/sluicehq/sluice/test/systest"
)

// quorumPause is the timed pause of TestClusteredBusLosesItsQuorum's timed
// canary: long enough to begin before the outage and end during it.
const quorumPause = 20 * time.Second

// timedManifest is a canary through a router that waits d at 20%, then
// goes to 60% and completes.
func timedManifest(name, image string, d time.Duration) string {
	return fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
  "metadata": {"name": %q, "namespace": %q},
  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": %[1]q}},
    "template": {"metadata": {"labels": {"app": %[1]q}}, "spec": {"containers": [{"name": "app", "image": %[3]q}]}},
    "strategy": {"canary": {"stableService": "stable", "canaryService": "canary", "trafficRouting": {"smi": {}},
      "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1,
      "steps": [{"setWeight": 20}, {"pause": {"duration": %[4]q}}, {"setWeight": 60}]}}}}`, name, namespace, image, d.String())
}

// TestClusteredBusLosesItsQuorum fills the store volumes of two of the
// three nodes at once: nats-server shuts JetStream down on both, and no
// stream, bucket or consumer has a quorum; every write waits. Before the
// outage one canary's promote is stored while the workers are down (it is
// decided, its tasks wait), and another canary begins a timed pause that
// ends during the outage. During it:
//   - the workers start again and must wait for the bus, not exit; no
//     running service may exit either, and every one must say on /readyz
//     that it waits for a JetStream leader;
//   - `sluice promote` and `sluice abort --no-wait` of a third canary,
//     and a publish through events.Client with a deadline, must fail
//     saying that no stream leader took the command and that nothing was
//     stored, not a bare "context deadline exceeded", and none of them
//     may be stored later.
//
// Then the filler files are deleted and the two nodes restarted: the
// promote stored before the outage completes its canary, the timed pause
// ends and its canary completes, the third canary waits at its pause
// until it is promoted again, and the six invariants hold. How long
// recovery took is logged (docs/reliability.md records it).
func TestClusteredBusLosesItsQuorum(t *testing.T) {
	b := startClusteredBusOn(t, systest.ClusterSpec{StoreSize: diskStoreSize})
	before := events.Ref{Namespace: namespace, Name: "quorum-before"}
	during := events.Ref{Namespace: namespace, Name: "quorum-during"}
	timed := events.Ref{Namespace: namespace, Name: "quorum-timed"}
	refs := []events.Ref{before, during, timed}
	manifest := func(r events.Ref, image string) string {
		if r == timed {
			return timedManifest(r.Name, image, quorumPause)
		}
		return pausedManifest(r.Name, image)
	}
	for _, r := range refs {
		publish(t, b.client, r, events.TypeRolloutRequested, manifest(r, "app:v1"))
	}
	b.watch.waitLive(t, refs, 2*time.Minute)
	expect := map[events.Ref]invariants.Expectation{}
	for _, r := range refs {
		st, _ := b.watch.state(r)
		expect[r] = invariants.Expectation{Phase: "Healthy", Revisions: 2, StableHash: st.StableHash}
	}
	b.watch.expect(expect)
	for _, r := range refs {
		publish(t, b.client, r, events.TypeRolloutRequested, manifest(r, "app:v2"))
	}
	poll.True(t, "every rollout paused at its canary", func() bool {
		for _, r := range refs {
			if st, ok := b.watch.state(r); !ok || st.Revision != 2 || st.Phase != "Paused" || st.Step != 1 {
				return false
			}
		}
		return true
	}, poll.Timeout(2*time.Minute), poll.Every(50*time.Millisecond))
	st, _ := b.watch.state(timed)
	pauseEnds := st.PauseUntil
	if pauseEnds.IsZero() {
		t.Fatalf("%s paused at its timed step without an end: %+v", timed, st)
	}

	// The workers go down, and a promote is stored and decided: its
	// tasks wait for them.
	var workers []*systest.Proc
	for _, p := range b.sys.Procs {
		if p.Service == "replicas" || p.Service == "traffic" {
			workers = append(workers, p)
			b.sys.Hold(p)
		}
	}
	promoteBefore, err := events.New("/chaos", events.TypeRolloutPromote, before.String(), json.RawMessage("{}"))
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	_, err = b.client.Publish(pctx, events.CommandSubject(before), promoteBefore)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	poll.True(t, before.Name+"'s promote decided (its step left), its tasks waiting for the workers", func() bool {
		st, _ := b.watch.state(before)
		return st.Phase != "Paused"
	}, poll.Timeout(time.Minute), poll.Every(50*time.Millisecond))

	// Two of the three nodes run out of space. A write (the suite's own
	// probes, else Sluice's) makes each shut its JetStream down.
	probes := b.probeStream(t)
	survivor := b.nats.Nodes[2]
	full := b.nats.Nodes[:2]
	var releases []func() error
	for _, n := range full {
		wrote, release, err := n.FillStore()
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
		t.Logf("filled %s's store with %d MiB", n.Name, wrote>>20)
	}
	filled := time.Now()
	poll.Until(t, "JetStream shut down for lack of space on "+full[0].Name+" and "+full[1].Name, func() error {
		probes()
		for _, n := range full {
			if why := n.Healthy(); !strings.Contains(why, "JetStream not enabled") {
				return fmt.Errorf("%s's /healthz says %q", n.Name, why)
			}
		}
		return nil
	}, poll.Timeout(time.Minute), poll.Every(250*time.Millisecond))
	lost := time.Now()
	t.Logf("JetStream down on %s and %s %s after the fill; %s's /healthz: %q", full[0].Name, full[1].Name,
		lost.Sub(filled).Round(10*time.Millisecond), survivor.Name, survivor.Healthy())
	// The survivor stays the leader of what it led until it notices the
	// lost quorum (nats-server: 10 s without its peers); a publish it takes
	// meanwhile is not acknowledged, but may be committed once the peers
	// are back. From then on no stream has a leader.
	poll.Until(t, "no leader of "+events.StreamCommands, func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
		defer cancel()
		if n, err := b.nats.Leader(ctx, events.StreamCommands); err == nil {
			return fmt.Errorf("%s still leads it", n.Name)
		}
		return nil
	}, poll.Timeout(time.Minute), poll.Every(250*time.Millisecond))
	t.Logf("%s without a leader %s after the fill", events.StreamCommands, time.Since(filled).Round(10*time.Millisecond))

	// The workers start again during the outage: they must wait for the
	// bus, and say so.
	starts := map[*systest.Proc]int{}
	for _, p := range b.sys.Procs {
		starts[p] = p.Starts()
	}
	for _, p := range workers {
		b.sys.Release(p)
	}

	// Commands sent now are refused by the bus, and must be said to be.
	cli := testbin.Path(t, "sluice")
	sluice := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
		defer cancel()
		args = append(args, "-n", namespace, "--nats-url", b.nats.ClientURLs())
		sent := time.Now()
		out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
		code := 0
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			code = exit.ExitCode()
		case err != nil:
			t.Fatalf("sluice %s: %v", strings.Join(args, " "), err)
		}
		t.Logf("sluice %s, during the outage: exit %d after %s: %s", strings.Join(args[:2], " "), code, time.Since(sent).Round(10*time.Millisecond), strings.TrimSpace(string(out)))
		return string(out), code
	}
	for _, args := range [][]string{{"promote", during.Name, "--timeout", "5s"}, {"abort", during.Name, "--no-wait", "--timeout", "5s"}} {
		out, code := sluice(args...)
		if code != 1 {
			t.Errorf("sluice %s with no quorum: exit %d, want 1", args[0], code)
		}
		if !strings.Contains(out, "no JetStream leader") || !strings.Contains(out, "will not act") {
			t.Errorf("sluice %s with no quorum says %q: want it to say the bus has no leader and the command was not stored", args[0], strings.TrimSpace(out))
		}
	}
	abort, err := events.New("/chaos", events.TypeRolloutAbort, during.String(), json.RawMessage("{}"))
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel = context.WithTimeout(b.ctx, 5*time.Second)
	_, err = b.client.Publish(pctx, events.CommandSubject(during), abort)
	cancel()
	t.Logf("events.Client.Publish, during the outage: %v", err)
	if !errors.Is(err, events.ErrPublish) || !errors.Is(err, events.ErrNotStored) {
		t.Errorf("publish with no quorum: %v; want an error wrapping ErrPublish and ErrNotStored", err)
	}

	// Every service, the workers started during the outage and the
	// others running through it, says on /readyz that it waits.
	poll.Until(t, "every service saying on /readyz that it waits for a JetStream leader", func() error {
		for _, p := range b.sys.Procs {
			if why := p.NotReady(); !strings.Contains(why, "no JetStream leader") {
				return fmt.Errorf("%s: /readyz says %q", p.Name, why)
			}
		}
		return nil
	}, poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))
	for _, p := range b.sys.Procs {
		t.Logf("%s during the outage: /readyz %q", p.Name, p.NotReady())
	}
	// The outage lasts until the timed pause has ended by the suite's
	// clock too.
	if lost.After(pauseEnds) {
		t.Logf("the timed pause ended %s before the quorum was lost: it did not end during the outage", lost.Sub(pauseEnds).Round(10*time.Millisecond))
	}
	hold(b.ctx, time.Until(pauseEnds.Add(2*time.Second)))
	for _, p := range b.sys.Procs {
		want := starts[p]
		if slices.Contains(workers, p) {
			want++ // released during the outage
		}
		if n := p.Starts(); n != want {
			t.Errorf("%s started %d times during the outage, want %d: it exits while the bus has no quorum", p.Name, n-starts[p], want-starts[p])
		}
	}
	for _, r := range refs {
		st, _ := b.watch.state(r)
		t.Logf("%s at the end of the outage: revision %d, phase %s, step %d", r, st.Revision, st.Phase, st.Step)
	}

	// Space is freed and the two nodes restarted: everything recovers
	// without a hand.
	outage := time.Since(lost)
	for i, n := range full {
		if err := releases[i](); err != nil {
			t.Fatal(err)
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	restarted := time.Now()
	b.nats.WaitHealthy(t, 2*time.Minute)
	healthy := time.Since(restarted)
	doneBefore := b.waitStatus(t, before, events.TypeRolloutCompleted, 2, before.Name+" completed by the promote stored before the outage")
	doneTimed := b.waitStatus(t, timed, events.TypeRolloutCompleted, 2, timed.Name+" completed after its pause")
	poll.True(t, "every service ready", b.sys.Ready, poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))
	ready := time.Since(restarted)

	// Nothing sent during the outage was stored: the third canary is
	// still paused, and its command stream holds no promote or abort.
	if st, _ := b.watch.state(during); st.Phase != "Paused" || st.Revision != 2 {
		t.Errorf("%s after the outage: revision %d, phase %s: a command reported not stored acted", during, st.Revision, st.Phase)
	}
	if ids := b.commandsOf(t, during, events.TypeRolloutPromote, events.TypeRolloutAbort); len(ids) > 0 {
		t.Errorf("%s's commands stream holds %v: a command reported not stored was stored", during, ids)
	}
	publishRetrying(b.ctx, t, b.client, during, events.TypeRolloutPromote, "{}")
	b.waitStatus(t, during, events.TypeRolloutCompleted, 2, during.Name+" completed by a promote after the outage")
	t.Logf("quorum lost for %s: nodes healthy %s after their restart; %s completed %s and %s %s after it; every service ready after %s",
		outage.Round(10*time.Millisecond), healthy.Round(10*time.Millisecond), before.Name, doneBefore.Sub(restarted).Round(10*time.Millisecond),
		timed.Name, doneTimed.Sub(restarted).Round(10*time.Millisecond), ready.Round(10*time.Millisecond))
	b.check(t, expect, restarted, time.Minute)
}

// probeStream creates an R3 stream of the suite's own and returns a
// function that publishes one probe to it, ignoring the outcome: each
// write is one more a node out of space fails on.
func (b *clusteredBus) probeStream(t *testing.T) func() {
	t.Helper()
	js := b.client.JetStream()
	poll.Until(t, "the probe stream", func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "QUORUM_PROBES", Subjects: []string{"quorum.probes"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	}, poll.Timeout(time.Minute))
	return func() {
		ctx, cancel := context.WithTimeout(b.ctx, 200*time.Millisecond)
		defer cancel()
		_, _ = js.Publish(ctx, "quorum.probes", []byte("probe"))
	}
}

// commandsOf returns the ids of r's commands of the given types on the
// commands stream.
func (b *clusteredBus) commandsOf(t *testing.T, r events.Ref, types ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	var ids []string
	for _, m := range streamMessages(ctx, t, b.client.JetStream(), events.StreamCommands) {
		if m.Subject != events.CommandSubject(r) {
			continue
		}
		ev, err := events.Decode(m.Data, m.Header)
		if err != nil {
			continue
		}
		for _, typ := range types {
			if ev.Type() == typ {
				ids = append(ids, ev.ID())
			}
		}
	}
	return ids
}
