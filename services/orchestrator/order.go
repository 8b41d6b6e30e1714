package orchestrator

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/pkg/events"
)

// A rollout's commands are decided in the order the commands stream
// stored them, whichever replica holds which.
//
// Any replica takes any command, and a command whose first delivery went
// to a replica that was then cut off or paused comes back only after the
// consumer's ack wait. A command published after it, taken meanwhile by a
// live replica, was decided first: an abort sent after an update found
// nothing to abort and was refused, and the update then went ahead (seen
// with a partition, issue 21). Holding the later command until the
// earlier one is decided would stall this replica's worker for the
// rollout, and the earlier command, when it comes back to this replica,
// would queue behind the one held for it.
//
// So the replica that takes a command looks on its rollout's subject for
// commands stored before it and not yet applied, and decides them first,
// in the same decision, from the stream's copies. The record's
// compare-and-swap keeps each command applied once (record.Applied):
// when the earlier command's own delivery comes, or the replica holding
// it writes, it finds the command applied and changes nothing. The record
// keeps the stream sequence of the last command applied (record.CommandSeq),
// so the look costs one read of the stream per command: the next message
// on the subject after that sequence, which is usually the command itself.

// maxEarlier bounds the messages one look reads from the stream.
const maxEarlier = 16

// commandLog reads a rollout's earlier commands from the commands stream.
type commandLog struct {
	client *events.Client

	mu     sync.Mutex
	stream jetstream.Stream
}

// open returns the commands stream's handle, looked up once.
func (l *commandLog) open(ctx context.Context) (jetstream.Stream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stream != nil {
		return l.stream, nil
	}
	st, err := l.client.JetStream().Stream(ctx, events.StreamCommands)
	if err != nil {
		return nil, err
	}
	l.stream = st
	return st, nil
}

// earlier returns the messages on subject stored after sequence after and
// before sequence before that want keeps, oldest first, reading at most
// maxEarlier messages. A message that does not decode is left to its own
// delivery, which dead-letters it.
func (l *commandLog) earlier(ctx context.Context, subject string, after, before uint64, want func(events.Message) bool) ([]events.Message, error) {
	if before <= after+1 {
		return nil, nil
	}
	st, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	var out []events.Message
	for seq, n := after+1, 0; seq < before && n < maxEarlier; n++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if m.Sequence >= before {
			return out, nil
		}
		seq = m.Sequence + 1
		ev, err := events.Decode(m.Data, m.Header)
		if err != nil {
			continue
		}
		msg := events.Message{
			Delivery: events.Delivery{Subject: m.Subject, Stream: events.StreamCommands, Consumer: DurableCommands, Sequence: m.Sequence, Attempt: 1, Published: m.Time},
			Event:    ev,
		}
		if want(msg) {
			out = append(out, msg)
		}
	}
	return out, nil
}

// withEarlier returns batch, all of one rollout's subject, led by the
// commands stored before its first that the rollout's record does not
// show applied and that decides says this consumer decides. The look
// starts from the record this replica knows; what it finds is checked
// on the leader's record, since a command another replica applied a
// moment ago is not news. Failing to read costs only the order: the
// batch is decided as it came, and the failure logged. A batch this
// consumer decides nothing of (templates applied, which share the
// command subjects) needs no look.
func (s *Service) withEarlier(ctx context.Context, batch []events.Message, decides func(typ string) bool) []events.Message {
	if !slices.ContainsFunc(batch, func(m events.Message) bool { return decides(m.Event.Type()) }) {
		return batch
	}
	first := batch[0].Delivery
	for _, m := range batch[1:] {
		if m.Delivery.Sequence < first.Sequence {
			first = m.Delivery
		}
	}
	ref, err := refOf(first, batch[0].Event)
	if err != nil {
		return batch
	}
	k := records.KeyOf(ref)
	inBatch := func(id string) bool {
		return slices.ContainsFunc(batch, func(m events.Message) bool { return m.Event.ID() == id })
	}
	look := func(rec record) []events.Message {
		found, err := s.cmdLog.earlier(ctx, first.Subject, rec.CommandSeq, first.Sequence, func(m events.Message) bool {
			return decides(m.Event.Type()) && !rec.applied(m.Event.ID()) && !inBatch(m.Event.ID())
		})
		if err != nil {
			s.log.Warn("could not read the commands stream for earlier commands of the rollout; deciding its commands as they came", "rollout", ref.String(), "error", err)
		}
		return found
	}
	rec, _, known := s.st.Recent(k)
	if known && len(look(rec)) == 0 {
		return batch
	}
	rec, _, err = s.st.Latest(ctx, k)
	if err != nil && !errors.Is(err, records.ErrUnreadable) {
		s.log.Warn("could not read the rollout to find its earlier commands; deciding its commands as they came", "rollout", ref.String(), "error", err)
		return batch
	}
	found := look(rec)
	if len(found) == 0 {
		return batch
	}
	for _, m := range found {
		s.log.Info("deciding an earlier command of the rollout first, ahead of its own delivery", "rollout", ref.String(),
			"command", m.Event.Type(), "id", m.Event.ID(), "sequence", m.Delivery.Sequence, "before", first.Sequence)
	}
	s.cfg.Metrics.CommandsReordered(len(found))
	return append(found, batch...)
}
