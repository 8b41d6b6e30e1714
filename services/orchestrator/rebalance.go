package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/pkg/events"
)

// Rebalancing the pins (docs/orchestrator.md, One owner per rollout).
//
// The server moves a pin only when its holder stops pulling, so a replica
// that starts after the others (a restarted pod, a scale-up) would stay a
// standby for ever. Each replica therefore says it is there: it writes its
// key in BucketReplicas every owner TTL. Every rebalanceEvery TTLs it
// counts the replicas whose key was written within memberFresh TTLs of its
// own last write (the server's clock on both sides), and, holding more
// than its fair share ceil(P/N) of the partitions, it gives one back: it
// stops pulling that partition (the decisions in progress finish and are
// acknowledged first, the ones queued go back to the server), forgets the
// records of its rollouts, unpins the consumer, and pulls it again as a
// standby once another replica holds the pin (or after one TTL, when no
// message came to pin it). One partition per check, and never one while
// the replica holds its share or less, so the pins settle and then stay.

// BucketReplicas holds one key per orchestrator replica that pulls the
// partitions, written every owner TTL.
const BucketReplicas = "sluice-orchestrators"

const (
	// rebalanceEvery is how many owner TTLs pass between two checks of a
	// replica's share.
	rebalanceEvery = 3
	// memberFresh is how many owner TTLs a replica's key counts after
	// its last write.
	memberFresh = 2
	// replicasTTL is how long BucketReplicas keeps a key after its last
	// write: the keys of replicas that died go away by themselves.
	replicasTTL = time.Minute
)

// share is the most partitions of partitions a replica holds when
// replicas pull them: ceil(partitions/replicas).
func share(partitions, replicas int) int {
	if replicas < 1 {
		return partitions
	}
	return (partitions + replicas - 1) / replicas
}

// toGive is which of held (the partitions a replica holds) it gives back
// when replicas pull partitions: at most one per check, and none while
// it holds its share or less.
func toGive(held []int, partitions, replicas int) []int {
	if len(held) <= share(partitions, replicas) {
		return nil
	}
	return held[rand.IntN(len(held)):][:1]
}

// parts are the partitions' subscriptions of this replica, stopped and
// started again when it gives one back.
type parts struct {
	mu     sync.Mutex
	subs   map[int]*events.Subscription
	start  func(ctx context.Context, p int) (*events.Subscription, error)
	closed bool
}

// pull starts pulling partition p, unless the replica is stopping.
func (ps *parts) pull(ctx context.Context, p int) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil
	}
	sub, err := ps.start(ctx, p)
	if err != nil {
		return err
	}
	ps.subs[p] = sub
	return nil
}

// release stops pulling partition p, once the decisions in progress on
// it are made and settled.
func (ps *parts) release(ctx context.Context, p int) error {
	ps.mu.Lock()
	sub := ps.subs[p]
	delete(ps.subs, p)
	ps.mu.Unlock()
	if sub == nil {
		return nil
	}
	return sub.Stop(ctx)
}

// Stop stops pulling every partition; none starts again.
func (ps *parts) Stop(ctx context.Context) error {
	ps.mu.Lock()
	ps.closed = true
	subs := ps.subs
	ps.subs = nil
	ps.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		errs = append(errs, sub.Stop(ctx))
	}
	return errors.Join(errs...)
}

// rebalancer keeps this replica's key in BucketReplicas and gives back the
// partitions it holds beyond its share.
type rebalancer struct {
	s     *Service
	kv    jetstream.KeyValue
	parts *parts
	id    string
	done  chan struct{}
	stop  context.CancelFunc
	mu    sync.Mutex
	n     int // checks of the share made so far
}

// startRebalancer starts the replica's heartbeat and checks.
func (s *Service) startRebalancer(ctx context.Context, kv jetstream.KeyValue, ps *parts) *rebalancer {
	ctx, cancel := context.WithCancel(ctx)
	rb := &rebalancer{s: s, kv: kv, parts: ps, id: fmt.Sprintf("%016x", rand.Uint64()), done: make(chan struct{}), stop: cancel}
	go rb.run(ctx)
	return rb
}

// Stop ends the checks (a give-back in progress completes) and removes the
// replica's key, so the others count it out at once.
func (rb *rebalancer) Stop(ctx context.Context) error {
	rb.stop()
	<-rb.done
	if err := rb.kv.Delete(ctx, rb.id); err != nil {
		return fmt.Errorf("remove this replica from %s: %w", BucketReplicas, err)
	}
	return nil
}

// Checks is how many times the replica checked its share.
func (rb *rebalancer) Checks() int {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.n
}

