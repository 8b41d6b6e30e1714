package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

// cliSource is the CloudEvents source of everything the CLI publishes.
const cliSource = "/sluice/cli"

// publishCommand sends one command event for r and waits for the stream's
// acknowledgement.
func publishCommand(ctx context.Context, conn events.ConnConfig, r events.Ref, eventType string, data any) (events.Event, error) {
	client, err := connect(ctx, conn)
	if err != nil {
		return events.Event{}, err
	}
	defer client.Close()
	ev, err := events.New(cliSource, eventType, r.String(), data)
	if err != nil {
		return ev, err
	}
	_, err = client.Publish(ctx, events.CommandSubject(r), ev)
	return ev, err
}

// newSimpleCommand builds promote, abort, retry, pause, resume and undo.
func newSimpleCommand(conn *events.ConnConfig, use, short, eventType string, flags func(*cobra.Command) func() any) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   use + " <rollout>",
		Short: short,
		Args:  cobra.ExactArgs(1),
	}
	data := func() any { return nil }
	if flags != nil {
		data = flags(cmd)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		r, err := rolloutRef(args[0], ns)
		if err != nil {
			return err
		}
		payload := data()
		if ue, ok := payload.(usageError); ok {
			return ue
		}
		ev, err := publishCommand(cmd.Context(), *conn, r, eventType, payload)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: %s sent (event %s)\n", r, use, ev.ID())
		return nil
	}
	addNamespaceFlag(cmd, &ns)
	return cmd
}

func newOperatorCommands(conn *events.ConnConfig) []*cobra.Command {
	return []*cobra.Command{
		newSimpleCommand(conn, "promote", "Skip the current pause or step (--full: every remaining step)", events.TypeRolloutPromote, func(c *cobra.Command) func() any {
			full := c.Flags().Bool("full", false, "skip every remaining step, analysis and pause")
			return func() any { return events.PromoteData{Full: *full} }
		}),
		newSimpleCommand(conn, "abort", "Abort the update: traffic back to stable, canary scaled down", events.TypeRolloutAbort, nil),
		newSimpleCommand(conn, "retry", "Retry an aborted update from its first step", events.TypeRolloutRetry, nil),
		newSimpleCommand(conn, "pause", "Pause the rollout where it is", events.TypeRolloutPause, nil),
		newSimpleCommand(conn, "resume", "Resume a paused rollout", events.TypeRolloutResume, nil),
		newSimpleCommand(conn, "undo", "Roll back to a previous revision (default: the one before the current)", events.TypeRolloutUndo, func(c *cobra.Command) func() any {
			to := c.Flags().Int64("to-revision", 0, "revision to roll back to (0: the previous one)")
			return func() any {
				if *to < 0 {
					return usageError{fmt.Errorf("--to-revision %d must not be negative", *to)}
				}
				if *to == 0 {
					return events.UndoData{}
				}
				return events.UndoData{ToRevision: to}
			}
		}),
	}
}
