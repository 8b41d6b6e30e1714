package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/test/chaos/invariants"
	"github.com/sluicehq/sluice/test/systest"
)

// diskStoreSize is each node's store volume in TestClusteredBusDiskFills:
// room for the suite's streams many times over, little RAM when filled.
const diskStoreSize = 64 << 20

// TestClusteredBusDiskFills runs the clustered bus with each node's store
// on a volume of its own, takes two canaries to an indefinite pause, and
// fills the volume of the node leading the orchestrators' state (the
// rollouts bucket) with a file, as a volume filled by something else is.
// One canary is promoted at once: nats-server shuts JetStream down on a
// node whose store ran out of space (and does not bring it back), so the
// promote rides through the election of new leaders by the two healthy
// nodes. The node is then restarted with its disk still full, as a
// supervisor would, and exits; meanwhile every service process is killed
// and must come back ready (it provisions the bus on the two nodes left),
// and the other canary is aborted.
// Both must end as asked. Then the file is deleted, the node is started
// again, and it must catch up: a current replica of every stream. The six invariants
// hold over the whole history. How long each command took is logged, not
// asserted: docs/reliability.md records it.
func TestClusteredBusDiskFills(t *testing.T) {
	b := startClusteredBusOn(t, systest.ClusterSpec{StoreSize: diskStoreSize})
	promoted := events.Ref{Namespace: namespace, Name: "disk-full-promote"}
	aborted := events.Ref{Namespace: namespace, Name: "disk-full-abort"}
	refs := []events.Ref{promoted, aborted}
	for _, r := range refs {
		publish(t, b.client, r, events.TypeRolloutRequested, pausedManifest(r.Name, "app:v1"))
	}
	b.watch.waitLive(t, refs, 2*time.Minute)
	expect := map[events.Ref]invariants.Expectation{}
	for _, r := range refs {
		st, _ := b.watch.state(r)
		expect[r] = invariants.Expectation{Phase: "Healthy", Revisions: 2, StableHash: st.StableHash}
	}
	expect[aborted] = invariants.Expectation{Phase: "Degraded", Revisions: 2, StableHash: expect[aborted].StableHash}
	b.watch.expect(expect)
	for _, r := range refs {
		publish(t, b.client, r, events.TypeRolloutRequested, pausedManifest(r.Name, "app:v2"))
	}
	poll.True(t, "both rollouts paused at their canary", func() bool {
		for _, r := range refs {
			if st, ok := b.watch.state(r); !ok || st.Revision != 2 || st.Phase != "Paused" || st.Step != 1 {
				return false
			}
		}
		return true
	}, poll.Timeout(2*time.Minute), poll.Every(50*time.Millisecond))

	stream := "KV_" + orchestrator.BucketRollouts
	var full *systest.NATSNode
	poll.Until(t, "the leader of "+stream, func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		var err error
		full, err = b.nats.Leader(ctx, stream)
		return err
	}, poll.Timeout(time.Minute))
	wrote, release, err := full.FillStore()
	if err != nil {
		t.Fatal(err)
	}
	filled := time.Now()
	t.Logf("filled %s's store (the leader of %s) with %d MiB", full.Name, stream, wrote>>20)
	var out atomic.Bool
	out.Store(true)
	took := b.watchLeaders(t, stream, full, &out)

	var results []string
	// command gives r cmd and waits until it has ended as end.
	command := func(r events.Ref, cmd, end, while string) time.Time {
		t.Helper()
		sent := time.Now()
		publishRetrying(b.ctx, t, b.client, r, cmd, "{}")
		acked := time.Now()
		done := b.waitStatus(t, r, end, 2, r.Name+" "+end+" at revision 2 "+while)
		ms := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
		res := fmt.Sprintf("%s %s: sent %s after the fill, acknowledged after %s, %s %s after the acknowledgement",
			strings.TrimSuffix(strings.TrimPrefix(cmd, "io.sluice.rollout."), ".v1"), while, ms(sent.Sub(filled)), ms(acked.Sub(sent)),
			strings.TrimSuffix(strings.TrimPrefix(end, "io.sluice.rollout."), ".v1"), ms(done.Sub(acked)))
		t.Log(res)
		results = append(results, res)
		return done
	}
	completedAt := command(promoted, events.TypeRolloutPromote, events.TypeRolloutCompleted, "at once")
	leaders := took()
	if leaders.stream.IsZero() || leaders.path.IsZero() {
		t.Fatalf("no node took over %s (or another stream or consumer on the rollout's path) from %s within two minutes", stream, full.Name)
	}
	res := fmt.Sprintf("new %s leader %s after the fill, every raft group on the path led again after %s; the promoted rollout completed %s after the new %s leader",
		stream, leaders.stream.Sub(filled).Round(10*time.Millisecond), leaders.path.Sub(filled).Round(10*time.Millisecond),
		completedAt.Sub(leaders.stream).Round(10*time.Millisecond), stream)
	t.Log(res)
	results = append(results, res)

	// What the server did with the full store: at its first failed
	// write it hands the meta leadership over and shuts JetStream down on
	// that node, which stays up, a cluster peer serving no stream, until
	// it is restarted. The fault took effect, or the promote above proved
	// nothing.
	poll.Until(t, full.Name+"'s JetStream shut down for lack of space", func() error {
		if why := full.Healthy(); !strings.Contains(why, "JetStream not enabled") {
			return fmt.Errorf("its /healthz says %q", why)
		}
		return nil
	}, poll.Timeout(time.Minute))
	t.Logf("%s with its disk full: %s", full.Name, full.Healthy())

	// A supervisor (or a liveness probe on /healthz) restarts the node
	// before anyone frees space: it cannot start JetStream and exits.
	// The abort is given while it is down.
	if err := full.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := full.Start(); err != nil {
		t.Fatal(err)
	}
	poll.True(t, full.Name+", started again on its full store, to exit (nats-server cannot start JetStream without space)", func() bool {
		return !full.Running()
	}, poll.Timeout(time.Minute))
	t.Logf("%s started again on its full store: %s", full.Name, full.LogTail(1))
	// Every service process is killed and started again meanwhile, as a
	// deploy or a crash does: each must provision its streams and
	// buckets on the two nodes left and become ready.
	starts := map[*systest.Proc]int{}
	for _, p := range b.sys.Procs {
		starts[p] = p.Starts()
		b.sys.Kill(p)
	}
	killed := time.Now()
	poll.Until(t, "every service started again and ready with "+full.Name+" down on its full store", func() error {
		for _, p := range b.sys.Procs {
			if p.Starts() == starts[p] {
				return fmt.Errorf("%s not started again", p.Name)
			}
			if why := p.NotReady(); why != "" {
				return fmt.Errorf("%s not ready: %s", p.Name, why)
			}
		}
		return nil
	}, poll.Timeout(2*time.Minute), poll.Every(100*time.Millisecond))
	res = fmt.Sprintf("every service killed and ready again %s later, with %s down on its full store", time.Since(killed).Round(10*time.Millisecond), full.Name)
	t.Log(res)
	results = append(results, res)
	command(aborted, events.TypeRolloutAbort, events.TypeRolloutAborted, "with the node down on its full store")
	b.checkTrafficBack(t, aborted)

	// The operator frees space and restarts the node; it catches up.
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := full.Start(); err != nil {
		t.Fatal(err)
	}
	out.Store(false)
	restarted := time.Now()
	b.nats.WaitHealthy(t, 2*time.Minute)
	b.waitCaughtUp(t, full)
	res = fmt.Sprintf("%s healthy and a current replica of every stream %s after its restart", full.Name, time.Since(restarted).Round(10*time.Millisecond))
	t.Log(res)
	results = append(results, res)
	t.Logf("disk full:\n%s", strings.Join(results, "\n"))
	b.check(t, expect, time.Now(), time.Minute)
}

