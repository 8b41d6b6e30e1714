// Package orchestrator is the service that owns every rollout's state and
// decides each step. It never touches Kubernetes, a router or Prometheus: it
// turns commands and task results into tasks and status events through the
// pure step machine (package machine).
//
// Each rollout's state is one entry of the JetStream key-value bucket
// sluice-rollouts. Every decision is triggered by a message (a command, a
// task result, or a timer event) and stored with compare-and-swap on the
// entry's revision, so any number of orchestrator replicas can run at once
// and never interleave decisions for one rollout. The effects of a decision
// are stored in the same write (an outbox) before they are published, and
// republished when the triggering message is redelivered, so a crash between
// the write and the publish loses nothing.
//
// Timers are deadlines inside the state. Every replica watches the bucket and
// keeps the deadlines in memory; when one is due, it publishes a timer event
// whose id is derived from the rollout and the deadline, so replicas that
// fire the same timer store it once, and the event is handled like any other
// observation. A restarted replica rebuilds its timers from the bucket.
package orchestrator
