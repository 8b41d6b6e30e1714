package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/worker"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/test/chaos/invariants"
	"github.com/sluicehq/sluice/test/systest"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

// clusteredBus is the system of the clustered-bus faults: three
// nats-server processes with every stream and bucket on all three (R3,
// --bus-replicas 3), two processes of each service on the recording data
// plane, the suite's own client and a follower of the rollouts' states.
type clusteredBus struct {
	nats   *systest.NATSCluster
	dp     *dataplane.Server
	sys    *systest.System
	client *events.Client
	watch  *states
	ctx    context.Context
}

func startClusteredBus(t *testing.T) *clusteredBus {
	t.Helper()
	return startClusteredBusOn(t, systest.ClusterSpec{})
}

// startClusteredBusOn is startClusteredBus on a cluster of spec (its Dir
// is the suite's own).
func startClusteredBusOn(t *testing.T, spec systest.ClusterSpec) *clusteredBus {
	t.Helper()
	logDir := t.TempDir()
	if d := os.Getenv("SLUICE_CHAOS_LOGS"); d != "" {
		logDir = d
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv("SLUICE_CHAOS_LOGS") != "" {
		spec.Dir = filepath.Join(logDir, "nats")
	}
	b := &clusteredBus{nats: systest.StartNATSCluster(t, spec)}
	b.nats.WaitHealthy(t, 2*time.Minute)
	var err error
	if b.dp, err = dataplane.NewServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.dp.Close() })
	b.sys = systest.Start(t, systest.Spec{NATS: b.nats.ClientURLs(), DataPlane: b.dp.URL(), LogDir: logDir, Replicas: 2, BusReplicas: 3})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs (%s):\n%s", logDir, b.sys.LogTails(25))
			for _, n := range b.nats.Nodes {
				t.Logf("--- %s\n%s", n.Name, n.LogTail(15))
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b.ctx = ctx
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Minute)
	defer ccancel()
	b.client, err = events.Connect(cctx, events.ConnConfig{URLs: strings.Split(b.nats.ClientURLs(), ","), Name: "chaos-cluster"}, events.WithLogger(systest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.client.Close() })
	poll.True(t, "every service ready on the cluster", b.sys.Ready, poll.Timeout(3*time.Minute), poll.Every(100*time.Millisecond))
	var kv jetstream.KeyValue
	poll.Until(t, "the rollouts bucket open", func() error {
		kv, err = b.client.JetStream().KeyValue(ctx, orchestrator.BucketRollouts)
		return err
	}, poll.Timeout(time.Minute))
	b.watch = followStates(ctx, t, kv)
	return b
}