// TestPublishOutlivesALeaderPastItsStoreLimit publishes through
// events.Client to an R3 stream whose leader's store is past its limit:
// the leader refuses with JetStream error 10023 (insufficient resources)
// and steps down, and the publish must be stored by the new leader, on a
// peer with room. Before the fix Publish took 10023 for a final answer:
// `sluice promote` failed and a service's event failed its handler,
// though the stream had two nodes with room and a leader a moment later.
func TestPublishOutlivesALeaderPastItsStoreLimit(t *testing.T) {
	cluster := systest.StartNATSCluster(t, systest.ClusterSpec{StoreSize: diskStoreSize})
	cluster.WaitHealthy(t, 2*time.Minute)
	small := cluster.Nodes[0]
	limit := shrinkStoreLimit(t, cluster, small)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := events.Connect(ctx, events.ConnConfig{URLs: strings.Split(cluster.ClientURLs(), ","), Name: "store-limit"}, events.WithLogger(systest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	js := client.JetStream()
	poll.Until(t, "an R3 stream", func() error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "PROBES", Subjects: []string{"probes.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	}, poll.Timeout(time.Minute))
	// Past its limit the node sometimes steps down by itself before the
	// publish comes: the publish would not meet the refusal, so free its
	// room and try again.
	for attempt := 1; ; attempt++ {
		if err := cluster.MoveLeader(ctx, "PROBES", small); err != nil {
			t.Fatal(err)
		}
		growPast(ctx, t, cluster, js, small, limit)
		leader, err := cluster.Leader(ctx, "PROBES")
		if err == nil && leader == small {
			break
		}
		if attempt == 3 {
			t.Fatalf("%s stepped down from PROBES by itself before the publish in %d attempts (%v, %v): the publish would not meet its refusal", small.Name, attempt, leader, err)
		}
		t.Logf("%s stepped down from PROBES before the publish (%v, %v); freeing its room to try again", small.Name, leader, err)
		if err := js.DeleteStream(ctx, "BALLAST"); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, small.Name+"'s JetStream store back under its limit", func() error {
			if u := jszStorage(t, small); u.Used > u.Max {
				return fmt.Errorf("%d KiB used of %d KiB", u.Used>>10, u.Max>>10)
			}
			return nil
		}, poll.Timeout(time.Minute))
	}
	ev, err := events.New("/chaos", events.TypeRolloutPromote, "chaos/probe", json.RawMessage("{}"))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	defer pcancel()
	sent := time.Now()
	res, err := client.Publish(pctx, "probes.x", ev)
	if err != nil {
		t.Fatalf("publish to a stream whose leader is past its store limit, with two peers with room: %v", err)
	}
	took := time.Since(sent)
	// The stream's info may name no leader for a moment after the
	// handover: ask until it names one.
	var leader *systest.NATSNode
	poll.Until(t, "the new leader of PROBES", func() error {
		leader, err = cluster.Leader(ctx, "PROBES")
		return err
	}, poll.Timeout(time.Minute))
	if leader == small {
		t.Errorf("%s still leads PROBES past its store limit", small.Name)
	}
	t.Logf("stored at sequence %d by %s %s after it was sent", res.Sequence, leader.Name, took.Round(10*time.Millisecond))
}

// shrinkStoreLimit restarts node n (its store on a volume of its own)
// with all but 8 MiB of the volume used by something else, so that its
// JetStream store limit, by default 75% of the free space at start, is
// about 6 MiB while its peers' is 48 MiB, and returns its use and limit.
func shrinkStoreLimit(t *testing.T, c *systest.NATSCluster, n *systest.NATSNode) storeUse {
	t.Helper()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.FillStoreLeaving(8 << 20); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	c.WaitHealthy(t, 2*time.Minute)
	u := jszStorage(t, n)
	t.Logf("%s's JetStream store: %d KiB used of a %d KiB limit", n.Name, u.Used>>10, u.Max>>10)
	return u
}

// growPast grows a stream of someone else's, BALLAST (R3, led by a node
// other than n), until node n's store is past its limit.
func growPast(ctx context.Context, t *testing.T, c *systest.NATSCluster, js jetstream.JetStream, n *systest.NATSNode, limit storeUse) {
	t.Helper()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BALLAST", Subjects: []string{"ballast.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	other := c.Nodes[0]
	if other == n {
		other = c.Nodes[1]
	}
	if err := c.MoveLeader(ctx, "BALLAST", other); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	for sent := int64(0); sent < limit.Max-limit.Used+(2<<20); sent += int64(len(chunk)) {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := js.Publish(pctx, "ballast.x", chunk)
		cancel()
		if err != nil {
			t.Fatalf("grow BALLAST: %v", err)
		}
	}
	poll.Until(t, n.Name+"'s JetStream store past its limit", func() error {
		if u := jszStorage(t, n); u.Used <= u.Max {
			return fmt.Errorf("%d KiB used of %d KiB", u.Used>>10, u.Max>>10)
		}
		return nil
	}, poll.Timeout(time.Minute))
}

// storeUse is a node's JetStream file store use and limit.
type storeUse struct{ Used, Max int64 }

// jszStorage reads node n's store use and limit from its /jsz.
func jszStorage(t *testing.T, n *systest.NATSNode) storeUse {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/jsz", net.JoinHostPort(n.Host, strconv.Itoa(n.MonitorPort))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jsz struct {
		Storage int64 `json:"storage"`
		Config  struct {
			MaxStorage int64 `json:"max_storage"`
		} `json:"config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		t.Fatal(err)
	}
	return storeUse{Used: jsz.Storage, Max: jsz.Config.MaxStorage}
}
