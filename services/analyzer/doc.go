// Package analyzer is the analyzer service: it keeps the analysis templates
// applied on the bus, carries out the orchestrator's analysis tasks, and
// measures every analysis run on schedule, reporting each measurement and
// the verdict.
//
//	sluice.cmd.>                          ──▶ analyzer-templates ──▶ KV sluice-templates
//	sluice.task.analyzer.>  (analysis.run) ──▶ worker-analyzer    ──▶ KV sluice-analysisruns
//	KV sluice-analysisruns (watched by every replica) ──▶ measure ──▶ sluice.result.<ns>.<rollout>
//
// The evaluation of a run (arguments, conditions, limits, verdicts) is
// package analysis, pure and clock-free; the backends are package metrics'
// providers. This package is the I/O around them: templates in a bucket,
// runs in a bucket written with compare-and-swap, timers rebuilt from the
// bucket, and reports published with deterministic ids.
//
// # Runs
//
// An analysis.run task resolves its templates (from the bucket of applied
// templates), merges them with the task's arguments, and
// creates the run's record with Create: a redelivered task finds the record
// and changes nothing. The executor returns at once; the run reports later.
//
// Every replica watches the runs bucket and keeps each record's wakeup. When
// a run is due, the replicas race to claim it by writing a lease into the
// record with compare-and-swap; the losers skip. The owner measures the due
// metrics, records the measurements with analysis.Record, and writes the
// run back with the reports it owes (an outbox) and without the lease, in
// one compare-and-swap that succeeds only while its lease is still the
// record's. It then publishes the reports and clears them from the outbox.
//
// # Guarantees
//
//   - A measurement slot (a metric due at some instant) is recorded at most
//     once: only the holder of the record's current lease can write its
//     measurements, and a write that loses the compare-and-swap is dropped.
//   - A slot is measured again when the replica holding its lease dies (or
//     stalls past the lease) before writing: the lease expires after the
//     provider's timeout plus LeaseMargin and another replica measures on
//     schedule. The provider may therefore be queried twice for one slot
//     when a replica dies after querying and before writing; only one of
//     the measurements is recorded and reported.
//   - Every recorded measurement and every verdict is published at least
//     once, under a deterministic event id
//     (measured/<ns>/<rollout>/<run>/<metric>/<n>, finished/<task>#<attempt>),
//     so the results stream stores it once within its duplicate window. A
//     replica that dies between the write and the publish leaves the report
//     in the record's outbox; any replica publishes it LeaseMargin later.
package analyzer
