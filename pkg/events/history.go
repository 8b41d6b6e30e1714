package events

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// HistoryEntry is one event of a rollout's history.
type HistoryEntry struct {
	// Stored is when the stream stored the event.
	Stored time.Time
	Stream string
	// Seq is the event's sequence in Stream.
	Seq uint64
	// Event is the decoded event; Err is set instead when the stored
	// message is not a valid event (it is reported, not skipped).
	Event Event
	Err   error
}

// History replays every command and status event of rollout r still kept by
// the streams, in the order they were stored. It reads with ephemeral
// ordered consumers and leaves no consumer behind.
func (c *Client) History(ctx context.Context, r Ref) ([]HistoryEntry, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var out []HistoryEntry
	for _, src := range []struct{ stream, subject string }{
		{StreamCommands, CommandSubject(r)},
		{StreamStatus, StatusSubject(r)},
	} {
		entries, err := c.replay(ctx, src.stream, src.subject)
		if err != nil {
			return nil, err
		}
		out = append(out, entries...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Stored.Before(out[j].Stored) })
	return out, nil
}

func (c *Client) replay(ctx context.Context, stream, subject string) ([]HistoryEntry, error) {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("history: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, fmt.Errorf("history: stream %s: %w", stream, err)
	}
	want := info.State.Subjects[subject]
	if want == 0 {
		return nil, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("history: read %s: %w", subject, err)
	}
	// The server would keep the last consumer for minutes after the read:
	// delete it, so that frequent reads (the gateway's) do not pile up.
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = s.DeleteConsumer(dctx, info.Name)
		}
	}()
	var out []HistoryEntry
	for uint64(len(out)) < want {
		batch, err := cons.Fetch(int(min(want-uint64(len(out)), 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return out, fmt.Errorf("history: read %s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, _ := m.Metadata()
			e := HistoryEntry{Stream: stream}
			if meta != nil {
				e.Stored, e.Seq = meta.Timestamp, meta.Sequence.Stream
				if meta.NumPending == 0 {
					want = uint64(len(out) + 1)
				}
			}
			e.Event, e.Err = Decode(m.Data(), m.Headers())
			out = append(out, e)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return out, fmt.Errorf("history: read %s: %w", subject, err)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}
