// Package crd connects Argo Rollouts' cluster objects with the bus, for
// teams that keep Rollouts in the cluster (kubectl apply, GitOps) rather
// than publishing them from CI:
//
//   - Watcher publishes io.sluice.rollout.requested.v1 when a Rollout's
//     spec changes (its metadata.generation rises past
//     status.observedGeneration), and io.sluice.analysistemplate.applied.v1
//     for every AnalysisTemplate and ClusterAnalysisTemplate added or
//     changed, so the analyzer finds them by name.
//   - StatusWriter writes each rollout's status events back into the
//     Rollout's status: phase, message, step, weights, and the selector the
//     /scale subresource reports, so that kubectl, Argo's dashboards and a
//     HorizontalPodAutoscaler can read it.
//   - Counts keeps the status' replica counts equal to the sums over the
//     rollout's ReplicaSets, which change without any status event.
//
// Both are safe to run in every replica of the replicas service: requested
// events have deterministic ids (the bus drops the duplicates) and the
// status consumer is shared, so each status event is written once.
package crd

import (
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/services/replicas/kube"
)

// Resources of Argo Rollouts' CRDs, which deploy/crds ships.
var (
	RolloutResource                 = kube.RolloutResource
	AnalysisTemplateResource        = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysistemplates"}
	ClusterAnalysisTemplateResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "clusteranalysistemplates"}
)

// Source is the CloudEvents source of the events the watcher publishes.
const Source = "/sluice/kube"

// ClusterScope is the namespace token of a ClusterAnalysisTemplate's
// subject, as sluice apply publishes it.
const ClusterScope = "cluster"
