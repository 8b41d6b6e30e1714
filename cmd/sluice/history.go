package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

func newHistoryCmd(conn *events.ConnConfig) *cobra.Command {
	var ns, output string
	cmd := &cobra.Command{
		Use:   "history <rollout>",
		Short: "Replay every command and status event of a rollout, with who caused each",
		Long: `Replay every command and status event of a rollout that the streams still
keep (see --bus-max-age), in the order they were stored. The rollout is
"name" in the namespace of -n, or "namespace/name". Each line says who
asked (the actor extension) and which command an event answers
(causationid); a refused command shows its code and reason.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := rolloutRef(args[0], ns)
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
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
			if output == outputJSON {
				return writeHistoryJSON(cmd.OutOrStdout(), h)
			}
			return writeHistoryText(cmd.OutOrStdout(), h)
		},
	}
	addNamespaceFlag(cmd, &ns)
	addOutputFlag(cmd, &output, "one structured CloudEvent per line")
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

// describe renders the part of an event a person reads in a history or
// events line, ending with who caused it.
func describe(ev events.Event) string {
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	switch ev.Type() {
	case events.TypeRolloutPromote:
		var d events.PromoteData
		_ = events.DecodeData(ev, &d)
		if d.Full {
			add("full")
		}
	case events.TypeRolloutUndo:
		var d events.UndoData
		_ = events.DecodeData(ev, &d)
		if d.ToRevision != nil {
			add(fmt.Sprintf("to revision %d", *d.ToRevision))
		}
	case events.TypeRolloutRequested, events.TypeAnalysisTemplateApply, events.TypeRolloutAbort,
		events.TypeRolloutRetry, events.TypeRolloutPause, events.TypeRolloutResume,
		events.TypeRolloutRestart, events.TypeRolloutDelete:
	default:
		add(describeStatus(ev))
	}
	if w := who(ev); w != "" {
		add(w)
	} else if slices.Contains(events.CommandTypes, ev.Type()) {
		add("from " + ev.Source())
	}
	return strings.Join(parts, "  ")
}

// describeStatus renders a status event's data: the snapshot's essentials
// and what the event type adds.
func describeStatus(ev events.Event) string {
	var d events.StatusData
	if err := events.DecodeData(ev, &d); err != nil {
		return err.Error()
	}
	if d.Command != nil {
		return refusal(d.Command)
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
	parts = append(parts, d.Errors...)
	if s.Message != "" && d.Reason == "" {
		parts = append(parts, readableMessage(s.Message))
	}
	return strings.Join(parts, "  ")
}
