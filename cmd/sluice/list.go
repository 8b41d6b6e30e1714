package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

func newListCmd(conn *events.ConnConfig) *cobra.Command {
	var ns string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List rollouts with their phase, step and weights",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			client, err := connect(ctx, *conn)
			if err != nil {
				return err
			}
			defer client.Close()
			filter := events.StatusRoot + "." + ns + ".*"
			if all {
				filter = events.StatusRoot + ".>"
			}
			s, err := client.JetStream().Stream(ctx, events.StreamStatus)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
			if err != nil {
				return err
			}
			subjects := make([]string, 0, len(info.State.Subjects))
			for subj := range info.State.Subjects {
				subjects = append(subjects, subj)
			}
			sort.Strings(subjects)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tSTRATEGY\tPHASE\tSTEP\tCANARY\tREVISION\tMESSAGE")
			for _, subj := range subjects {
				msg, err := s.GetLastMsgForSubject(ctx, subj)
				if err != nil {
					continue
				}
				ev, err := events.Decode(msg.Data, msg.Header)
				if err != nil {
					continue
				}
				var d events.StatusData
				if events.DecodeData(ev, &d) != nil {
					continue
				}
				st := d.Status
				step := "-"
				if st.StepIndex != nil {
					step = fmt.Sprintf("%d/%d", min(*st.StepIndex+1, st.StepCount), st.StepCount)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%d%%\t%d (stable %d)\t%s\n", st.Namespace, st.Name, valueOr(st.Strategy, "-"),
					phaseSymbol(st.Phase), st.Phase, step, st.CanaryWeight, st.Revision, st.StableRevision, oneLine(st.Message))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace to list")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list every namespace")
	return cmd
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
