package events

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
)

// A pinned consumer on a stream of sourced copies: each pin is one of the
// two processes pulling, and each Delivery names the original message
// (subject, stream, sequence) and the pin. When the pinned process stops,
// the other takes over, with a pin of its own.
func TestPinnedConsumerOfSourcedCopies(t *testing.T) {
	url := startServer(t).ClientURL()
	admin := provisioned(t, url)
	ctx := context.Background()
	if _, err := admin.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "COPIES", Sources: []*jetstream.StreamSource{{
		Name: StreamCommands,
		SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source: CommandRoot + ".*.*", Destination: "copies.{{partition(4,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}",
		}},
	}}}); err != nil {
		t.Fatal(err)
	}
	type got struct {
		proc int
		d    Delivery
	}
	var (
		mu       sync.Mutex
		received []got
	)
	cfg := ConsumerConfig{Stream: "COPIES", Durable: "pinned", PinnedTTL: 2 * time.Second, Sourced: true}
	subs := make([]*Subscription, 2)
	for i := range subs {
		subs[i] = consume(t, connect(t, url), cfg, func(_ context.Context, d Delivery, _ Event) error {
			mu.Lock()
			defer mu.Unlock()
			received = append(received, got{i, d})
			return nil
		})
	}
	sent := map[uint64]string{} // subject by sequence in the commands stream
	send := func(n int) {
		for i := range n {
			subject := CommandSubject(Ref{Namespace: "prod", Name: fmt.Sprintf("r%d", i%5)})
			sent[publish(t, admin, subject, mustEvent(t, TypeRolloutAbort, fmt.Sprintf("prod/r%d", i%5), nil)).Sequence] = subject
		}
	}
	waitAll := func(n int) []got {
		var out []got
		poll.Until(t, fmt.Sprintf("%d messages handled", n), func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(received) < n {
				return fmt.Errorf("%d handled", len(received))
			}
			out = append([]got(nil), received...)
			return nil
		})
		return out
	}
	// A pin is one puller: every message delivered under a pin went to
	// the same process. (Under load a pin may move between the two
	// while both pull; what may not happen is one pin in two processes.)
	holder := map[string]int{}
	check := func(gs []got) {
		t.Helper()
		for i, g := range gs {
			if want, ok := sent[g.d.Sequence]; g.d.Stream != StreamCommands || !ok || g.d.Subject != want {
				t.Errorf("message %d: delivery names %s %s #%d, not an original in %s", i, g.d.Stream, g.d.Subject, g.d.Sequence, StreamCommands)
			}
			if g.d.PinID == "" {
				t.Errorf("message %d: no pin", i)
				continue
			}
			if p, ok := holder[g.d.PinID]; ok && p != g.proc {
				t.Errorf("message %d: pin %s delivered to processes %d and %d", i, g.d.PinID, p, g.proc)
			}
			holder[g.d.PinID] = g.proc
		}
	}
	send(20)
	first := waitAll(20)
	check(first)
	owner := first[len(first)-1].proc
	if err := subs[owner].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	send(5)
	all := waitAll(25)
	check(all[20:])
	for _, g := range all[20:] {
		if g.proc == owner {
			t.Errorf("the stopped process %d handled a message", owner)
		}
		if holder[g.d.PinID] == owner {
			t.Errorf("after the take-over: pin %q is the stopped process's", g.d.PinID)
		}
	}
}
