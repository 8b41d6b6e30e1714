// Package analysis decides analysis runs the way Argo Rollouts'
// AnalysisRun controller does, as pure functions: no I/O, no clock (callers
// pass now), no provider. The analyzer service around it measures, stores
// the Run, and publishes.
//
// # Use
//
//	err := analysis.CheckTemplate(t.Spec)                               // when a template is applied
//	s, err := analysis.Merge(templates, rolloutArgs, dryRun, retention) // flatten templates, merge args
//	run, err := analysis.New(name, s, now)                              // validate, substitute args, compile conditions
//	for !run.Completed() {
//		for _, metric := range run.Due(now) {
//			metric, _ = analysis.Substitute(metric, secretValues) // run.SecretArgs, read per measurement
//			m := provider.Measure(ctx, metric).Redact(secrets...)
//			m = analysis.Judge(metric, m)                          // optional: Record judges too
//			run = analysis.Record(run, metric.Name, m)
//		}
//		wake, ok := run.NextWakeup() // sleep until wake; Terminate(run) to stop a background run
//	}
//	run.Summary() // events.AnalysisSummary
//
// # Conditions
//
// successCondition and failureCondition are expr-lang expressions over
// `result`, with Argo's functions asInt, asFloat, isNaN, isInf, isNil and
// default, and expr's own (len, all, any, now, duration, ...). Without
// conditions a measurement is Successful; with only one, the other outcome
// is its negation; with both, neither true is Inconclusive and a true
// failureCondition wins. A condition that fails to evaluate (`result[0]` on
// an empty result) makes the measurement an Error, counted against
// consecutiveErrorLimit, with a message that says the result was empty and
// how to guard the condition; Argo Rollouts does the same with a bare
// "index out of range". Conditions are compiled by New, so a syntax error
// fails the run before its first measurement.
//
// # Metrics
//
// count (unset or 0: one measurement without interval, until terminated
// with one), interval, initialDelay (from the run's start), failureLimit (0
// by default, -1 disables it), inconclusiveLimit (0), consecutiveErrorLimit
// (4), consecutiveSuccessLimit (off), with Argo Rollouts' rules: a limit is
// exceeded when its counter is greater than it; after an Error the next
// measurement comes ErrorRetryInterval later, whatever the interval; errors
// do not count towards count; with consecutiveSuccessLimit, reaching count
// without enough successes in a row is Failed, or Inconclusive when
// failureLimit also applies. dryRun and measurementRetention rules name
// metrics by "*" or by a regular expression (Argo's own syntax, matched
// anywhere in the name); a metric keeps DefaultMeasurementRetention
// measurements unless a rule says otherwise; counters count them all.
//
// # Run
//
// A metric decided Failed, Error or Inconclusive (not a dry run) terminates
// the run: the other metrics stop measuring and those not decided become
// Successful. Terminate does the same on request; a background run (a
// metric with interval and no count) measures until then. The run's phase
// is the worst of its metrics', in Argo's order Successful < Running <
// Pending < Inconclusive < Error < Failed, dry-run metrics left out.
//
// # Arguments
//
// {{args.NAME}} (spaces allowed inside the braces) is replaced in every
// string of a metric. Merge flattens templates as Argo does; New substitutes
// plain values and leaves secretKeyRef arguments as placeholders, so no
// secret is ever part of a Run; the caller substitutes them for each
// measurement and redacts them from it. valueFrom.fieldRef and
// podTemplateHashValue are resolved by the caller, into values, before
// Merge.
//
// Deliberately not supported: asynchronous measurements (Argo's
// Resume/Terminate of an in-flight Job or Kayenta measurement), and
// Argo's quirks where a change is safer: a metric is due at the instant
// NextWakeup names (Argo: strictly after), and a metric decided in one
// Record terminates the others in the same step (Argo: on its next
// reconciliation).
package analysis
