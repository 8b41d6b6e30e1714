// Package replicas is the replicas service: it carries out the
// orchestrator's replicas.scale tasks on a Backend (Kubernetes ReplicaSets,
// or OS processes on the local platform, package local) and reports each
// revision's replica counts.
//
//	sluice.task.replicas.>  (replicas.scale) ──▶ worker-replicas ──▶ Backend.Apply
//	                                              │                      │
//	                       KV sluice-replicas-pending            sluice.result.<ns>.<rollout>
//
// # Scale tasks
//
// A scale task carries the complete desired state of the revisions it
// lists, so applying it twice has the effect of applying it once. The
// service records the task as its rollout's pending task (one entry per
// rollout in BucketPending, written with compare-and-swap so that an older
// task never replaces a newer one), acknowledges it, and waits for
// availability in the background:
//
//   - Succeeded, with every listed revision's counts, once each is
//     available at its count (and a revision at 0 has no pods left);
//   - Failed, with a message naming each revision that is short and why,
//     when the revisions are not available within Config.Wait, or when a
//     pod template cannot run on the backend;
//   - Stale when a task with a higher seq had been applied for the rollout,
//     or is applied while this one waits.
//
// A scale task may also restart a revision (RevisionScale.RestartAt: its
// older pods are replaced within MaxUnavailable) or remove a deleted
// rollout (Scale.Remove); both are the backend's, and replicastest holds
// every backend to them. A restart that cannot finish fails like a scale,
// naming the pods or processes and why.
//
// The report is published with the worker's deterministic id
// (finished/<task>#<attempt>) and only then is the pending entry removed, so
// a crash at any point leaves the entry and the next run resumes the wait
// (with the deadline it had) and reports once. Whatever is decided from
// the entry without writing it (a redelivered task already pending or
// older, the entry no longer this task's, the waits to resume) is read
// from the leader of the bucket's stream: a replica that lags behind
// answers with an older entry (docs/reliability.md, "Stale reads"). Waiting in the background
// rather than holding the delivery keeps the consumer's queues moving: a
// held delivery would block the tasks behind it, including the same
// rollout's next scale task, which the orchestrator would resend and then
// fail for want of a worker.
package replicas
