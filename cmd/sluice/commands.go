package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/pkg/events"
)

// cliSource is the CloudEvents source of everything the CLI publishes.
const cliSource = "/sluice/cli"

// defaultAnswerTimeout is how long an operator command waits for its
// answer by default.
const defaultAnswerTimeout = 10 * time.Second

// defaultActor is who the CLI says sends a command: user:$USER.
func defaultActor() string {
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	return "user:" + name
}

// sendCommand publishes one command event for r as actor and, unless
// timeout is 0, waits up to timeout for its answer (follow.Send).
func sendCommand(ctx context.Context, conn events.ConnConfig, r events.Ref, eventType string, data any, actor string, timeout time.Duration) (events.Event, *follow.Answer, error) {
	client, err := connect(ctx, conn)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return events.Event{}, nil, err
		}
		return events.Event{}, nil, fmt.Errorf("%w: %w", events.ErrNotStored, err)
	}
	defer client.Close()
	ev, err := events.New(cliSource, eventType, r.String(), data)
	if err != nil {
		return ev, nil, err
	}
	if actor != "" {
		ev.SetExtension(events.ExtActor, actor)
	}
	a, err := follow.Send(ctx, client, ev, timeout)
	return ev, a, err
}

// commandOptions are the flags every operator command has.
type commandOptions struct {
	ns      string
	actor   string
	timeout time.Duration
	noWait  bool
}

func (o *commandOptions) addFlags(cmd *cobra.Command, noun string) {
	addNamespaceFlagOf(cmd, &o.ns, noun)
	cmd.Flags().StringVar(&o.actor, "as", defaultActor(), "who sends the command (the actor its answer carries), e.g. ci:github/acme/shop")
	cmd.Flags().DurationVar(&o.timeout, "timeout", defaultAnswerTimeout, "how long to wait for the bus to store the command, and then for its answer")
	cmd.Flags().BoolVar(&o.noWait, "no-wait", false, "publish the command and exit without waiting for its answer")
}

// operatorCommand describes one operator command: what it publishes and
// what it acts on.
type operatorCommand struct {
	// verb names the command in its messages: promote, terminate.
	verb string
	// noun is what it acts on: nounRollout, or nounExperiment for a
	// subcommand "experiment <experiment>" of verb.
	noun        string
	short, long string
	eventType   string
	// flags, when set, adds the command's own flags and returns what
	// makes the command's data from them (a usageError for bad values).
	flags func(*cobra.Command) func() any
}

// What operator commands act on.
const (
	nounRollout    = "rollout"
	nounExperiment = "experiment"
)

// newOperatorCommand builds promote, abort, retry, pause, resume, undo,
// restart and delete, and terminate and delete of an experiment: each
// publishes its command and waits for the answer.
func newOperatorCommand(conn *events.ConnConfig, oc operatorCommand) *cobra.Command {
	var o commandOptions
	use := oc.verb + " <rollout>"
	if oc.noun == nounExperiment {
		use = "experiment <experiment>"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: oc.short,
		Long: oc.short + ".\n\n" + oc.long + "\n\n" +
			"The command waits for its answer (--timeout, default 10s; --no-wait to skip) and exits\n" +
			"0 when it took effect, 1 when it was refused (the code and reason are printed:\n" +
			"NotFound, Invalid, NotApplicable, Forbidden) or no answer came, 2 on a usage error.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(conn),
	}
	data := func() any { return nil }
	if oc.flags != nil {
		data = oc.flags(cmd)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		r, err := objectRef(oc.noun, args[0], o.ns)
		if err != nil {
			return err
		}
		if o.timeout <= 0 {
			return usageError{fmt.Errorf("--timeout %s must be positive", o.timeout)}
		}
		payload := data()
		if ue, ok := payload.(usageError); ok {
			return ue
		}
		ctx, timeout := cmd.Context(), o.timeout
		if o.noWait {
			// Only the publish waits, for as long as --timeout.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, o.timeout)
			defer cancel()
			timeout = 0
		}
		ev, a, err := sendCommand(ctx, *conn, r, oc.eventType, payload, o.actor, timeout)
		out := cmd.OutOrStdout()
		switch {
		case errors.Is(err, follow.ErrNoAnswer):
			return fmt.Errorf("%s: %s sent (event %s), but no answer came within %s: is the orchestrator running? (`sluice history %s` shows what happened)", r, oc.verb, ev.ID(), o.timeout, r)
		case errors.Is(err, events.ErrNotPermitted):
			return fmt.Errorf("%s: %s will not act: %w", r, oc.verb, err)
		case errors.Is(err, events.ErrRefused):
			return fmt.Errorf("%s: %s will not act: %w; the stream's limits or state must change before it can be stored (`nats stream info %s`)", r, oc.verb, err, events.StreamCommands)
		case errors.Is(err, events.ErrNotStored):
			return fmt.Errorf("%s: %s will not act: %w; send it again once the NATS cluster has its stream leaders back", r, oc.verb, err)
		case errors.Is(err, events.ErrPublish):
			return fmt.Errorf("%s: %s sent (event %s) but not acknowledged within %s: it may still be stored and act once the bus recovers; `sluice history %s` shows whether it did before you send another: %w", r, oc.verb, ev.ID(), o.timeout, r, err)
		case err != nil:
			return err
		case a == nil:
			fmt.Fprintf(out, "%s: %s sent (event %s)\n", r, oc.verb, ev.ID())
			return nil
		}
		return reportAnswer(out, cmd.ErrOrStderr(), r, oc.verb, a)
	}
	o.addFlags(cmd, oc.noun)
	return cmd
}

