package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
)

// Settings of BenchmarkPartitionOwnership.
const (
	ownPartitions = 8
	ownReplicas   = 3
	ownRollouts   = 300
	ownPinnedTTL  = 2 * time.Second
	ownGroup      = "owners"
	// ownPullExpiry is how long a replica's pull request waits: a replica
	// that is not pinned learns that the pin is free only when it pulls
	// again, so a take-over waits for it (nats.go's default is 30 s).
	ownPullExpiry = time.Second
)

// BenchmarkPartitionOwnership measures, with bare nats.go and nothing of
// Sluice, the mechanism the design of one owner per rollout rests on
// (docs/orchestrator.md, "One owner per rollout"): a stream that sources
// the command subjects through a subject transform that puts each rollout
// in one of 8 partitions ({{partition(8,2,3)}} on namespace and name), one
// durable consumer per partition with the pinned priority policy
// (PinnedTTL 2 s), and three "replicas", each on its own connection,
// consuming every partition (its own share first, the rest once each
// partition has a pull waiting, as a standby). It publishes 10 messages to each of 300
// rollouts and reports:
//   - owners/rollout: the most replicas that received messages of one
//     rollout (1 means one owner per rollout);
//   - max-partitions/replica: how evenly the pins spread;
//   - hop-p50-µs, hop-p99-µs: publish to delivery through the sourcing
//     stream, against direct-p50-µs, direct-p99-µs on the source stream,
//     under the burst (burst-) and then for 100 messages one at a time
//     (idle-);
//   - takeover-ms: after the replica pinned to the most partitions loses
//     its connection (as a SIGKILL does), from then until another replica
//     receives a new message of every one of those partitions.
func BenchmarkPartitionOwnership(b *testing.B) {
	for range b.N {
		partitionOwnership(b)
	}
}

