package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
)

// messageWidth is how much of a rollout's message `list` shows.
const messageWidth = 60

func newListCmd(conn *events.ConnConfig) *cobra.Command {
	var o listOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List rollouts with their phase, step, weight and message",
		Long: `List rollouts with their phase, step, weight and message. Standalone
Experiments are not rollouts and are left out ('sluice list experiments'
lists them; text output says how many there are).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rollouts, exps, err := o.read(cmd, *conn)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.output == outputJSON {
				return writeLatestJSON(out, rollouts)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tSTRATEGY\tPHASE\tSTEP\tCANARY\tREVISION\tMESSAGE")
			for _, l := range rollouts {
				st := l.status
				step := "-"
				if st.StepIndex != nil {
					step = fmt.Sprintf("%d/%d", min(*st.StepIndex+1, st.StepCount), st.StepCount)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%d%%\t%d (stable %d)\t%s\n", st.Namespace, st.Name, valueOr(st.Strategy, "-"),
					phaseSymbol(st.Phase), st.Phase, step, st.CanaryWeight, st.Revision, st.StableRevision, truncate(readableMessage(st.Message), messageWidth))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if n := len(exps); n > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "(and %d standalone experiment%s: sluice list experiments%s)\n", n, plural(n), o.scope())
			}
			return nil
		},
	}
	o.addFlags(cmd, "rollout")

	var xo listOptions
	exps := &cobra.Command{
		Use:     "experiments",
		Aliases: []string{"experiment"},
		Short:   "List standalone Experiments with their phase, templates and analysis runs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, exps, err := xo.read(cmd, *conn)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if xo.output == outputJSON {
				return writeLatestJSON(out, exps)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tPHASE\tTEMPLATES (AVAILABLE)\tANALYSIS RUNS\tMESSAGE")
			for _, l := range exps {
				st := l.status
				var runs []string
				for _, r := range st.Runs {
					runs = append(runs, r.Name+" "+phaseSymbol(r.Phase)+" "+r.Phase)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\n", st.Namespace, st.Name, phaseSymbol(st.Phase), st.Phase,
					valueOr(templateCounts(st.Experiment), "-"), valueOr(strings.Join(runs, ", "), "-"), truncate(readableMessage(st.Message), messageWidth))
			}
			return tw.Flush()
		},
	}
	xo.addFlags(exps, "experiment")
	cmd.AddCommand(exps)
	return cmd
}

// listOptions are list's flags.
type listOptions struct {
	ns, output string
	all        bool
}

func (o *listOptions) addFlags(cmd *cobra.Command, noun string) {
	cmd.Flags().StringVarP(&o.ns, "namespace", "n", "default", "namespace to list")
	cmd.Flags().BoolVarP(&o.all, "all-namespaces", "A", false, "list every namespace")
	addOutputFlag(cmd, &o.output, "one object per "+noun+" and line")
}

// scope is the flag that lists the same namespaces: " -A", " -n NS" or "".
func (o *listOptions) scope() string {
	switch {
	case o.all:
		return " -A"
	case o.ns != "default":
		return " -n " + o.ns
	}
	return ""
}

// read returns the latest status of the rollouts and of the experiments
// the flags select.
func (o *listOptions) read(cmd *cobra.Command, conn events.ConnConfig) (rollouts, exps []latest, err error) {
	if err := checkOutput(o.output); err != nil {
		return nil, nil, err
	}
	ctx := cmd.Context()
	client, err := connect(ctx, conn)
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	ns := o.ns
	if o.all {
		ns = ""
	}
	all, err := latestStatus(ctx, client, ns)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range all {
		if l.status.Kind == events.KindExperiment {
			exps = append(exps, l)
		} else {
			rollouts = append(rollouts, l)
		}
	}
	return rollouts, exps, nil
}

// writeLatestJSON writes one getJSON object per line.
func writeLatestJSON(out io.Writer, ls []latest) error {
	for _, l := range ls {
		if err := writeJSONLine(out, getJSON{Status: l.status, LastEvent: l.event}); err != nil {
			return err
		}
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// latest is a rollout's latest status.
type latest struct {
	status events.Snapshot
	event  *eventSummary
}

// statusSubjects lists the status subjects of the rollouts in namespace ns
// ("": every namespace), sorted.
func statusSubjects(ctx context.Context, s jetstream.Stream, ns string) ([]string, error) {
	filter := events.StatusRoot + ".>"
	if ns != "" {
		filter = events.StatusRoot + "." + ns + ".*"
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		subjects = append(subjects, subj)
	}
	sort.Strings(subjects)
	return subjects, nil
}

// latestStatus reads the latest status of every rollout in namespace ns
// ("": every namespace). A rollout known only from refusals (a command
// for a name that never existed) is left out.
func latestStatus(ctx context.Context, client *events.Client, ns string) ([]latest, error) {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return nil, err
	}
	subjects, err := statusSubjects(ctx, s, ns)
	if err != nil {
		return nil, err
	}
	current := currentStatus(ctx, client)
	var out []latest
	for _, subj := range subjects {
		msg, err := s.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			continue
		}
		ev, err := events.Decode(msg.Data, msg.Header)
		if err != nil {
			continue
		}
		var v view
		v.apply(ev)
		if v.snapshot.Phase == "" {
			continue
		}
		v = withCurrent(v, current, events.Ref{Namespace: v.snapshot.Namespace, Name: v.snapshot.Name})
		out = append(out, latest{status: v.snapshot, event: v.last})
	}
	return out, nil
}

// completionTimeout bounds how long completing a rollout name waits for
// NATS: a shell waits for it.
const completionTimeout = time.Second

// completeRollouts completes a rollout argument with the names of the
// rollouts on the bus: those in the command's --namespace, or
// namespace/name pairs of every namespace once the word has a slash. It
// completes nothing, silently, when NATS does not answer in time. The
// operator commands use it as get, history and logs do.
func completeRollouts(conn *events.ConnConfig) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, cancel := context.WithTimeout(ctx, completionTimeout)
		defer cancel()
		client, err := connect(ctx, *conn)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer client.Close()
		s, err := client.JetStream().Stream(ctx, events.StreamStatus)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns := "default"
		if f := cmd.Flags().Lookup("namespace"); f != nil {
			ns = f.Value.String()
		}
		qualified := strings.Contains(toComplete, "/")
		if qualified {
			ns = ""
		}
		subjects, err := statusSubjects(ctx, s, ns)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, subj := range subjects {
			parts := strings.Split(subj, ".")
			if len(parts) != 4 {
				continue
			}
			name := parts[3]
			if qualified {
				name = parts[2] + "/" + parts[3]
			}
			if strings.HasPrefix(name, toComplete) {
				names = append(names, name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