// reportAnswer prints a command's answer and fails for a refusal or a
// degraded rollout.
func reportAnswer(out, errOut io.Writer, r events.Ref, use string, a *follow.Answer) error {
	st := a.Data.Status
	switch {
	case a.Refused():
		fmt.Fprintf(errOut, "%s: %s refused (%s): %s\n", r, use, a.Code(), a.Reason())
		return errSilentFailure
	case a.Type == events.TypeRolloutDegraded:
		fmt.Fprintf(errOut, "%s: %s failed: %s\n", r, use, a.Data.Reason)
		return errSilentFailure
	}
	line := fmt.Sprintf("%s: %s done: %s", r, use, strings.TrimPrefix(eventName(a.Type), "experiment "))
	if a.Data.Reason != "" {
		line += " (" + a.Data.Reason + ")"
	}
	if st.Phase != "" {
		line += "; now " + st.Phase
		if st.StepIndex != nil && st.StepCount > 0 {
			line += fmt.Sprintf(", step %d/%d", min(*st.StepIndex+1, st.StepCount), st.StepCount)
		}
		if st.Revision != 0 && st.Kind != events.KindExperiment {
			line += fmt.Sprintf(", revision %d", st.Revision)
		}
	}
	fmt.Fprintln(out, line)
	return nil
}

func newOperatorCommands(conn *events.ConnConfig) []*cobra.Command {
	rollout := func(verb, short, long, eventType string, flags func(*cobra.Command) func() any) *cobra.Command {
		return newOperatorCommand(conn, operatorCommand{verb: verb, noun: nounRollout, short: short, long: long, eventType: eventType, flags: flags})
	}
	deleteCmd := rollout("delete", "Stop managing a rollout: remove its revisions and routes, forget its state",
		"Stops every process (local) or deletes every ReplicaSet (Kubernetes), removes its routes\n"+
			"(the local proxy is closed) and forgets its state: a new apply starts at revision 1.\n"+
			"`sluice delete experiment NAME` deletes a standalone Experiment (a rollout named\n"+
			"\"experiment\" is `sluice delete default/experiment`).",
		events.TypeRolloutDelete, nil)
	deleteCmd.AddCommand(newExperimentCommand(conn, "delete", "Delete a standalone Experiment: stop its pods, forget its state",
		"Terminates it when it has no verdict yet, removes its pods (processes on the local\n"+
			"platform, ReplicaSets on Kubernetes) at once, and forgets it: the name can be requested\n"+
			"again, with another spec. Answered once its pods are gone.",
		events.TypeExperimentDelete))
	return []*cobra.Command{
		rollout("promote", "Skip the current pause or step (--full: every remaining step)",
			"Lifts every pause (a pause step, an inconclusive analysis, a pause command) or, when nothing\n"+
				"is paused, completes the current step. Refused (NotApplicable) when no update is in progress.",
			events.TypeRolloutPromote, func(c *cobra.Command) func() any {
				full := c.Flags().Bool("full", false, "skip every remaining step, analysis and pause")
				return func() any { return events.PromoteData{Full: *full} }
			}),
		rollout("abort", "Abort the update: traffic back to stable, canary scaled down",
			"Answered once the traffic is back on the stable revision.", events.TypeRolloutAbort, nil),
		rollout("retry", "Retry an aborted update from its first step",
			"Also sends again the tasks that failed.", events.TypeRolloutRetry, nil),
		rollout("pause", "Pause the rollout where it is",
			"Lifted by resume or promote.", events.TypeRolloutPause, nil),
		rollout("resume", "Resume a rollout paused by pause (or spec.paused)",
			"A pause step or an inconclusive analysis is lifted by promote, not resume.", events.TypeRolloutResume, nil),
		rollout("undo", "Roll back to a previous revision (default: the one before the current)",
			"Refused (Invalid) when the revision is no longer kept.", events.TypeRolloutUndo, func(c *cobra.Command) func() any {
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
		rollout("restart", "Restart the pods of the stable revision",
			"Replaces every pod of the stable revision, at most maxUnavailable at a time, as Argo's\n"+
				"restart (spec.restartAt) does. Answered once every pod has been replaced; pass a longer\n"+
				"--timeout for many or slow pods.", events.TypeRolloutRestart, nil),
		deleteCmd,
		newTerminateCmd(conn),
	}
}

// newTerminateCmd is Argo's `terminate experiment NAME`; a rollout's
// update is stopped with abort.
func newTerminateCmd(conn *events.ConnConfig) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "terminate experiment <experiment>",
		Short: "Terminate a standalone Experiment before its verdict",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("terminate what? `sluice terminate experiment NAME` (a rollout's update is stopped with `sluice abort NAME`)")}
		},
	}
	cmd.AddCommand(newExperimentCommand(conn, "terminate", "Terminate a running experiment: phase Terminated, its analyses stopped",
		"Ends the experiment without a verdict (phase Terminated), as spec.terminate does; its\n"+
			"pods are scaled down after scaleDownDelaySeconds. Refused (NotApplicable) when it has\n"+
			"already ended.",
		events.TypeExperimentTerminate))
	return cmd
}

// newExperimentCommand is the subcommand "experiment <experiment>" of
// verb, publishing eventType for a standalone Experiment.
func newExperimentCommand(conn *events.ConnConfig, verb, short, long, eventType string) *cobra.Command {
	return newOperatorCommand(conn, operatorCommand{verb: verb, noun: nounExperiment, short: short, long: long, eventType: eventType})
}
