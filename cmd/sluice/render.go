package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/local"
)

// Output formats of -o/--output.
const (
	outputText = "text"
	outputJSON = "json"
)

// addOutputFlag registers -o/--output on cmd; checkOutput validates it.
func addOutputFlag(cmd *cobra.Command, output *string, jsonMeaning string) {
	cmd.Flags().StringVarP(output, "output", "o", outputText, "output format: text, or json ("+jsonMeaning+")")
}

func checkOutput(output string) error {
	if output != outputText && output != outputJSON {
		return usageError{fmt.Errorf("--output %q: want text or json", output)}
	}
	return nil
}

// writeJSONLine writes v as one line of JSON: the form every -o json takes,
// so a script reads a followed stream line by line.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// useColor reports whether output to w is coloured: on a terminal, unless
// NO_COLOR is set (https://no-color.org).
func useColor(w io.Writer) bool {
	return os.Getenv("NO_COLOR") == "" && isTerminal(w)
}

// ANSI sequences.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBlue   = "\x1b[34m"
	// ansiHome moves the cursor to the top left; ansiClearLine clears the
	// rest of a line and ansiClearBelow the rest of the screen. A redraw
	// overwrites the previous frame in place, which does not flicker as
	// clearing the screen first does.
	ansiHome       = "\x1b[H"
	ansiClearLine  = "\x1b[K"
	ansiClearBelow = "\x1b[J"
)

// redrawn is frame written over the previous one on a terminal.
func redrawn(frame string) string {
	return ansiHome + strings.ReplaceAll(frame, "\n", ansiClearLine+"\n") + ansiClearBelow
}

// painter colours text when enabled.
type painter bool

func (p painter) paint(code, s string) string {
	if !p || s == "" {
		return s
	}
	return code + s + ansiReset
}

// phase renders a phase with its symbol, in the phase's colour.
func (p painter) phase(phase string) string {
	code := ""
	switch phase {
	case events.PhaseHealthy, events.ExperimentPhaseSuccessful:
		code = ansiGreen
	case events.PhaseProgressing, events.ExperimentPhasePending, events.ExperimentPhaseRunning:
		code = ansiBlue
	case events.PhasePaused, events.ExperimentPhaseInconclusive:
		code = ansiYellow
	case events.PhaseDegraded, events.ExperimentPhaseFailed, events.ExperimentPhaseError:
		code = ansiRed
	case events.ExperimentPhaseTerminated:
		code = ansiDim
	}
	return p.paint(code, phaseSymbol(phase)+" "+phase)
}

// phaseSymbol marks a phase (a rollout's or an experiment's) the way
// `kubectl argo rollouts get` does.
func phaseSymbol(phase string) string {
	switch phase {
	case events.PhaseHealthy, events.ExperimentPhaseSuccessful:
		return "✔"
	case events.PhaseProgressing, events.ExperimentPhaseRunning:
		return "◌"
	case events.ExperimentPhasePending:
		return "◷"
	case events.PhasePaused:
		return "॥"
	case events.PhaseDegraded, events.ExperimentPhaseFailed:
		return "✖"
	case events.ExperimentPhaseError:
		return "⚠"
	case events.ExperimentPhaseTerminated:
		return "•"
	}
	return "?"
}

// shortType is an event type without the io.sluice. prefix, as the
// EVENT columns of history and events show it: rollout.paused.v1,
// rollout.command.refused.v1.
func shortType(t string) string {
	return strings.TrimPrefix(t, "io.sluice.")
}

// eventName is the shortest name of an event type for a sentence: paused,
// degraded, command refused, analysis measured, promote.
func eventName(t string) string {
	s := strings.TrimSuffix(strings.TrimPrefix(t, "io.sluice."), ".v1")
	s = strings.TrimPrefix(s, "rollout.")
	return strings.ReplaceAll(s, ".", " ")
}

// who says who caused an event: "by user:alice (command 0b7c…)", or ""
// when the event carries neither extension.
func who(ev events.Event) string {
	actor, cause := events.Extension(ev, events.ExtActor), events.Extension(ev, events.ExtCausationID)
	var parts []string
	if actor != "" {
		parts = append(parts, "by "+actor)
	}
	if cause != "" {
		parts = append(parts, "(command "+cause+")")
	}
	return strings.Join(parts, " ")
}

