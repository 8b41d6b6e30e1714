package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
)

func newApplyCmd(conn *events.ConnConfig) *cobra.Command {
	var files []string
	var opts applyOptions
	cmd := &cobra.Command{
		Use:   "apply -f FILE [-f FILE...]",
		Short: "Publish AnalysisTemplates, Rollouts and Experiments (--wait: until each completes)",
		Long: `Publish every AnalysisTemplate and ClusterAnalysisTemplate in the files,
then every Rollout and Experiment, as the contract's events. Every -f is
read (a file, a directory of manifests, or - for standard input). The
manifests are checked first, as 'sluice lint' does, templates exactly as the
analyzer will check them; nothing is published when one document is
invalid. Template references are not resolved ('sluice lint --remote' does
that).

With --wait, print a line per step as it happens (step started and
completed, paused and why, analysis verdicts; none with -q), and exit 0
when every rollout completes and every experiment ends Successful; 1 when
a rollout is rejected, aborted, degraded, or an experiment rejected,
Failed, Error, Inconclusive, Terminated or deleted, or either is not done
within --timeout, saying where it stands and what it waits for; 2 on a
usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageError{errors.New("-f FILE is required")}
			}
			if opts.timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %s must be positive", opts.timeout)}
			}
			srcs, err := readSources(cmd.InOrStdin(), files)
			if err != nil {
				return err
			}
			return runApply(cmd.Context(), *conn, srcs, opts, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory (multi-document YAML), or - for standard input; repeatable")
	cmd.Flags().StringVarP(&opts.namespace, "namespace", "n", spec.DefaultNamespace, "namespace for manifests that name none")
	cmd.Flags().BoolVar(&opts.wait, "wait", false, "wait until every rollout completes, is rejected or aborted, and every experiment has its verdict, printing their progress")
	cmd.Flags().DurationVar(&opts.timeout, "timeout", 10*time.Minute, "with --wait, how long to wait")
	cmd.Flags().BoolVar(&opts.strict, "strict", false, "unknown fields are errors, not warnings")
	cmd.Flags().BoolVarP(&opts.quiet, "quiet", "q", false, "print only problems: no progress, no published lines")
	cmd.Flags().StringVar(&opts.actor, "as", defaultActor(), "who applies (the actor the events it causes carry), e.g. ci:github/acme/shop")
	return cmd
}

// applyOptions are apply's flags.
type applyOptions struct {
	namespace   string
	wait, quiet bool
	strict      bool
	timeout     time.Duration
	actor       string
}

// outbound is one event apply publishes.
type outbound struct {
	ref   events.Ref
	typ   string
	json  []byte
	label string
	// rollout is set for a Rollout: its steps tell what a pause waits for.
	rollout *spec.Rollout
	// experiment is set for an Experiment: what it waits for.
	experiment *spec.Experiment
}

// toOutbound returns the event apply publishes for o, with namespace ns
// when o names none. It returns an error for a kind apply does not
// publish.
func toOutbound(o spec.Object, ns string) (outbound, error) {
	var ob outbound
	var data any
	switch o := o.(type) {
	case *spec.AnalysisTemplate:
		c := *o
		c.Namespace = valueOr(c.Namespace, ns)
		ob = outbound{ref: events.Ref{Namespace: c.Namespace, Name: c.Name}, typ: events.TypeAnalysisTemplateApply, label: spec.Describe(&c)}
		data = &c
	case *spec.ClusterAnalysisTemplate:
		ob = outbound{ref: events.Ref{Namespace: events.ClusterScope, Name: o.Name}, typ: events.TypeAnalysisTemplateApply, label: spec.Describe(o)}
		data = o
	case *spec.Rollout:
		c := *o
		c.Namespace = valueOr(c.Namespace, ns)
		ob = outbound{ref: events.Ref{Namespace: c.Namespace, Name: c.Name}, typ: events.TypeRolloutRequested, label: spec.Describe(&c), rollout: &c}
		data = &c
	case *spec.Experiment:
		c := *o
		c.Namespace = valueOr(c.Namespace, ns)
		ob = outbound{ref: events.Ref{Namespace: c.Namespace, Name: c.Name}, typ: events.TypeExperimentRequested, label: spec.Describe(&c), experiment: &c}
		data = &c
	default:
		return ob, fmt.Errorf("%s cannot be applied: only Rollout, Experiment, AnalysisTemplate and ClusterAnalysisTemplate", spec.Describe(o))
	}
	raw, err := json.Marshal(data)
	ob.json = raw
	return ob, err
}

func runApply(ctx context.Context, conn events.ConnConfig, srcs []spec.Source, opts applyOptions, out io.Writer) error {
	report, err := lintManifests(ctx, srcs, lintConfig{Strict: opts.strict, Namespace: opts.namespace, SkipReferences: true})
	if err != nil {
		return err
	}
	if !report.Valid() {
		fmt.Fprintln(out, report.String())
		return errSilentFailure
	}
	if len(report.Findings) > 0 {
		fmt.Fprintln(out, report.String())
	}
	var templates, rollouts []outbound
	kinds := map[events.Ref]string{}
	for _, d := range report.Documents {
		ob, err := toOutbound(d.Object, opts.namespace)
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", valueOr(d.File, "input"), d.Number, err)
		}
		if ob.rollout == nil && ob.experiment == nil {
			templates = append(templates, ob)
			continue
		}
		// Rollouts and Experiments share their subjects.
		kind := spec.KindRollout
		if ob.experiment != nil {
			kind = spec.KindExperiment
		}
		if k, ok := kinds[ob.ref]; ok && k != kind {
			return fmt.Errorf("%s: document %d: %s: the files also hold a %s of that name, and a namespace holds one Rollout or Experiment of a name", valueOr(d.File, "input"), d.Number, ob.label, k)
		}
		kinds[ob.ref] = kind
		rollouts = append(rollouts, ob)
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
	if opts.wait && len(rollouts) > 0 {
		if w, err = newApplyWatch(ctx, client, rollouts); err != nil {
			return err
		}
	}
	ids := map[events.Ref]string{}
	for _, o := range append(templates, rollouts...) {
		ev, err := events.New(cliSource, o.typ, o.ref.String(), json.RawMessage(o.json))
		if err != nil {
			return err
		}
		if opts.actor != "" {
			ev.SetExtension(events.ExtActor, opts.actor)
		}
		if _, err := client.Publish(ctx, events.CommandSubject(o.ref), ev); err != nil {
			return err
		}
		if o.typ == events.TypeRolloutRequested || o.typ == events.TypeExperimentRequested {
			ids[o.ref] = ev.ID()
		}
		if !opts.quiet {
			fmt.Fprintf(out, "%s published\n", o.label)
		}
	}
	if w == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	return w.wait(wctx, ids, progress{out: out, quiet: opts.quiet}, opts.timeout)
}

// applyWatch follows the status events of the applied rollouts and
// experiments.
type applyWatch struct {
	status      *follow.Follower
	rollouts    map[events.Ref]*spec.Rollout
	experiments map[events.Ref]*spec.Experiment
}

func newApplyWatch(ctx context.Context, client *events.Client, rollouts []outbound) (*applyWatch, error) {
	w := &applyWatch{rollouts: map[events.Ref]*spec.Rollout{}, experiments: map[events.Ref]*spec.Experiment{}}
	refs := make([]events.Ref, len(rollouts))
	for i, r := range rollouts {
		refs[i] = r.ref
		if r.experiment != nil {
			w.experiments[r.ref] = r.experiment
		} else {
			w.rollouts[r.ref] = r.rollout
		}
	}
	var err error
	if w.status, err = follow.Status(ctx, client, refs...); err != nil {
		return nil, err
	}
	return w, nil
}

// outcome is where an applied rollout that did not finish stands
// (describeWait).
type outcome struct {
	revision int64 // set once the request is accepted
	accepted bool
	last     *events.Snapshot // the latest status seen once accepted
}

// progress prints what apply --wait sees, unless quiet.
type progress struct {
	out   io.Writer
	quiet bool
}

func (p progress) printf(format string, args ...any) {
	if !p.quiet {
		fmt.Fprintf(p.out, format, args...)
	}
}

// line prints "<ref>: line", unless line is empty.
func (p progress) line(r events.Ref, line string) {
	if line != "" {
		p.printf("%s: %s\n", r, line)
	}
}

// accepted prints an accepted request's warnings (even when quiet), then
// line.
func (p progress) accepted(r events.Ref, d events.StatusData, line string) {
	for _, warn := range d.Warnings {
		fmt.Fprintf(p.out, "%s: warning: %s\n", r, warn)
	}
	p.line(r, line)
}

// wait reads status events until every rollout and experiment in ids
// (name -> request event id) has an outcome or ctx ends.
func (w *applyWatch) wait(ctx context.Context, ids map[events.Ref]string, p progress, timeout time.Duration) error {
	state := map[events.Ref]*follow.Update{}
	exps := map[events.Ref]*follow.Experiment{}
	for r, id := range ids {
		if w.experiments[r] != nil {
			exps[r] = &follow.Experiment{Ref: r, RequestID: id}
		} else {
			state[r] = &follow.Update{Ref: r, RequestID: id}
		}
	}
	pending, failed := len(ids), false
	for pending > 0 {
		got, err := w.status.Next(ctx)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err != nil {
			var lines []string
			for r, u := range state {
				if !u.Done {
					lines = append(lines, r.String()+" "+describeWait(&outcome{revision: u.Revision, accepted: u.Accepted, last: u.Last}, w.rollouts[r]))
				}
			}
			for r, x := range exps {
				if !x.Done {
					lines = append(lines, r.String()+" "+describeExperimentWait(x, w.experiments[r]))
				}
			}
			slices.Sort(lines)
			return fmt.Errorf("timed out after %s: %s", timeout, strings.Join(lines, "; "))
		}
		ev := got.Event
		r, err := events.ParseRef(ev.Subject())
		if err != nil {
			continue
		}
		var d events.StatusData
		var done bool
		var failure, success string
		if x, ok := exps[r]; ok {
			if x.Done || events.DecodeData(ev, &d) != nil || x.Observe(ev, d) == follow.Ignored {
				continue
			}
			switch {
			case ev.Type() == events.TypeExperimentAccepted:
				p.accepted(r, d, "accepted, "+d.Status.Phase)
			case !x.Done:
				p.line(r, experimentLine(ev.Type(), d))
			}
			done, failure, success = x.Done, x.Failure, experimentLine(events.TypeExperimentCompleted, d)
		} else if u, ok := state[r]; ok && !u.Done {
			if events.DecodeData(ev, &d) != nil {
				continue
			}
			switch u.Observe(ev, d) {
			case follow.Accepted, follow.Completed:
				if ev.Type() == events.TypeRolloutAccepted {
					p.accepted(r, d, fmt.Sprintf("accepted as revision %d", d.Status.Revision))
				}
			case follow.Progress:
				p.line(r, progressLine(ev.Type(), d))
			}
			done, failure, success = u.Done, u.Failure, fmt.Sprintf("completed (revision %d)", d.Status.Revision)
		} else {
			continue
		}
		if done {
			pending--
			if failure != "" {
				failed = true
				fmt.Fprintf(p.out, "%s: %s\n", r, failure)
			} else {
				p.line(r, success)
			}
		}
	}
	if failed {
		return errSilentFailure
	}
	return nil
}

// progressLine renders a status event of the applied revision as a line
// of apply --wait's progress, or "" for events not worth one (measurements:
// the analysis verdict says it).
func progressLine(typ string, d events.StatusData) string {
	s := d.Status
	switch typ {
	case events.TypeRolloutStepStarted, events.TypeRolloutStepCompleted:
		if d.Step == nil {
			return ""
		}
		verb := "started"
		if typ == events.TypeRolloutStepCompleted {
			verb = "completed"
		}
		if s.Strategy == string(spec.StrategyBlueGreen) {
			return fmt.Sprintf("%s %s", valueOr(d.Step.Detail, d.Step.Action), verb)
		}
		return fmt.Sprintf("%s %s: %s", stepName(d.Step.Index, s), verb, valueOr(d.Step.Detail, d.Step.Action))
	case events.TypeRolloutPaused:
		return "paused: " + valueOr(d.Reason, valueOr(s.Message, pauseReasons(s)))
	case events.TypeRolloutResumed:
		return "resumed"
	case events.TypeAnalysisCompleted:
		a := d.Analysis
		if a == nil {
			a = s.Analysis
		}
		if a == nil {
			return ""
		}
		line := fmt.Sprintf("analysis %s: %s (%s)", a.Name, a.Phase, analysisCounts(a))
		if a.Message != "" {
			line += ": " + a.Message
		}
		return line
	}
	return ""
}

// stepName is "step 2/5" for the step at index i (counting from 0).
func stepName(i int32, s events.Snapshot) string {
	if s.StepCount > 0 {
		return fmt.Sprintf("step %d/%d", i+1, s.StepCount)
	}
	return fmt.Sprintf("step %d", i+1)
}

func analysisCounts(a *events.AnalysisSummary) string {
	return fmt.Sprintf("%d successful, %d failed, %d inconclusive, %d errors", a.Successful, a.Failed, a.Inconclusive, a.Error)
}

func pauseReasons(s events.Snapshot) string {
	var rs []string
	for _, c := range s.PauseConditions {
		rs = append(rs, c.Reason)
	}
	return strings.Join(rs, ", ")
}

// describeWait says where a rollout that did not finish stands and what it
// waits for, from the last status seen and its manifest.
func describeWait(o *outcome, ro *spec.Rollout) string {
	switch {
	case !o.accepted:
		return "was not accepted: no answer from the orchestrator (is it running? `sluice dev` runs one)"
	case o.last == nil:
		return fmt.Sprintf("was accepted as revision %d; no status since", o.revision)
	}
	s := *o.last
	where := fmt.Sprintf("revision %d", s.Revision)
	if s.StepIndex != nil {
		where = stepName(*s.StepIndex, s)
		if i := int(*s.StepIndex); ro != nil && ro.Spec.Strategy.Canary != nil && i < len(ro.Spec.Strategy.Canary.Steps) {
			where += " (" + stepAction(ro.Spec.Strategy.Canary.Steps[i]) + ")"
		}
	}
	var waits []string
	for _, c := range s.PauseConditions {
		switch c.Reason {
		case machine.PauseCanaryStep:
			if pause := currentPause(s, ro); pause != nil && pause.Duration == nil {
				waits = append(waits, "waiting for promote (an indefinite pause)")
			} else {
				waits = append(waits, fmt.Sprintf("a timed pause, since %s", c.StartTime.Format(time.TimeOnly)))
			}
		case machine.PauseBlueGreen:
			waits = append(waits, "waiting for promote (the blue/green preview)")
		case machine.PauseInconclusive:
			waits = append(waits, "waiting for promote or abort (an inconclusive analysis)")
		case machine.PauseInconclusiveExperiment:
			waits = append(waits, "waiting for promote or abort (an inconclusive experiment)")
		default:
			waits = append(waits, c.Reason)
		}
	}
	if a := s.Analysis; a != nil && (a.Phase == string(spec.AnalysisPhaseRunning) || a.Phase == string(spec.AnalysisPhasePending)) {
		waits = append(waits, fmt.Sprintf("analysis %s %s (%s)", a.Name, strings.ToLower(a.Phase), analysisCounts(a)))
	}
	if rp := s.Replicas; rp.Available < rp.Desired {
		waits = append(waits, fmt.Sprintf("replicas available %d/%d", rp.Available, rp.Desired))
	}
	if len(waits) == 0 && s.Message != "" {
		waits = append(waits, s.Message)
	}
	line := fmt.Sprintf("at %s, %s", where, s.Phase)
	if len(waits) > 0 {
		line += ": " + strings.Join(waits, "; ")
	}
	return line
}

// currentPause is the pause step the snapshot is at, if any.
func currentPause(s events.Snapshot, ro *spec.Rollout) *spec.RolloutPause {
	if s.StepIndex == nil || ro == nil || ro.Spec.Strategy.Canary == nil {
		return nil
	}
	steps := ro.Spec.Strategy.Canary.Steps
	if i := int(*s.StepIndex); i < len(steps) {
		return steps[i].Pause
	}
	return nil
}

// stepAction names a step's kind as StepInfo.Action does.
func stepAction(st spec.CanaryStep) string {
	switch {
	case st.SetWeight != nil:
		return "setWeight"
	case st.Pause != nil:
		return "pause"
	case st.Analysis != nil:
		return "analysis"
	case st.SetCanaryScale != nil:
		return "setCanaryScale"
	case st.SetHeaderRoute != nil:
		return "setHeaderRoute"
	case st.SetMirrorRoute != nil:
		return "setMirrorRoute"
	case st.Experiment != nil:
		return "experiment"
	}
	return "step"
}

// experimentLine renders a status event of an applied experiment as a line
// of apply --wait's progress, or "" for events not worth one.
func experimentLine(typ string, d events.StatusData) string {
	s := d.Status
	switch typ {
	case events.TypeExperimentRunning:
		return "running: every template available (" + templateCounts(s.Experiment) + ")"
	case events.TypeExperimentCompleted, events.TypeExperimentTerminated:
		line := "completed: " + s.Phase
		if typ == events.TypeExperimentTerminated {
			line = "terminated: " + s.Phase
		}
		if m := valueOr(s.Message, d.Reason); m != "" {
			line += ": " + m
		}
		return line
	case events.TypeAnalysisCompleted:
		return progressLine(typ, d)
	}
	return ""
}

// templateCounts is "baseline 1/1, canary 0/1": each template's available
// pods of those asked for.
func templateCounts(x *events.ExperimentSummary) string {
	if x == nil {
		return ""
	}
	var parts []string
	for _, t := range x.Templates {
		parts = append(parts, fmt.Sprintf("%s %d/%d", t.Name, t.Available, t.Replicas))
	}
	return strings.Join(parts, ", ")
}

// describeExperimentWait says where an applied experiment that has no
// verdict yet stands and what it waits for.
func describeExperimentWait(x *follow.Experiment, ex *spec.Experiment) string {
	switch {
	case !x.Accepted:
		return describeWait(&outcome{}, nil)
	case x.Last == nil:
		return "was accepted; no status since"
	}
	s := *x.Last
	var waits []string
	switch s.Phase {
	case events.ExperimentPhasePending:
		waits = append(waits, "templates available "+templateCounts(s.Experiment))
	case events.ExperimentPhaseRunning:
		var running []string
		for _, r := range s.Runs {
			if r.Phase == string(spec.AnalysisPhaseRunning) || r.Phase == string(spec.AnalysisPhasePending) {
				running = append(running, fmt.Sprintf("%s %s", r.Name, strings.ToLower(r.Phase)))
			}
		}
		if len(running) > 0 {
			waits = append(waits, "analysis "+strings.Join(running, ", "))
		}
		if ex != nil {
			if ex.Spec.Duration != "" {
				waits = append(waits, "its duration "+string(ex.Spec.Duration))
			} else if !slices.ContainsFunc(ex.Spec.Analyses, func(a spec.RolloutExperimentStepAnalysisTemplateRef) bool { return a.RequiredForCompletion }) {
				waits = append(waits, "no duration and no analysis requiredForCompletion: it runs until terminated (sluice terminate experiment "+ex.Name+")")
			}
		}
	}
	if len(waits) == 0 && s.Message != "" {
		waits = append(waits, s.Message)
	}
	line := s.Phase
	if len(waits) > 0 {
		line += ": " + strings.Join(waits, "; ")
	}
	return line
}