func (rb *rebalancer) run(ctx context.Context) {
	defer close(rb.done)
	ttl := rb.s.cfg.OwnerTTL
	t := time.NewTicker(ttl)
	defer t.Stop()
	for beat := 1; ; beat++ {
		rev, err := rb.kv.Put(ctx, rb.id, []byte("pulling"))
		if err != nil && ctx.Err() == nil {
			rb.s.log.Warn("could not say this replica is there; its share is checked on the next beat", "bucket", BucketReplicas, "error", err)
		}
		if err == nil && beat%rebalanceEvery == 0 {
			rb.check(ctx, rev)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check gives back the partitions beyond this replica's share; rev is its
// last write in BucketReplicas.
func (rb *rebalancer) check(ctx context.Context, rev uint64) {
	defer func() {
		rb.mu.Lock()
		rb.n++
		rb.mu.Unlock()
	}()
	replicas, err := rb.replicas(ctx, rev)
	if err != nil {
		if ctx.Err() == nil {
			rb.s.log.Warn("could not count the replicas; the share is checked again later", "error", err)
		}
		return
	}
	held := rb.s.held(ctx)
	for _, p := range toGive(held, rb.s.cfg.Partitions, replicas) {
		rb.s.log.Info("holding more than this replica's share of the partitions: giving one back",
			"partition", p, "held", len(held), "replicas", replicas, "share", share(rb.s.cfg.Partitions, replicas))
		if err := rb.giveBack(ctx, p); err != nil && ctx.Err() == nil {
			rb.s.log.Warn("could not give a partition back", "partition", p, "error", err)
		}
	}
}

// replicas counts the keys of BucketReplicas written within memberFresh
// owner TTLs before this replica's own write rev.
func (rb *rebalancer) replicas(ctx context.Context, rev uint64) (int, error) {
	mine, err := rb.kv.GetRevision(ctx, rb.id, rev)
	if err != nil {
		return 0, err
	}
	keys, err := rb.kv.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	since := mine.Created().Add(-memberFresh * rb.s.cfg.OwnerTTL)
	n := 0
	for k := range keys.Keys() {
		e, err := rb.kv.Get(ctx, k)
		if err != nil {
			continue // deleted since the listing
		}
		if !e.Created().Before(since) {
			n++
		}
	}
	return max(n, 1), nil
}

// giveBack hands partition p to another replica, if it is still pinned
// to this one: it stops pulling p, so that the pin can go only to
// another puller (the server drops pull requests that carry the old pin), forgets the records of p's
// rollouts (they may change under another owner), unpins the consumer,
// and pulls p again as a standby once another replica holds it, or after
// one owner TTL (no message came to pin it).
func (rb *rebalancer) giveBack(ctx context.Context, p int) error {
	s := rb.s
	old := s.pinOf(ctx, p)
	if old == "" || old != s.owners.pinned()[p] {
		return nil // lost it since the count: nothing to give back
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StopTimeout)
	err := rb.parts.release(stopCtx, p)
	cancel()
	if err != nil {
		s.log.Warn("decisions still in progress on a partition given back", "partition", p, "error", err)
	}
	s.owners.forget(s, p)
	defer func() {
		if err := rb.parts.pull(context.WithoutCancel(ctx), p); err != nil {
			s.log.Error("could not pull a partition given back again: this replica is no standby for it until it restarts", "partition", p, "error", err)
		}
	}()
	if s.pinOf(ctx, p) != old {
		return nil // the pin expired while the decisions finished: it moved already
	}
	st, err := s.client.JetStream().Stream(ctx, StreamOwners)
	if err != nil {
		return err
	}
	if err := st.UnpinConsumer(ctx, DurablePartition(p), events.PinnedGroup); err != nil {
		return fmt.Errorf("unpin %s: %w", DurablePartition(p), err)
	}
	s.cfg.Metrics.PartitionGivenBack()
	wait := time.NewTimer(s.cfg.OwnerTTL)
	defer wait.Stop()
	tick := time.NewTicker(s.cfg.OwnerTTL / 20)
	defer tick.Stop()
	for {
		if pin := s.pinOf(ctx, p); pin != "" && pin != old {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
			return nil
		case <-tick.C:
		}
	}
}

// held lists the partitions pinned to this replica now, in order: those
// whose consumer's pin is the last one this replica got messages with.
func (s *Service) held(ctx context.Context) []int {
	var out []int
	for p, pin := range s.owners.pinned() {
		if pin != "" && s.pinOf(ctx, p) == pin {
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out
}

// pinOf is the pin partition p's consumer has now; "" when it has none or
// it cannot be read.
func (s *Service) pinOf(ctx context.Context, p int) string {
	c, err := s.client.JetStream().Consumer(ctx, StreamOwners, DurablePartition(p))
	if err != nil {
		return ""
	}
	for _, g := range c.CachedInfo().PriorityGroups {
		if g.Group == events.PinnedGroup {
			return g.PinnedClientID
		}
	}
	return ""
}
