// Command sluice-replicas runs the replicas service: it creates, scales and
// deletes the revisions of rollouts and reports when they are available.
//
// On the local platform (--platform local, the default) each pod is an OS
// process on this machine, with its state and logs under
// --state-dir/replicas; run one replicas service per machine and state
// directory. See docs/platform-local.md.
//
// On Kubernetes (--platform kube) each revision is a ReplicaSet in the
// cluster of --kubeconfig (or the pod's service account), and the service
// also turns Rollout objects in the cluster into requested events and
// writes their status back (--watch-rollouts). See docs/platform-kube.md.
package main

import (
	"os"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(spec(), os.Args[1:], os.Stderr))
}

func spec() daemon.Spec { return assembly.Binary(assembly.Replicas, os.Getenv) }
