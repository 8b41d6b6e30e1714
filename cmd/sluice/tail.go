package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

func newEventsCmd(conn *events.ConnConfig) *cobra.Command {
	var ns string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "events [rollout]",
		Short: "Tail status events (of one rollout, or all) until Ctrl-C",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			subject := events.StatusRoot + ".>"
			if len(args) == 1 {
				r, err := rolloutRef(args[0], ns)
				if err != nil {
					return err
				}
				subject = events.StatusSubject(r)
			}
			ctx := cmd.Context()
			client, err := connect(ctx, *conn)
			if err != nil {
				return err
			}
			defer client.Close()
			s, err := client.JetStream().Stream(ctx, events.StreamStatus)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			// From the stream's current end (see newApplyWatch for why not DeliverNew).
			cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq + 1}
			if since > 0 {
				start := time.Now().Add(-since)
				cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, 0, &start
			}
			cons, err := s.OrderedConsumer(ctx, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for {
				msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
					continue
				}
				if err != nil {
					return err
				}
				meta, _ := msg.Metadata()
				stored := time.Now()
				if meta != nil {
					stored = meta.Timestamp
				}
				ev, err := events.Decode(msg.Data(), msg.Headers())
				if err != nil {
					fmt.Fprintf(out, "%s  (unreadable) %v\n", stored.UTC().Format("15:04:05.000"), err)
					continue
				}
				fmt.Fprintf(out, "%s  %-16s %-28s %s\n", stored.UTC().Format("15:04:05.000"), ev.Subject(), shortType(ev.Type()), describe(ev))
			}
		},
	}
	addNamespaceFlag(cmd, &ns)
	cmd.Flags().DurationVar(&since, "since", 0, "also show events from this long ago (e.g. 10m)")
	return cmd
}

func shortType(t string) string {
	const prefix = "io.sluice."
	if len(t) > len(prefix) && t[:len(prefix)] == prefix {
		return t[len(prefix):]
	}
	return t
}
