// Command sluice-traffic runs the traffic service: it carries out the
// orchestrator's traffic.route tasks on the router named by --router.
//
// With --router local it is the local platform's ingress: one reverse
// proxy per rollout on the Rollout's local.sluice.io/listen address, whose
// request metrics are served on /metrics. Run one such process per local
// platform. With --router kube it edits Services, Ingresses and mesh objects
// in the cluster of --kubeconfig (or the pod's service account), as each
// rollout's trafficRouting asks. See docs/routers.md.
package main

import (
	"os"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(newSpec(), os.Args[1:], os.Stderr))
}

func newSpec() daemon.Spec { return assembly.Binary(assembly.Traffic, os.Getenv) }
