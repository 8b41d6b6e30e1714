// Module that pins Argo Rollouts (its kubectl plugin and controller, built
// by scripts/kube-tools.sh as their own main module, and its CRDs, which
// scripts/argo-crds.sh copies into deploy/crds) and Argo CD (only its
// Rollout health and action Lua scripts are copied out; never built) for
// the real-control-plane test tier (see docs/testing-kube.md). Nothing
// imports them, so `go mod tidy` would drop them: edit by hand, with the
// go.sum lines `go mod download -json MODULE@VERSION` prints.
// argo-cd/v3 v3.5.8 is the newest release whose go directive Go 1.26
// accepts (v3.6.x need Go 1.27); its Rollout scripts equal v3.6.2's.
module github.com/sluicehq/sluice/test/kube/tools/argo

go 1.26.0

require (
	github.com/argoproj/argo-cd/v3 v3.5.8
	github.com/argoproj/argo-rollouts v1.10.0
)
