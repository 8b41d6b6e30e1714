// Package local is the replicas service's backend for the local platform:
// each pod of a revision is an OS process on this machine, started from the
// pod template's first container. docs/platform-local.md is the user's
// guide; this comment states the contract.
//
// # From container to process
//
//   - command, then args, is the command line; command is required (there
//     is no image entrypoint), and its first word is looked up in the PATH
//     of the process's environment, relative to workingDir when it has a
//     slash.
//   - The environment is Config.Environ (by default the service's own,
//     without NATS_*), then the container's env in order, then PORT: a free
//     TCP port, kept across restarts of the same pod when still free. Env
//     values must be literal (valueFrom and envFrom are refused).
//   - $(VAR) in env values, command and args expands as Kubernetes expands
//     it: from PORT and the container's env (an env value sees the variables
//     before it), $$ for a literal $, unknown references left as written.
//   - The container's first containerPort, by number or by name, means
//     PORT wherever a probe names it.
//   - Stdout and stderr go to replicas/<ns>/<rollout>/<hash>-<n>.log under
//     the state directory, appended across restarts, kept after the pod
//     is gone. The file, not a pipe, is the process's output, so the
//     process keeps writing after the service exits and can be adopted.
//   - Each process leads its own process group: SIGTERM and SIGKILL reach
//     what it started, a Ctrl-C meant for the service does not reach it,
//     and when it exits, what is left in its group is killed.
//
// # Readiness and availability
//
// A process is ready when its readinessProbe (httpGet or tcpSocket, with
// Kubernetes' defaults and thresholds) says so, or once started without a
// probe, and available after minReadySeconds of readiness. Every change of
// a revision's ready set is written to its endpoints entry
// (internal/endpoints); the entry is deleted when the revision has no
// process. Apply returns only after the entries of its revisions are
// written.
//
// # Restarts and stopping
//
// A process that exits is started again after a backoff (Config
// RestartBackoff doubling to RestartBackoffMax) and is unavailable
// meanwhile; the exit status and the last lines of its log are kept for
// messages. Scaling down stops the least useful pods first (not ready, then
// not running, then the youngest): out of the endpoints, SIGTERM to the
// group, SIGKILL after terminationGracePeriodSeconds (default 30).
//
// # Restart of the service
//
// The seq guard and the desired state of every rollout are in
// rollout.json, and each running process has a state file with its pid
// and kernel start time (from /proc/<pid>/stat, so a reused pid is not
// mistaken for it). Start adopts each process that is still alive and that
// the desired state still wants: it is not restarted, keeps its port and
// its readiness, and is watched by polling /proc (it is no longer a child,
// so its exit status is unknown). Processes the desired state no longer
// wants are stopped gracefully; missing ones are started. Close lets the
// processes run on (Config.StopOnClose stops them instead).
//
// # Experiments
//
// A scale entry with Experiment set (an experiment template's pods) is
// run as a revision of its own, keyed by pod hash, experiment and
// template (entryName), so it never shares processes with the revision
// whose hash it has. Its processes are named <experiment>-<template>-<n>
// (Argo's ReplicaSet name, then the slot), its endpoints entry names the
// experiment and template, and its status in the task's report has the
// template's name (tasks.RevisionStatus.Template).
//
// One backend per state directory and per bus: two would fight over the
// processes and the endpoints entries.
package local
