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
	var ns, output string
	var all bool
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "events [rollout]",
		Short: "Follow status events of one rollout, a namespace (-n) or every namespace (-A) until Ctrl-C",
		Long: `Follow status events until Ctrl-C: of one rollout, of every rollout in the
namespace of -n (default "default"), or of every namespace with -A. Each
line says what happened and who caused it (the actor and causationid
extensions); a refused command shows its code and reason. With -o json,
each event is one structured CloudEvent per line.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeRollouts(conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			subject := events.StatusRoot + "." + ns + ".*"
			switch {
			case len(args) == 1:
				r, err := rolloutRef(args[0], ns)
				if err != nil {
					return err
				}
				subject = events.StatusSubject(r)
			case all:
				subject = events.StatusRoot + ".>"
			default:
				if err := (events.Ref{Namespace: ns, Name: "x"}).Validate(); err != nil {
					return usageError{fmt.Errorf("--namespace %q: %w", ns, err)}
				}
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
				if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) {
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
				switch {
				case err != nil && output == outputJSON:
					err = writeJSONLine(out, map[string]string{"stored": stored.UTC().Format(time.RFC3339Nano), "error": err.Error()})
				case err != nil:
					_, err = fmt.Fprintf(out, "%s  (unreadable) %v\n", stored.UTC().Format("15:04:05.000"), err)
				case output == outputJSON:
					err = writeJSONLine(out, ev)
				default:
					_, err = fmt.Fprintf(out, "%s  %-16s %-28s %s\n", stored.UTC().Format("15:04:05.000"), ev.Subject(), shortType(ev.Type()), describe(ev))
				}
				if err != nil {
					return err
				}
			}
		},
	}
	addNamespaceFlag(cmd, &ns)
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "without a rollout: follow every namespace")
	cmd.Flags().DurationVar(&since, "since", 0, "also show events from this long ago (e.g. 10m)")
	addOutputFlag(cmd, &output, "one structured CloudEvent per line")
	return cmd
}