// refusal renders a command.refused answer: "promote refused
// (NotApplicable): nothing to promote".
func refusal(c *events.CommandAnswer) string {
	s := eventName(c.Type) + " refused"
	if c.Code != "" {
		s += " (" + c.Code + ")"
	}
	if c.Reason != "" {
		s += ": " + c.Reason
	}
	return s
}

// eventSummary is the latest status event of a rollout as `get` shows it:
// what happened, when, and who asked.
type eventSummary struct {
	Type        string                `json:"type"`
	Time        time.Time             `json:"time"`
	Actor       string                `json:"actor,omitempty"`
	CausationID string                `json:"causationid,omitempty"`
	Reason      string                `json:"reason,omitempty"`
	Command     *events.CommandAnswer `json:"command,omitempty"`
}

// frame is everything one rendering of `get` shows.
type frame struct {
	view
	now   time.Time
	paint painter
}

// renderSnapshot writes a rollout's status for people: phase, revisions,
// step, weights, replicas, analysis, the latest measurements and event,
// and, on the local platform, the proxy and the processes.
func renderSnapshot(w io.Writer, f frame) {
	s, p := f.snapshot, f.paint
	if s.Kind == events.KindExperiment {
		renderExperiment(w, f)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Name:", p.paint(ansiBold, s.Name))
	row("Namespace:", s.Namespace)
	status := p.phase(s.Phase)
	var reasons []string
	for _, pc := range s.PauseConditions {
		reasons = append(reasons, pc.Reason)
	}
	if len(reasons) > 0 {
		status += " (" + strings.Join(reasons, ", ") + ")"
	}
	if left, ok := f.pauseLeft(f.now); ok {
		status += fmt.Sprintf(": resumes in %s", left.Round(time.Second))
	}
	row("Status:", status)
	if s.Message != "" {
		row("Message:", s.Message)
	}
	if s.Aborted {
		row("Aborted:", "yes: traffic is on the stable revision")
	}
	row("Strategy:", valueOr(s.Strategy, "-"))
	if s.StepIndex != nil {
		step := fmt.Sprintf("%d/%d", min(*s.StepIndex+1, s.StepCount), s.StepCount)
		if d := f.steps[*s.StepIndex]; d != "" {
			step += " (" + d + ")"
		}
		row("  Step:", step)
	} else if s.StepCount > 0 {
		row("  Step:", fmt.Sprintf("-/%d", s.StepCount))
	}
	weights := fmt.Sprintf("canary %d%%, stable %d%%", s.CanaryWeight, s.StableWeight)
	if set, ok := f.setWeight(); ok && set != s.CanaryWeight {
		weights += fmt.Sprintf(" (set %d%%, traffic not there yet)", set)
	}
	row("  Weights:", weights)
	row("Revision:", fmt.Sprintf("%d (stable %d)", s.Revision, s.StableRevision))
	if s.PodHash != "" {
		row("  Pod hash:", fmt.Sprintf("%s (stable %s)", s.PodHash, s.StablePodHash))
	}
	r := s.Replicas
	row("Replicas:", fmt.Sprintf("desired %d, current %d, updated %d, ready %d, available %d", r.Desired, r.Current, r.Updated, r.Ready, r.Available))
	if f.listen != "" {
		row("Proxy:", proxyURL(f.listen))
	}
	analysisRows(row, s.Analysis)
	renderRecent(row, f)
	tw.Flush()
	renderProcesses(w, s, f.processes, f.now, p)
}

// analysisRows writes the rows of the analysis run in progress or last
// finished, if any.
func analysisRows(row func(k, v string), a *events.AnalysisSummary) {
	if a == nil {
		return
	}
	row("Analysis:", fmt.Sprintf("%s %s  ✔ %d  ✖ %d  ? %d  ⚠ %d", a.Name, a.Phase, a.Successful, a.Failed, a.Inconclusive, a.Error))
	if a.Message != "" {
		row("  Message:", a.Message)
	}
}

// renderRecent writes the rows every object's rendering ends with: the
// latest measurements, the latest event and who caused it, and when the
// status was last updated.
func renderRecent(row func(k, v string), f frame) {
	s, p := f.snapshot, f.paint
	if len(f.measurements) > 0 {
		row("Measurements:", "")
		for _, m := range f.measurements {
			line := fmt.Sprintf("%s %s = %s %s", m.FinishedAt.UTC().Format(time.TimeOnly), m.Metric, valueOr(m.Value, "-"), m.Phase)
			if m.Message != "" {
				line += ": " + m.Message
			}
			row("", line)
		}
	}
	if e := f.last; e != nil {
		line := e.Time.UTC().Format(time.TimeOnly) + " " + eventName(e.Type)
		if e.Actor != "" {
			line += " by " + e.Actor
		}
		if e.CausationID != "" {
			line += " (command " + e.CausationID + ")"
		}
		row("Last event:", line)
		if e.Command != nil {
			row("  Refused:", p.paint(ansiYellow, refusal(e.Command)))
		} else if e.Reason != "" {
			row("  Reason:", e.Reason)
		}
	}
	if !s.UpdatedAt.IsZero() {
		row("Updated:", s.UpdatedAt.UTC().Format(time.RFC3339))
	}
}

// renderExperiment writes a standalone Experiment's status for people:
// phase, each template's pods, its analysis runs, the latest measurements
// and event, and, on the local platform, the processes.
func renderExperiment(w io.Writer, f frame) {
	s, p := f.snapshot, f.paint
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Name:", p.paint(ansiBold, s.Name))
	row("Namespace:", s.Namespace)
	row("Kind:", events.KindExperiment)
	row("Status:", p.phase(s.Phase))
	if s.Message != "" {
		row("Message:", s.Message)
	}
	if x := s.Experiment; x != nil {
		for _, t := range []struct {
			label string
			at    time.Time
		}{{"Available at:", x.AvailableAt}, {"Ended at:", x.EndedAt}, {"Scale down at:", x.ScaleDownAt}} {
			if !t.at.IsZero() {
				row(t.label, t.at.UTC().Format(time.RFC3339))
			}
		}
		row("Templates:", "")
		for _, t := range x.Templates {
			line := fmt.Sprintf("%s\treplicaSet %s\tavailable %d/%d\thash %s", t.Name, t.ReplicaSet, t.Available, t.Replicas, t.PodHash)
			if t.Service != "" {
				line += "\tservice " + t.Service
			}
			row("", line)
		}
	}
	if len(s.Runs) == 0 {
		// Its runs are gone from the status once it has ended; the last
		// verdict stays.
		analysisRows(row, s.Analysis)
	} else {
		row("Analysis runs:", "")
		for _, r := range s.Runs {
			line := r.Name + "\t" + p.phase(r.Phase)
			if r.Message != "" {
				line += ": " + r.Message
			}
			row("", line)
		}
	}
	renderRecent(row, f)
	tw.Flush()
	renderProcesses(w, s, f.processes, f.now, p)
}

// renderProcesses writes the revision tree of the local platform: each
// revision with its role, and below it each process.
func renderProcesses(w io.Writer, s events.Snapshot, procs []local.Process, now time.Time, p painter) {
	if len(procs) == 0 {
		return
	}
	fmt.Fprintln(w, "Processes:")
	var groups [][]local.Process
	for i, pr := range procs {
		if i == 0 || pr.Entry() != procs[i-1].Entry() {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], pr)
	}
	for gi, g := range groups {
		lastGroup := gi == len(groups)-1
		branch, indent := "├─", "│  "
		if lastGroup {
			branch, indent = "└─", "   "
		}
		if x := g[0].Experiment; x != nil {
			// An experiment's template, whatever revision it was
			// copied from.
			fmt.Fprintf(w, "%s experiment %s template %s (hash %s)\n", branch, x.Name, x.Template, g[0].PodHash)
		} else {
			fmt.Fprintf(w, "%s revision %d (hash %s%s)\n", branch, g[0].Revision, g[0].PodHash, revisionRoles(s, g[0]))
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for i, pr := range g {
			leaf := "├─"
			if i == len(g)-1 {
				leaf = "└─"
			}
			state := p.paint(ansiGreen, "ready")
			if !pr.Ready {
				state = p.paint(ansiYellow, "not ready")
			}
			what := strings.Join(pr.Command, " ")
			if pr.Image != "" {
				what = pr.Image + "  " + what
			}
			fmt.Fprintf(tw, "%s%s %s\tpid %d\tport %d\t%s\trestarts %d\tup %s\t%s\n", indent, leaf, pr.Name(), pr.PID, pr.Port, state,
				pr.Restarts, now.Sub(pr.StartedAt).Round(time.Second), p.paint(ansiDim, what))
		}
		tw.Flush()
	}
}

// revisionRoles is ", stable", ", canary" or "" for a revision's process
// group.
func revisionRoles(s events.Snapshot, pr local.Process) string {
	var roles []string
	if pr.PodHash == s.StablePodHash {
		roles = append(roles, "stable")
	}
	if pr.PodHash == s.PodHash && s.PodHash != s.StablePodHash {
		roles = append(roles, "canary")
	}
	if len(roles) == 0 {
		return ""
	}
	return ", " + strings.Join(roles, ", ")
}

// proxyURL is the URL of a local.sluice.io/listen address; an address
// without a host listens on every interface, so localhost reaches it.
func proxyURL(listen string) string {
	if strings.HasPrefix(listen, ":") {
		listen = "localhost" + listen
	}
	return "http://" + listen
}

func valueOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Task failures name the orchestrator's internal task id, which means
// nothing to a person: before the reason ("replicas task
// default/web/r3/scale/7 failed (3 attempts): <reason>"), or, since the
// orchestrator puts the reason first, after it ("<reason> (replicas task
// default/web/r3/scale/7, 3 attempts)"). An abort puts its own prefix
// before either.
var (
	taskFailure = regexp.MustCompile(`(\w+) task \S+/r\d+/\S+/\d+ failed \((\d+) attempts\): `)
	taskID      = regexp.MustCompile(`\btask [a-z0-9-]+/[a-z0-9-]+/r\d+/[A-Za-z0-9-]+/\d+`)
	taskParen   = regexp.MustCompile(`\(task [a-z0-9-]+/[a-z0-9-]+/r\d+/[A-Za-z0-9-]+/\d+, `)
	aborted     = regexp.MustCompile(`^RolloutAborted: Rollout aborted update to revision (\d+): (.+)$`)
)

// readableMessage puts the reason of a failure first and drops internal
// task ids:
// "RolloutAborted: Rollout aborted update to revision 3: replicas task
// a/b/r3/scale/7 failed (3 attempts): 0 of 2 ready" becomes "0 of 2 ready
// (replicas task failed, 3 attempts; aborted revision 3)".
func readableMessage(m string) string {
	m = strings.Join(strings.Fields(m), " ")
	abortedRev := ""
	if sm := aborted.FindStringSubmatch(m); sm != nil {
		abortedRev, m = sm[1], sm[2]
	}
	if loc := taskFailure.FindStringSubmatchIndex(m); loc != nil {
		context := strings.TrimSuffix(strings.TrimSpace(m[:loc[0]]), ":")
		svc, attempts := m[loc[2]:loc[3]], m[loc[4]:loc[5]]
		m = m[loc[1]:] + fmt.Sprintf(" (%s task failed, %s attempts)", svc, attempts)
		if context != "" {
			m += " (" + context + ")"
		}
	}
	m = taskParen.ReplaceAllString(m, "(")
	m = taskID.ReplaceAllString(m, "task")
	if abortedRev != "" {
		m += " (aborted revision " + abortedRev + ")"
	}
	return m
}

// truncate cuts s to at most width characters at a word boundary, marking
// the cut with an ellipsis.
func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	runes := []rune(s)
	cut := string(runes[:width-1])
	if i := strings.LastIndexAny(cut, " ,;"); i > width/2 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " ,;:") + "…"
}
