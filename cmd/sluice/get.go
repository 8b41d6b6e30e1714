package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

// maxMeasurements is how many recent measurements `get` shows.
const maxMeasurements = 8

func newGetCmd(conn *events.ConnConfig) *cobra.Command {
	var ns string
	var watch bool
	cmd := &cobra.Command{
		Use:   "get <rollout>",
		Short: "Show a rollout: phase, step, weights, replicas, analysis (--watch: live)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := rolloutRef(args[0], ns)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			client, err := connect(ctx, *conn)
			if err != nil {
				return err
			}
			defer client.Close()
			view, err := loadView(ctx, client, r)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			renderSnapshot(out, view.snapshot, view.measurements)
			if !watch {
				return nil
			}
			return watchRollout(ctx, client, r, view, out)
		},
	}
	addNamespaceFlag(cmd, &ns)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep watching and re-render on every status event (Ctrl-C to stop)")
	return cmd
}

// view is what `get` renders.
type view struct {
	snapshot     events.Snapshot
	measurements []events.Measurement
	// lastSeq is the status stream sequence the view is current to.
	lastSeq uint64
}

// apply updates the view with one status event.
func (v *view) apply(ev events.Event) {
	var d events.StatusData
	if events.DecodeData(ev, &d) != nil {
		return
	}
	if d.Status.Revision != v.snapshot.Revision {
		v.measurements = nil
	}
	v.snapshot = d.Status
	if d.Measurement != nil {
		v.measurements = append(v.measurements, *d.Measurement)
		if len(v.measurements) > maxMeasurements {
			v.measurements = v.measurements[len(v.measurements)-maxMeasurements:]
		}
	}
}

// loadView replays r's status events into a view.
func loadView(ctx context.Context, client *events.Client, r events.Ref) (view, error) {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return view{}, err
	}
	last, err := s.GetLastMsgForSubject(ctx, events.StatusSubject(r))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return view{}, fmt.Errorf("rollout %s not found: no status events (was it applied, and is the orchestrator running?)", r)
	}
	if err != nil {
		return view{}, err
	}
	var v view
	h, err := client.History(ctx, r)
	if err != nil {
		return view{}, err
	}
	for _, e := range h {
		if e.Err == nil && e.Stream == events.StreamStatus {
			v.apply(e.Event)
		}
	}
	v.lastSeq = last.Sequence
	return v, nil
}

// watchRollout re-renders r on every status event after v until ctx ends.
func watchRollout(ctx context.Context, client *events.Client, r events.Ref, v view, out io.Writer) error {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.StatusSubject(r)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    v.lastSeq + 1,
	})
	if err != nil {
		return err
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			continue
		}
		if err != nil {
			return err
		}
		ev, err := events.Decode(msg.Data(), msg.Headers())
		if err != nil {
			continue
		}
		v.apply(ev)
		fmt.Fprintf(out, "\n── %s  %s\n", time.Now().Format(time.TimeOnly), ev.Type())
		renderSnapshot(out, v.snapshot, v.measurements)
	}
}
