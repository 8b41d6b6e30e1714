package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
)

// One owner per rollout (docs/orchestrator.md).
//
// With Config.Partitions P > 0, the internal stream StreamOwners sources
// the commands and results streams through subject transforms that put
// each rollout in one of P partitions, by a hash of its namespace and
// name: sluice.own.<p>.cmd.<ns>.<name> and
// sluice.own.<p>.result.<service>.<ns>.<name>. The public streams and
// subjects do not change. Each partition has one durable consumer,
// pinned to one replica at a time (events.ConsumerConfig.PinnedTTL);
// every replica pulls every partition, so when the pinned one stops
// pulling (it died, or was cut off) another takes the partition within
// the pin's TTL. The service never computes a partition: it reads the
// rollout from the original subject of each copy.
//
// The owner of a partition decides on the records it holds as the truth:
// the check of a decision that changes nothing against the leader of the
// bucket's stream (records.ErrStale) is skipped. The compare-and-swap on
// the record's revision stays: it fences a replica that still believes it
// owns a rollout (its pin expired while it decided) and makes its write
// fail; nothing it decided is published, since effects go out only after
// the write.

// StreamOwners is the orchestrator's internal stream of partitioned
// copies of commands and results; no one publishes to it.
const StreamOwners = "SLUICE_ORCHESTRATOR"

// ownRoot is the root of StreamOwners' subjects.
const ownRoot = "sluice.own"

// metaPartitions is the StreamOwners metadata key that records the
// partition count it was created with.
const metaPartitions = "sluice.partitions"

// Defaults of Config.OwnerTTL and of the workers per partition.
const (
	DefaultOwnerTTL = 2 * time.Second
	// DefaultPartitionWorkers is how many decisions a replica makes at
	// once per partition it owns when Config.Results sets no Workers.
	DefaultPartitionWorkers = 8
)

// DurablePartition is the name of partition p's durable consumer.
func DurablePartition(p int) string { return "orchestrator-p" + strconv.Itoa(p) }

// ownersStream is StreamOwners' configuration for partitions copies,
// sourcing each public stream from the sequence in start (from its
// beginning when absent).
func ownersStream(bus events.BusConfig, partitions int, start map[string]uint64) jetstream.StreamConfig {
	var cfg jetstream.StreamConfig
	for _, c := range bus.Streams() {
		if c.Name == events.StreamCommands {
			cfg = c
		}
	}
	cfg.Name, cfg.Subjects = StreamOwners, nil
	cfg.Description = "Sluice orchestrator: commands and results, copied into one partition per rollout"
	cfg.Metadata = map[string]string{metaPartitions: strconv.Itoa(partitions)}
	cfg.Sources = []*jetstream.StreamSource{
		{Name: events.StreamCommands, OptStartSeq: start[events.StreamCommands], SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source:      events.CommandRoot + ".*.*",
			Destination: fmt.Sprintf("%s.{{partition(%d,1,2)}}.cmd.{{wildcard(1)}}.{{wildcard(2)}}", ownRoot, partitions),
		}}},
		{Name: events.StreamResults, OptStartSeq: start[events.StreamResults], SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source:      events.ResultRoot + ".*.*.*",
			Destination: fmt.Sprintf("%s.{{partition(%d,2,3)}}.result.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}", ownRoot, partitions),
		}}},
	}
	return cfg
}

// legacy are the shared durable consumers of Config.Partitions 0, by the
// stream they read.
var legacy = map[string]string{events.StreamCommands: DurableCommands, events.StreamResults: DurableResults}

// provisionOwners creates StreamOwners when missing, or checks that it has
// the configured partitions, and then deletes the shared consumers of an
// earlier version. A new StreamOwners sources each public stream from
// where the shared consumer's acknowledgements end, so that messages it
// had not acknowledged (pending at the upgrade) are decided through the
// partitions; without a shared consumer, from the stream's beginning, as a
// new shared consumer would.
func (s *Service) provisionOwners(ctx context.Context) error {
	js := s.client.JetStream()
	st, err := js.Stream(ctx, StreamOwners)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		start := map[string]uint64{}
		for stream, durable := range legacy {
			c, cerr := js.Consumer(ctx, stream, durable)
			if errors.Is(cerr, jetstream.ErrConsumerNotFound) {
				continue
			}
			if cerr != nil {
				return fmt.Errorf("read the shared consumer %s to start the partitions where it ends: %w", durable, cerr)
			}
			start[stream] = c.CachedInfo().AckFloor.Stream + 1
		}
		st, err = js.CreateStream(ctx, ownersStream(s.cfg.Bus, s.cfg.Partitions, start))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, StreamOwners) // another replica made it
		}
		if err == nil {
			s.log.Info("created the orchestrator's partitioned stream", "stream", StreamOwners, "partitions", s.cfg.Partitions, "from", start)
		}
	}
	if err != nil {
		return fmt.Errorf("provision %s: %w", StreamOwners, err)
	}
	if have := st.CachedInfo().Config.Metadata[metaPartitions]; have != strconv.Itoa(s.cfg.Partitions) {
		return fmt.Errorf("%w: orchestrator: the bus's %s has %q partitions and --partitions is %d: the partitions are fixed for a bus; to change them, see docs/orchestrator.md (Changing the partitions)",
			events.ErrInvalidConfig, StreamOwners, have, s.cfg.Partitions)
	}
	for stream, durable := range legacy {
		// StreamOwners holds every message the shared consumer had not
		// acknowledged when it was made, and every later one.
		err := js.DeleteConsumer(ctx, stream, durable)
		switch {
		case err == nil:
			s.log.Info("deleted the shared consumer of an earlier version: the partitions took over its messages", "consumer", durable)
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return fmt.Errorf("delete the shared consumer %s: %w", durable, err)
		}
	}
	return nil
}