func partitionOwnership(b *testing.B) {
	srv := startServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	connect := func() (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		return nc, js
	}
	_, admin := connect()
	if _, err := admin.CreateStream(ctx, jetstream.StreamConfig{Name: "CMD", Subjects: []string{"cmd.>"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.CreateStream(ctx, jetstream.StreamConfig{Name: "OWN", Sources: []*jetstream.StreamSource{{
		Name: "CMD",
		SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source:      "cmd.*.*",
			Destination: fmt.Sprintf("own.{{partition(%d,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}", ownPartitions),
		}},
	}}}); err != nil {
		b.Fatal(err)
	}
	for p := range ownPartitions {
		if _, err := admin.CreateOrUpdateConsumer(ctx, "OWN", jetstream.ConsumerConfig{
			Durable: fmt.Sprintf("own-%d", p), FilterSubject: fmt.Sprintf("own.%d.>", p), AckPolicy: jetstream.AckExplicitPolicy,
			PriorityPolicy: jetstream.PriorityPolicyPinned, PinnedTTL: ownPinnedTTL, PriorityGroups: []string{ownGroup},
		}); err != nil {
			b.Fatal(err)
		}
	}
	cmd, err := admin.CreateOrUpdateConsumer(ctx, "CMD", jetstream.ConsumerConfig{Durable: "direct", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}

	type got struct {
		replica, partition int
		rollout            string
		at                 time.Time
	}
	var (
		mu       sync.Mutex
		received []got
		sent     = map[string]time.Time{} // by message id
		// hop and direct are what the latencies go to: under a burst
		// first, then one message at a time.
		burstHop, burstDirect, idleHop, idleDirect latencies
		hop, direct                                = &burstHop, &burstDirect
	)
	// Each replica first pulls from its own share of the partitions and,
	// once every partition has a pull waiting, from all of them as a
	// standby: a partition's pin goes to the first pull waiting.
	var conns []*nats.Conn
	var streams []jetstream.JetStream
	for range ownReplicas {
		nc, js := connect()
		conns, streams = append(conns, nc), append(streams, js)
	}
	consume := func(rep, p int) {
		c, err := streams[rep].Consumer(ctx, "OWN", fmt.Sprintf("own-%d", p))
		if err != nil {
			b.Fatal(err)
		}
		cc, err := c.Consume(func(m jetstream.Msg) {
			now := time.Now()
			var rollout string
			if _, err := fmt.Sscanf(m.Subject(), "own.%d.bench.%s", new(int), &rollout); err != nil {
				b.Errorf("subject %s: %v", m.Subject(), err)
			}
			mu.Lock()
			received = append(received, got{rep, p, rollout, now})
			if at, ok := sent[m.Headers().Get(jetstream.MsgIDHeader)]; ok {
				hop.add(now.Sub(at))
			}
			mu.Unlock()
			_ = m.Ack()
		}, jetstream.PullPriorityGroup(ownGroup), jetstream.PullExpiry(ownPullExpiry))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cc.Stop)
	}
	for p := range ownPartitions {
		consume(p%ownReplicas, p)
	}
	for p := range ownPartitions {
		poll.Until(b, fmt.Sprintf("a pull waiting on partition %d", p), func() error {
			c, err := admin.Consumer(ctx, "OWN", fmt.Sprintf("own-%d", p))
			if err != nil {
				return err
			}
			if c.CachedInfo().NumWaiting == 0 {
				return fmt.Errorf("none")
			}
			return nil
		})
	}
	for p := range ownPartitions {
		for rep := range ownReplicas {
			if rep != p%ownReplicas {
				consume(rep, p)
			}
		}
	}
	dc, err := cmd.Consume(func(m jetstream.Msg) {
		mu.Lock()
		if at, ok := sent[m.Headers().Get(jetstream.MsgIDHeader)]; ok {
			direct.add(time.Since(at))
		}
		mu.Unlock()
		_ = m.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(dc.Stop)

	_, pub := connect()
	publish := func(round, rollout int) {
		id := fmt.Sprintf("%d/%d", round, rollout)
		msg := nats.NewMsg(fmt.Sprintf("cmd.bench.r%d", rollout))
		msg.Header.Set(jetstream.MsgIDHeader, id)
		mu.Lock()
		sent[id] = time.Now()
		mu.Unlock()
		if _, err := pub.PublishMsg(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(received)
	}
	// Every 5 ms: the burst's timed part ends with this wait, so a coarser
	// check would add its interval to what the benchmark measures.
	waitFor := func(what string, n int) {
		poll.Until(b, what, func() error {
			if got := count(); got < n {
				return fmt.Errorf("%d of %d messages received", got, n)
			}
			return nil
		}, poll.Timeout(5*time.Minute), poll.Every(5*time.Millisecond))
	}

	const rounds = 10
	b.ResetTimer()
	for round := range rounds {
		for r := range ownRollouts {
			publish(round, r)
		}
	}
	waitFor("the burst", rounds*ownRollouts)
	b.StopTimer()
	// One message at a time: the hop's own cost, without a queue.
	mu.Lock()
	hop, direct = &idleHop, &idleDirect
	mu.Unlock()
	for r := range 100 {
		publish(rounds+1, r)
		waitFor("one at a time", rounds*ownRollouts+r+1)
	}

	mu.Lock()
	owners := map[string]map[int]bool{}
	pinned := map[int]map[int]bool{} // replica -> partitions
	partitionOf := map[string]int{}
	for _, g := range received {
		if owners[g.rollout] == nil {
			owners[g.rollout] = map[int]bool{}
		}
		owners[g.rollout][g.replica] = true
		if pinned[g.replica] == nil {
			pinned[g.replica] = map[int]bool{}
		}
		pinned[g.replica][g.partition] = true
		partitionOf[g.rollout] = g.partition
	}
	maxOwners, maxParts, victim := 0, 0, 0
	for _, o := range owners {
		maxOwners = max(maxOwners, len(o))
	}
	for rep, ps := range pinned {
		if len(ps) > maxParts {
			maxParts, victim = len(ps), rep
		}
	}
	victimParts := pinned[victim]
	burstHop.reportPercentiles(b, "burst-hop")
	burstDirect.reportPercentiles(b, "burst-direct")
	idleHop.reportPercentiles(b, "idle-hop")
	idleDirect.reportPercentiles(b, "idle-direct")
	before := len(received)
	mu.Unlock()
	b.ReportMetric(float64(maxOwners), "owners/rollout")
	b.ReportMetric(float64(maxParts), "max-partitions/replica")

	// The replica pinned to the most partitions goes away without a word,
	// and one message goes to a rollout of each of its partitions.
	conns[victim].Close()
	killed := time.Now()
	var probes []int
	for p := range victimParts {
		for r := range ownRollouts {
			if partitionOf[fmt.Sprintf("r%d", r)] == p {
				probes = append(probes, r)
				break
			}
		}
	}
	for _, r := range probes {
		publish(rounds+2, r)
	}
	waitFor("after the kill", before+len(probes))
	mu.Lock()
	var last time.Time
	for _, g := range received[before:] {
		if g.replica == victim {
			b.Errorf("replica %d received %s after its connection closed", victim, g.rollout)
		}
		if g.at.After(last) {
			last = g.at
		}
	}
	mu.Unlock()
	b.ReportMetric(float64(last.Sub(killed).Milliseconds()), "takeover-ms")
}
