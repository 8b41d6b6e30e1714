package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

func newApplyCmd(conn *events.ConnConfig) *cobra.Command {
	var files []string
	var ns string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "apply -f FILE [-f FILE...]",
		Short: "Publish AnalysisTemplates and Rollouts (--wait: until every rollout completes)",
		Long: `Publish every AnalysisTemplate and ClusterAnalysisTemplate in FILE, then
every Rollout, as the contract's events. The manifests are checked first, as
'sluice lint' does; nothing is published when one is invalid.

With --wait, exit 0 when every rollout in FILE completes, 1 when one is
rejected, aborted, degraded or not complete within --timeout, and print why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageError{errors.New("-f FILE is required")}
			}
			if timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %s must be positive", timeout)}
			}
			var data []byte
			for _, f := range files {
				b, err := readInput(cmd.InOrStdin(), f)
				if err != nil {
					return err
				}
				data = append(append(data, "\n---\n"...), b...)
			}
			return runApply(cmd.Context(), *conn, data, ns, wait, timeout, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file (multi-document YAML), or - for standard input; repeatable")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace for manifests that name none")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every rollout completes, is rejected or aborted")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --wait, how long to wait")
	return cmd
}

// outbound is one event apply publishes.
type outbound struct {
	ref   events.Ref
	typ   string
	data  any
	label string
}

func runApply(ctx context.Context, conn events.ConnConfig, data []byte, ns string, wait bool, timeout time.Duration, out io.Writer) error {
	report := spec.Lint(data)
	if !report.Valid() {
		fmt.Fprintln(out, report.String())
		return errSilentFailure
	}
	if len(report.Findings) > 0 {
		fmt.Fprintln(out, report.String())
	}
	docs, err := spec.Decode(data)
	if err != nil {
		return err
	}
	var templates, rollouts []outbound
	for _, d := range docs {
		switch o := d.Object.(type) {
		case *spec.AnalysisTemplate:
			if o.Namespace == "" {
				o.Namespace = ns
			}
			templates = append(templates, outbound{events.Ref{Namespace: o.Namespace, Name: o.Name}, events.TypeAnalysisTemplateApply, o, spec.Describe(o)})
		case *spec.ClusterAnalysisTemplate:
			templates = append(templates, outbound{events.Ref{Namespace: events.ClusterScope, Name: o.Name}, events.TypeAnalysisTemplateApply, o, spec.Describe(o)})
		case *spec.Rollout:
			if o.Namespace == "" {
				o.Namespace = ns
			}
			rollouts = append(rollouts, outbound{events.Ref{Namespace: o.Namespace, Name: o.Name}, events.TypeRolloutRequested, o, spec.Describe(o)})
		default:
			return fmt.Errorf("document %d: %s cannot be applied: only Rollout, AnalysisTemplate and ClusterAnalysisTemplate", d.Number, spec.Describe(d.Object))
		}
	}
	if len(templates)+len(rollouts) == 0 {
		return errors.New("nothing to apply")
	}

	client, err := connect(ctx, conn)
	if err != nil {
		return err
	}
	defer client.Close()

	// Start watching before publishing so no outcome is missed.
	var w *applyWatch
	if wait && len(rollouts) > 0 {
		if w, err = newApplyWatch(ctx, client, rollouts); err != nil {
			return err
		}
	}
	ids := map[events.Ref]string{}
	for _, o := range append(templates, rollouts...) {
		raw, err := json.Marshal(o.data)
		if err != nil {
			return err
		}
		ev, err := events.New(cliSource, o.typ, o.ref.String(), json.RawMessage(raw))
		if err != nil {
			return err
		}
		if _, err := client.Publish(ctx, events.CommandSubject(o.ref), ev); err != nil {
			return err
		}
		if o.typ == events.TypeRolloutRequested {
			ids[o.ref] = ev.ID()
		}
		fmt.Fprintf(out, "%s published\n", o.label)
	}
	if w == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return w.wait(wctx, ids, out)
}

// applyWatch follows the status events of the applied rollouts.
type applyWatch struct {
	cons jetstream.Consumer
}

func newApplyWatch(ctx context.Context, client *events.Client, rollouts []outbound) (*applyWatch, error) {
	s, err := client.JetStream().Stream(ctx, events.StreamStatus)
	if err != nil {
		return nil, err
	}
	var subjects []string
	for _, r := range rollouts {
		subjects = append(subjects, events.StatusSubject(r.ref))
	}
	// Start right after the stream's current end: a DeliverNew ordered
	// consumer is recreated "at new" until its first message, and would
	// skip events published in between.
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
	})
	if err != nil {
		return nil, err
	}
	return &applyWatch{cons: cons}, nil
}

// outcome of one applied rollout.
type outcome struct {
	revision int64 // set once the request is accepted
	accepted bool
	done     bool
	failed   string
}

// wait reads status events until every rollout in ids (rollout -> request
// event id) has an outcome or ctx ends.
func (w *applyWatch) wait(ctx context.Context, ids map[events.Ref]string, out io.Writer) error {
	state := map[events.Ref]*outcome{}
	for r := range ids {
		state[r] = &outcome{}
	}
	pending := len(ids)
	for pending > 0 {
		msg, err := w.cons.Next(jetstream.FetchMaxWait(time.Second))
		if ctx.Err() != nil {
			var waiting []string
			for r, o := range state {
				if !o.done {
					waiting = append(waiting, r.String())
				}
			}
			return fmt.Errorf("timed out waiting for %s", strings.Join(waiting, ", "))
		}
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			return err
		}
		ev, err := events.Decode(msg.Data(), msg.Headers())
		if err != nil {
			continue
		}
		r, err := events.ParseRef(ev.Subject())
		if err != nil {
			continue
		}
		o, ok := state[r]
		if !ok || o.done {
			continue
		}
		var d events.StatusData
		if events.DecodeData(ev, &d) != nil {
			continue
		}
		s := d.Status
		switch {
		case ev.Type() == events.TypeRolloutRejected && ev.ID() == "rejected/"+ids[r]:
			o.failed = "rejected: " + strings.Join(d.Errors, "; ")
		case ev.Type() == events.TypeRolloutAccepted && !o.accepted:
			o.accepted, o.revision = true, s.Revision
			for _, warn := range d.Warnings {
				fmt.Fprintf(out, "%s: warning: %s\n", r, warn)
			}
			if s.Phase == events.PhaseHealthy && s.Revision == s.StableRevision && !s.Aborted {
				o.done = true // nothing to roll out
			}
		case !o.accepted:
			// Events of earlier activity, before our request was taken.
		case ev.Type() == events.TypeRolloutCompleted && s.Revision >= o.revision:
			o.done = true
		case ev.Type() == events.TypeRolloutAborted && s.Revision == o.revision:
			o.failed = "aborted: " + valueOr(d.Reason, s.Message)
		case s.Phase == events.PhaseDegraded && s.Revision == o.revision:
			o.failed = "degraded: " + valueOr(s.Message, d.Reason)
		case s.Revision > o.revision:
			o.failed = fmt.Sprintf("superseded by revision %d", s.Revision)
		}
		if o.failed != "" {
			o.done = true
		}
		if o.done {
			pending--
			if o.failed != "" {
				fmt.Fprintf(out, "%s: %s\n", r, o.failed)
			} else {
				fmt.Fprintf(out, "%s: completed (revision %d)\n", r, s.Revision)
			}
		}
	}
	for _, o := range state {
		if o.failed != "" {
			return errSilentFailure
		}
	}
	return nil
}