// startPartitions pulls every partition: first the ones no replica holds,
// so that replicas starting together spread the pins, then the others as
// a standby, in a random order.
func (s *Service) startPartitions(ctx context.Context, r *daemon.Running, commands, results router) error {
	if err := s.provisionOwners(ctx); err != nil {
		return err
	}
	base := s.cfg.Results
	if base.Workers == 0 {
		base.Workers = DefaultPartitionWorkers
	}
	order := rand.Perm(s.cfg.Partitions)
	var free, held []int
	for _, p := range order {
		if s.pinned(ctx, p) {
			held = append(held, p)
		} else {
			free = append(free, p)
		}
	}
	ps := &parts{subs: map[int]*events.Subscription{}, start: func(ctx context.Context, p int) (*events.Subscription, error) {
		cfg := base
		cfg.Stream, cfg.Durable, cfg.Sourced, cfg.PinnedTTL = StreamOwners, DurablePartition(p), true, s.cfg.OwnerTTL
		cfg.FilterSubjects = []string{fmt.Sprintf("%s.%d.>", ownRoot, p)}
		return s.client.ConsumeBatches(ctx, cfg, s.partitionHandler(p, commands, results))
	}}
	r.OnStop(ps)
	for _, p := range append(free, held...) {
		if err := ps.pull(ctx, p); err != nil {
			return err
		}
	}
	// Stopped first (parts stop in reverse order), so that it gives
	// nothing back while the partitions stop.
	s.rebalance = s.startRebalancer(ctx, r.Bucket(BucketReplicas), ps)
	r.OnStop(s.rebalance)
	return nil
}

// pinned reports whether partition p's consumer is pinned to a replica
// now; a consumer not made yet is not.
func (s *Service) pinned(ctx context.Context, p int) bool {
	c, err := s.client.JetStream().Consumer(ctx, StreamOwners, DurablePartition(p))
	if err != nil {
		return false
	}
	for _, g := range c.CachedInfo().PriorityGroups {
		if g.PinnedClientID != "" {
			return true
		}
	}
	return false
}

// partitionHandler decides partition p's messages: the commands of a
// batch as the commands consumer does (in the order the commands stream
// stored them), the results as the results consumer does, each run of
// one kind in turn, so that the rollout sees them in the order they came.
func (s *Service) partitionHandler(p int, commands, results router) events.BatchHandler {
	cmd, res := s.batchHandler(commands, true), s.batchHandler(results, false)
	return func(ctx context.Context, batch []events.Message) []error {
		s.owners.hold(s, p, batch)
		ctx = context.WithValue(ctx, owned{}, true)
		errs := make([]error, 0, len(batch))
		for i := 0; i < len(batch); {
			j := i + 1
			for j < len(batch) && batch[j].Delivery.Stream == batch[i].Delivery.Stream {
				j++
			}
			h := res
			if batch[i].Delivery.Stream == events.StreamCommands {
				h = cmd
			}
			errs = append(errs, h(ctx, batch[i:j])...)
			i = j
		}
		return errs
	}
}

// owned marks the context of a decision by the owner of the rollout's
// partition: the record it holds is the truth.
type owned struct{}

// owners tracks the pins this replica was given and the rollouts of each
// partition whose records it holds.
type owners struct {
	mu       sync.Mutex
	pins     map[int]string
	rollouts map[int]map[string]struct{}
}

// hold notes that this replica decides batch's messages of partition p
// under the pin they came with. A pin other than the last one it was given
// there means the partition may have had another owner since: the records
// it holds of the partition's rollouts may be out of date, and it forgets
// them, so the decision reads the bucket.
func (o *owners) hold(s *Service, p int, batch []events.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pins == nil {
		o.pins, o.rollouts = map[int]string{}, map[int]map[string]struct{}{}
	}
	for _, m := range batch {
		pin := m.Delivery.PinID
		if old, ok := o.pins[p]; ok && old != pin {
			for k := range o.rollouts[p] {
				s.st.Forget(k)
			}
			s.log.Info("partition pinned to this replica anew: forgetting the records of its rollouts", "partition", p, "rollouts", len(o.rollouts[p]))
			s.cfg.Metrics.PinChanged()
			o.rollouts[p] = nil
		}
		o.pins[p] = pin
		if o.rollouts[p] == nil {
			o.rollouts[p] = map[string]struct{}{}
		}
		if r, err := events.RefFromSubject(m.Delivery.Subject); err == nil {
			o.rollouts[p][records.KeyOf(r)] = struct{}{}
		}
	}
}

// forget forgets the records of partition p's rollouts, which this
// replica gave back: another replica may change them.
func (o *owners) forget(s *Service, p int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.rollouts[p] {
		s.st.Forget(k)
	}
	delete(o.rollouts, p)
}

// pinned is the last pin this replica got messages with, by partition.
func (o *owners) pinned() map[int]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[int]string, len(o.pins))
	for p, pin := range o.pins {
		out[p] = pin
	}
	return out
}