// pausedManifest is a canary through a router that stops at an
// indefinite pause at 20%: only a promote (or an abort) ends it.
func pausedManifest(name, image string) string {
	return fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
  "metadata": {"name": %q, "namespace": %q},
  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": %[1]q}},
    "template": {"metadata": {"labels": {"app": %[1]q}}, "spec": {"containers": [{"name": "app", "image": %[3]q}]}},
    "strategy": {"canary": {"stableService": "stable", "canaryService": "canary", "trafficRouting": {"smi": {}},
      "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1,
      "steps": [{"setWeight": 20}, {"pause": {}}]}}}}`, name, namespace, image)
}

// busFault is one fault of a node leading a stream: what it does to the
// node, and how the node comes back once the rollout has settled.
type busFault struct {
	name   string
	stream string // the stream (KV_<bucket> for a bucket) whose leader it hits
	pause  time.Duration
	// abort aborts the paused canary instead of promoting it.
	abort bool
	// wipe starts the killed node again at once on an empty store.
	wipe bool
}

// busFaults are the leader faults: SIGKILL of the leader of the command
// stream, the rollouts bucket and the results stream, each under a
// promote; SIGSTOP of the command stream's leader under a promote and of
// the rollouts bucket's under an abort, each for 8 s; and the task
// stream's leader killed and started again at once on a wiped store, under
// a promote (issue 21).
var busFaults = []busFault{
	{name: "kill-commands", stream: events.StreamCommands},
	{name: "kill-rollouts-kv", stream: "KV_" + orchestrator.BucketRollouts},
	{name: "kill-results", stream: events.StreamResults},
	{name: "pause-commands", stream: events.StreamCommands, pause: 8 * time.Second},
	{name: "pause-rollouts-kv-abort", stream: "KV_" + orchestrator.BucketRollouts, pause: 8 * time.Second, abort: true},
	{name: "wipe-tasks", stream: events.StreamTasks, wipe: true},
}

// TestClusteredBusLosesItsLeader takes canaries to an indefinite pause on
// a three-node JetStream cluster, then kills (SIGKILL) or pauses
// (SIGSTOP, 8 s) the node leading a stream the next step needs, and
// promotes or aborts: the command is answered, the rollout ends as asked,
// and the six invariants hold over the whole history. How long the
// rollout took after the new leader took over is logged, not asserted:
// docs/reliability.md records it.
func TestClusteredBusLosesItsLeader(t *testing.T) {
	b := startClusteredBus(t)
	refs := map[string]events.Ref{}
	for _, f := range busFaults {
		r := events.Ref{Namespace: namespace, Name: f.name}
		refs[f.name] = r
		publish(t, b.client, r, events.TypeRolloutRequested, pausedManifest(r.Name, "app:v1"))
	}
	b.watch.waitLive(t, slices.Collect(maps.Values(refs)), 2*time.Minute)
	expect := map[events.Ref]invariants.Expectation{}
	for _, f := range busFaults {
		st, _ := b.watch.state(refs[f.name])
		e := invariants.Expectation{Phase: "Healthy", Revisions: 2, StableHash: st.StableHash}
		if f.abort {
			e.Phase = "Degraded"
		}
		expect[refs[f.name]] = e
	}
	b.watch.expect(expect)

	var lastCleared time.Time
	var results []string
	for _, f := range busFaults {
		ok := t.Run(f.name, func(t *testing.T) {
			res, cleared := b.leaderFault(t, f, refs[f.name])
			lastCleared = cleared
			results = append(results, fmt.Sprintf("%s: %s", f.name, res))
		})
		if !ok {
			// The rollouts after it had no fault yet: their state
			// says nothing.
			t.FailNow()
		}
	}
	t.Logf("clustered bus faults:\n%s", strings.Join(results, "\n"))
	b.check(t, expect, lastCleared, time.Minute)
}

// leaderFault injects f on the leader of f.stream while r is paused, and
// returns what it measured and when the fault cleared.
func (b *clusteredBus) leaderFault(t *testing.T, f busFault, r events.Ref) (string, time.Time) {
	publish(t, b.client, r, events.TypeRolloutRequested, pausedManifest(r.Name, "app:v2"))
	poll.True(t, r.Name+" paused at its canary", func() bool {
		st, ok := b.watch.state(r)
		return ok && st.Revision == 2 && st.Phase == "Paused" && st.Step == 1
	}, poll.Timeout(2*time.Minute), poll.Every(50*time.Millisecond))

	// Right after the last fault healed, one request may still find no
	// leader: ask until one answers.
	var leader *systest.NATSNode
	poll.Until(t, "the leader of "+f.stream, func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		var err error
		leader, err = b.nats.Leader(ctx, f.stream)
		return err
	}, poll.Timeout(time.Minute))
	var err error
	fault := "SIGKILL"
	if f.wipe {
		fault = "SIGKILL, store wiped, started again"
	}
	if f.pause > 0 {
		fault = fmt.Sprintf("SIGSTOP for %s", f.pause)
	}
	t.Logf("%s of %s, the leader of %s", fault, leader.Name, f.stream)
	faulted := time.Now()
	if f.pause > 0 {
		err = leader.Pause()
	} else {
		err = leader.Kill()
	}
	if err != nil {
		t.Fatal(err)
	}
	var out atomic.Bool
	out.Store(true)
	took := b.watchLeaders(t, f.stream, leader, &out)
	if f.wipe {
		// The node comes back at once, without its store, as a host
		// whose disk was replaced does.
		if err := leader.WipeStore(); err != nil {
			t.Fatal(err)
		}
		if err := leader.Start(); err != nil {
			t.Fatal(err)
		}
		out.Store(false)
	}

	cmd := events.TypeRolloutPromote
	if f.abort {
		cmd = events.TypeRolloutAbort
	}
	// A paused node continues after f.pause, whatever the command's
	// publish is doing.
	resumed := make(chan time.Time, 1)
	if f.pause > 0 {
		time.AfterFunc(time.Until(faulted.Add(f.pause)), func() {
			if err := leader.Resume(); err != nil {
				t.Error(err)
			}
			out.Store(false)
			resumed <- time.Now()
		})
	}
	publishRetrying(b.ctx, t, b.client, r, cmd, "{}")
	acked := time.Now()
	end := events.TypeRolloutCompleted
	if f.abort {
		end = events.TypeRolloutAborted
	}
	done := b.waitStatus(t, r, end, 2, r.Name+" "+end+" at revision 2")
	leaders := took()
	if leaders.stream.IsZero() || leaders.path.IsZero() {
		t.Fatalf("no node took over %s (or another stream or consumer on the rollout's path) from %s within two minutes: %v", f.stream, leader.Name, leaders.err)
	}
	ms := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	res := fmt.Sprintf("%s: new %s leader after %s, every raft group on the path led again after %s; command acknowledged after %s; %s %s after the new %s leader, %s after the last of them, %s after the acknowledgement",
		fault, f.stream, ms(leaders.stream.Sub(faulted)), ms(leaders.path.Sub(faulted)), ms(acked.Sub(faulted)),
		strings.TrimSuffix(strings.TrimPrefix(end, "io.sluice.rollout."), ".v1"),
		ms(done.Sub(leaders.stream)), f.stream, ms(done.Sub(leaders.path)), ms(done.Sub(acked)))
	if f.pause > 0 {
		res += fmt.Sprintf("; node resumed %s after the pause began", (<-resumed).Sub(faulted).Round(10*time.Millisecond))
	}
	t.Log(res)
	if f.abort {
		b.checkTrafficBack(t, r)
	}

	// The node comes back (or continues) and catches up before the next
	// fault.
	if !leader.Running() {
		if err := leader.Start(); err != nil {
			t.Fatal(err)
		}
	}
	b.nats.WaitHealthy(t, 2*time.Minute)
	if f.wipe {
		b.waitCaughtUp(t, leader)
	}
	return res, time.Now()
}

// leaderTimes is what watchLeaders saw: when stream first had a leader
// other than the faulted node, and when every raft group on the path of a
// promote or an abort did: the command, task, result and status streams,
// the orchestrators' rollouts bucket and the replicas workers' pending
// bucket, and the consumers of the orchestrator and the replicas and
// traffic workers, each elected apart from its stream.
type leaderTimes struct {
	stream, path time.Time
	err          error // why path is zero
}

// watchLeaders polls, through the nodes other than old, who leads stream
// and every raft group on the rollout's path until each has a leader
// other than old (or any leader, once out says old is back), and returns
// a function that waits for that and says when each was first seen (zero,
// with the groups still without a leader in err, if not within two
// minutes).
func (b *clusteredBus) watchLeaders(t *testing.T, stream string, old *systest.NATSNode, out *atomic.Bool) func() leaderTimes {
	var urls []string
	for _, n := range b.nats.Nodes {
		if n != old {
			urls = append(urls, n.ClientURL())
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	type group struct{ stream, consumer string }
	path := []group{
		{stream: stream}, {stream: events.StreamCommands}, {stream: events.StreamTasks}, {stream: events.StreamResults},
		{stream: events.StreamStatus}, {stream: "KV_" + orchestrator.BucketRollouts}, {stream: "KV_" + replicas.BucketPending},
		{events.StreamCommands, orchestrator.DurableCommands}, {events.StreamResults, orchestrator.DurableResults},
		{events.StreamTasks, worker.Durable(tasks.ServiceReplicas)}, {events.StreamTasks, worker.Durable(tasks.ServiceTraffic)},
	}
	led := func(ctx context.Context, g group) bool {
		var c *jetstream.ClusterInfo
		if g.consumer == "" {
			s, err := js.Stream(ctx, g.stream)
			if err != nil {
				return false
			}
			c = s.CachedInfo().Cluster
		} else {
			cons, err := js.Consumer(ctx, g.stream, g.consumer)
			if err != nil {
				return false
			}
			c = cons.CachedInfo().Cluster
		}
		// A node that is back (resumed, or started again) may lead
		// again.
		return c != nil && c.Leader != "" && (c.Leader != old.Name || !out.Load())
	}
	var seen leaderTimes
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer nc.Close()
		// poll.Wait rather than poll.Until: this goroutine is not the
		// test's, so a timeout is kept for the caller to report.
		seen.err = poll.Wait("every raft group on the path led by a node other than "+old.Name, func() error {
			ctx, cancel := context.WithTimeout(b.ctx, time.Second)
			defer cancel()
			var lagging []string
			for i, g := range path {
				ok := led(ctx, g)
				if i == 0 && ok && seen.stream.IsZero() {
					seen.stream = time.Now()
				}
				if !ok {
					lagging = append(lagging, strings.TrimSuffix(g.stream+"/"+g.consumer, "/"))
				}
			}
			if len(lagging) > 0 {
				return fmt.Errorf("no leader yet for %s", strings.Join(lagging, ", "))
			}
			seen.path = time.Now()
			return nil
		}, poll.Timeout(2*time.Minute), poll.Every(50*time.Millisecond), poll.Context(b.ctx))
	}()
	return func() leaderTimes {
		<-done
		return seen
	}
}

// waitCaughtUp waits until node n is a current replica of every stream
// of the bus (or leads it), as it is once it has caught up with what it
// lost.
func (b *clusteredBus) waitCaughtUp(t *testing.T, n *systest.NATSNode) {
	t.Helper()
	names := []string{"KV_" + orchestrator.BucketRollouts}
	for _, s := range (events.BusConfig{}).Streams() {
		names = append(names, s.Name)
	}
	poll.Until(t, n.Name+" caught up with every stream", func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		for _, name := range names {
			s, err := b.client.JetStream().Stream(ctx, name)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			c := info.Cluster
			if c == nil {
				return fmt.Errorf("%s: no cluster information", name)
			}
			if c.Leader == n.Name {
				continue
			}
			current := false
			for _, p := range c.Replicas {
				current = current || p.Name == n.Name && p.Current && p.Lag == 0
			}
			if !current {
				return fmt.Errorf("%s: %s not a current replica (leader %s)", name, n.Name, c.Leader)
			}
		}
		return nil
	}, poll.Timeout(2*time.Minute), poll.Every(250*time.Millisecond))
}

// waitStatus waits up to two minutes for r's first status event of type
// typ for revision rev (what says what the wait is for, in its failure)
// and returns when the orchestrator stamped it.
func (b *clusteredBus) waitStatus(t *testing.T, r events.Ref, typ string, rev int64, what string) time.Time {
	t.Helper()
	var done time.Time
	poll.Until(t, what, func() error {
		at, err := b.statusAt(r, typ, rev)
		if err != nil {
			st, _ := b.watch.state(r)
			return fmt.Errorf("%w (state: revision %d phase %s step %d: %s)", err, st.Revision, st.Phase, st.Step, st.Message)
		}
		done = at
		return nil
	}, poll.Timeout(2*time.Minute), poll.Every(100*time.Millisecond))
	return done
}

// statusAt returns when the orchestrator stamped r's first status event
// of type typ for revision rev, reading r's events from the status stream
// (a follower of the stream would add its own recovery from the leader
// change to what is measured).
func (b *clusteredBus) statusAt(r events.Ref, typ string, rev int64) (time.Time, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := b.client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return time.Time{}, err
	}
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(events.StatusSubject(r)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return time.Time{}, fmt.Errorf("no %s for revision %d among %s's status events", typ, rev, r)
		}
		if err != nil {
			return time.Time{}, err
		}
		seq = m.Sequence + 1
		ev, err := events.Decode(m.Data, m.Header)
		if err != nil {
			return time.Time{}, err
		}
		var d events.StatusData
		if err := events.DecodeData(ev, &d); err != nil {
			return time.Time{}, err
		}
		if ev.Type() == typ && d.Status.Revision == rev {
			return ev.Time(), nil
		}
	}
}

// checkTrafficBack checks that the data plane's routing of r sends the
// aborted canary nothing.
func (b *clusteredBus) checkTrafficBack(t *testing.T, r events.Ref) {
	t.Helper()
	var last *dataplane.Record
	for _, c := range b.dp.Records() {
		if c.Kind == dataplane.KindRoute && c.Ref == r && c.Outcome != dataplane.Stale && c.Route != nil {
			last = &c
		}
	}
	if last == nil {
		t.Fatalf("no route of %s reached the data plane", r)
	}
	if last.Route.CanaryWeight != 0 {
		t.Errorf("after the abort the data plane sends %d%% of %s to its canary, want 0", last.Route.CanaryWeight, r)
	}
}

// check gathers the history and checks the six invariants.
func (b *clusteredBus) check(t *testing.T, expect map[events.Ref]invariants.Expectation, cleared time.Time, bound time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if err := poll.Wait("every rollout to settle", func() error {
		if n := b.watch.settledCount(); n != len(expect) {
			return fmt.Errorf("%d of %d settled", n, len(expect))
		}
		return nil
	}, poll.Timeout(bound), poll.Every(200*time.Millisecond)); err != nil {
		t.Log(err)
	}
	js := b.client.JetStream()
	h := collectHistory(ctx, t, js, expect, b.watch, b.dp, cleared, bound)
	vs := invariants.Check(h)
	names := make([]string, 0, len(expect))
	for r := range expect {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	t.Logf("invariants checked over %d rollouts (%s), %d status events, %d data plane calls: %d violations",
		len(expect), strings.Join(names, ", "), len(h.Status), len(h.Calls), len(vs))
	for _, v := range vs {
		t.Error(v)
	}
}
