package analysis

import (
	"fmt"

	"github.com/sluicehq/sluice/pkg/spec"
)

// worstFirst orders phases from best to worst, as Argo Rollouts ranks them
// to pick a run's verdict.
var worstFirst = []spec.AnalysisPhase{
	spec.AnalysisPhaseSuccessful,
	spec.AnalysisPhaseRunning,
	spec.AnalysisPhasePending,
	spec.AnalysisPhaseInconclusive,
	spec.AnalysisPhaseError,
	spec.AnalysisPhaseFailed,
}

// worse reports whether b is worse than a.
func worse(a, b spec.AnalysisPhase) bool {
	rank := func(p spec.AnalysisPhase) int {
		for i, q := range worstFirst {
			if p == q {
				return i
			}
		}
		return -1
	}
	return rank(b) > rank(a)
}

// assess brings every metric's phase and the run's phase up to date with
// the counters. A metric that decides the run (Failed, Error or
// Inconclusive, not a dry run) terminates the others at once.
func assess(r *Run) {
	// Two passes: a metric decided in the first may terminate the others.
	for range 2 {
		terminating := r.terminating()
		for i := range r.Results {
			res := &r.Results[i]
			if res.Phase.Completed() {
				continue
			}
			res.Phase, res.Reason = metricPhase(r.Metrics[i], *res, terminating)
		}
	}
	r.Phase, r.Message = runPhase(*r)
}

// metricPhase is Argo Rollouts' assessment of one metric that has not
// completed yet, with the reason for a completed phase.
func metricPhase(m spec.Metric, res MetricResult, terminating bool) (spec.AnalysisPhase, string) {
	l, _ := limitsOf(m) // New rejected metrics whose limits do not parse
	if res.Count+res.Error == 0 {
		if terminating {
			return spec.AnalysisPhaseSuccessful, "run terminated before the first measurement"
		}
		return spec.AnalysisPhasePending, ""
	}
	// The limits, in Argo's order: a later exceeded limit overrides an
	// earlier one.
	var phase spec.AnalysisPhase
	var reason string
	if l.failure >= 0 && res.Failed > l.failure {
		phase, reason = spec.AnalysisPhaseFailed, fmt.Sprintf("failed (%d) > failureLimit (%d)", res.Failed, l.failure)
	}
	if res.Inconclusive > l.inconclusive {
		phase, reason = spec.AnalysisPhaseInconclusive, fmt.Sprintf("inconclusive (%d) > inconclusiveLimit (%d)", res.Inconclusive, l.inconclusive)
	}
	if res.ConsecutiveError > l.consecutiveError {
		phase, reason = spec.AnalysisPhaseError, fmt.Sprintf("consecutiveErrors (%d) > consecutiveErrorLimit (%d)", res.ConsecutiveError, l.consecutiveError)
	}
	if phase != "" {
		return phase, reason
	}
	if l.consecutiveSuccess > 0 && res.ConsecutiveSuccess >= l.consecutiveSuccess {
		return spec.AnalysisPhaseSuccessful, fmt.Sprintf("consecutiveSuccesses (%d) >= consecutiveSuccessLimit (%d)", res.ConsecutiveSuccess, l.consecutiveSuccess)
	}
	if l.count > 0 && res.Count >= l.count {
		failureApplies := l.failure >= 0
		successApplies := l.consecutiveSuccess > 0
		switch {
		case failureApplies && successApplies:
			return spec.AnalysisPhaseInconclusive, fmt.Sprintf("count (%d) reached without consecutiveSuccessLimit (%d) reached or failureLimit (%d) exceeded", l.count, l.consecutiveSuccess, l.failure)
		case successApplies:
			return spec.AnalysisPhaseFailed, fmt.Sprintf("count (%d) reached without consecutiveSuccessLimit (%d) reached", l.count, l.consecutiveSuccess)
		}
		return spec.AnalysisPhaseSuccessful, fmt.Sprintf("count (%d) reached", l.count)
	}
	if terminating {
		return spec.AnalysisPhaseSuccessful, "run terminated"
	}
	return spec.AnalysisPhaseRunning, ""
}

// runPhase is the worst phase of the completed metrics that are not dry
// runs, once every metric has completed (or at once when terminating), and
// Running before. Dry-run metrics are waited for but never decide: a run of
// dry-run metrics only is Successful.
func runPhase(r Run) (spec.AnalysisPhase, string) {
	var worst spec.AnalysisPhase
	var message string
	if r.Terminated {
		message = "Run Terminated" // Argo Rollouts' words
	}
	all := true
	for _, res := range r.Results {
		if !res.Phase.Completed() {
			all = false
			continue
		}
		if res.DryRun {
			if worst == "" {
				worst = spec.AnalysisPhaseSuccessful
			}
			continue
		}
		if worst == "" || worse(worst, res.Phase) {
			worst = res.Phase
			if res.Phase != spec.AnalysisPhaseSuccessful {
				message = fmt.Sprintf("metric %q assessed %s due to %s", res.Name, res.Phase, res.Reason)
				if res.Message != "" {
					message += ": " + res.Message
				}
			}
		}
	}
	if r.terminating() {
		if worst == "" {
			return spec.AnalysisPhaseSuccessful, message
		}
		return worst, message
	}
	if !all || worst == "" {
		return spec.AnalysisPhaseRunning, ""
	}
	return worst, message
}
