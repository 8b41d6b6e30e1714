package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// phaseSymbol marks a phase the way `kubectl argo rollouts get` does.
func phaseSymbol(phase string) string {
	switch phase {
	case events.PhaseHealthy:
		return "✔"
	case events.PhaseProgressing:
		return "◌"
	case events.PhasePaused:
		return "॥"
	case events.PhaseDegraded:
		return "✖"
	}
	return "?"
}

// renderSnapshot writes a rollout's status for people: phase, revisions,
// step, weights, replicas, analysis and the latest measurements.
func renderSnapshot(w io.Writer, s events.Snapshot, measurements []events.Measurement) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Name:", s.Name)
	row("Namespace:", s.Namespace)
	status := phaseSymbol(s.Phase) + " " + s.Phase
	var reasons []string
	for _, p := range s.PauseConditions {
		reasons = append(reasons, p.Reason)
	}
	if len(reasons) > 0 {
		status += " (" + strings.Join(reasons, ", ") + ")"
	}
	row("Status:", status)
	if s.Message != "" {
		row("Message:", s.Message)
	}
	if s.Aborted {
		row("Aborted:", "yes: traffic is on the stable revision")
	}
	strategy := s.Strategy
	if strategy == "" {
		strategy = "-"
	}
	row("Strategy:", strategy)
	if s.StepIndex != nil {
		row("  Step:", fmt.Sprintf("%d/%d", min(*s.StepIndex+1, s.StepCount), s.StepCount))
	} else if s.StepCount > 0 {
		row("  Step:", fmt.Sprintf("-/%d", s.StepCount))
	}
	row("  Weights:", fmt.Sprintf("canary %d%%, stable %d%%", s.CanaryWeight, s.StableWeight))
	row("Revision:", fmt.Sprintf("%d (stable %d)", s.Revision, s.StableRevision))
	if s.PodHash != "" {
		row("  Pod hash:", fmt.Sprintf("%s (stable %s)", s.PodHash, s.StablePodHash))
	}
	r := s.Replicas
	row("Replicas:", fmt.Sprintf("desired %d, current %d, updated %d, ready %d, available %d", r.Desired, r.Current, r.Updated, r.Ready, r.Available))
	if a := s.Analysis; a != nil {
		row("Analysis:", fmt.Sprintf("%s %s  ✔ %d  ✖ %d  ? %d  ⚠ %d", a.Name, a.Phase, a.Successful, a.Failed, a.Inconclusive, a.Error))
		if a.Message != "" {
			row("  Message:", a.Message)
		}
	}
	if len(measurements) > 0 {
		row("Measurements:", "")
		for _, m := range measurements {
			line := fmt.Sprintf("%s %s = %s %s", m.FinishedAt.UTC().Format(time.TimeOnly), m.Metric, valueOr(m.Value, "-"), m.Phase)
			if m.Message != "" {
				line += ": " + m.Message
			}
			row("", line)
		}
	}
	if !s.UpdatedAt.IsZero() {
		row("Updated:", s.UpdatedAt.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}

func valueOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
