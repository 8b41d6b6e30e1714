package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

func newHistoryCmd(conn *events.ConnConfig) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "history <namespace>/<rollout>",
		Short: "Replay every command and status event of a rollout",
		Long: `Replay every command and status event of a rollout that the streams still
keep (see --bus-max-age), in the order they were stored.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := events.ParseRef(args[0])
			if err != nil {
				return usageError{err}
			}
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output %q: want text or json", output)}
			}
			ctx := cmd.Context()
			client, err := connect(ctx, *conn)
			if err != nil {
				return err
			}
			defer client.Close()
			h, err := client.History(ctx, r)
			if err != nil {
				return err
			}
			if len(h) == 0 {
				return fmt.Errorf("no events for rollout %s (never requested, or older than the streams keep)", r)
			}
			if output == "json" {
				return writeHistoryJSON(cmd.OutOrStdout(), h)
			}
			return writeHistoryText(cmd.OutOrStdout(), h)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (one structured CloudEvent per line)")
	return cmd
}

func writeHistoryJSON(w io.Writer, h []events.HistoryEntry) error {
	enc := json.NewEncoder(w)
	for _, e := range h {
		if e.Err != nil {
			if err := enc.Encode(map[string]string{"stored": e.Stored.Format(time.RFC3339Nano), "error": e.Err.Error()}); err != nil {
				return err
			}
			continue
		}
		if err := enc.Encode(e.Event); err != nil {
			return err
		}
	}
	return nil
}

func writeHistoryText(w io.Writer, h []events.HistoryEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORED\tEVENT\tDETAIL")
	for _, e := range h {
		stored := e.Stored.UTC().Format("2006-01-02T15:04:05.000Z")
		if e.Err != nil {
			fmt.Fprintf(tw, "%s\t(unreadable)\t%v\n", stored, e.Err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", stored, strings.TrimPrefix(e.Event.Type(), "io.sluice."), describe(e.Event))
	}
	return tw.Flush()
}

// describe renders the part of an event a person reads in a history line.
func describe(ev events.Event) string {
	switch ev.Type() {
	case events.TypeRolloutPromote:
		var d events.PromoteData
		_ = events.DecodeData(ev, &d)
		if d.Full {
			return "full"
		}
		return ""
	case events.TypeRolloutUndo:
		var d events.UndoData
		_ = events.DecodeData(ev, &d)
		if d.ToRevision != nil {
			return fmt.Sprintf("to revision %d", *d.ToRevision)
		}
		return ""
	case events.TypeRolloutRequested, events.TypeAnalysisTemplateApply, events.TypeRolloutAbort,
		events.TypeRolloutRetry, events.TypeRolloutPause, events.TypeRolloutResume:
		return "from " + ev.Source()
	}
	var d events.StatusData
	if err := events.DecodeData(ev, &d); err != nil {
		return err.Error()
	}
	s := d.Status
	parts := []string{s.Phase, fmt.Sprintf("rev %d (stable %d)", s.Revision, s.StableRevision)}
	if s.StepIndex != nil {
		parts = append(parts, fmt.Sprintf("step %d/%d", min(*s.StepIndex+1, s.StepCount), s.StepCount))
	}
	parts = append(parts, fmt.Sprintf("weight %d", s.CanaryWeight))
	if d.Step != nil {
		parts = append(parts, d.Step.Detail)
	}
	if d.Measurement != nil {
		m := d.Measurement
		parts = append(parts, fmt.Sprintf("%s=%s %s", m.Metric, m.Value, m.Phase))
	}
	if d.Reason != "" {
		parts = append(parts, d.Reason)
	}
	for _, e := range d.Errors {
		parts = append(parts, e)
	}
	if s.Message != "" && d.Reason == "" {
		parts = append(parts, s.Message)
	}
	return strings.Join(parts, "  ")
}
