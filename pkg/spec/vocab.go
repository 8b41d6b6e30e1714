package spec

// Strategy names a rollout's deployment strategy: the key of its block under
// spec.strategy. Task routes and status snapshots carry it by this name.
type Strategy string

// Strategies Sluice implements.
const (
	StrategyCanary    Strategy = "canary"
	StrategyBlueGreen Strategy = "blueGreen"
)

// Name is the strategy s configures: StrategyCanary when canary is set
// (validation allows only one), StrategyBlueGreen when blueGreen is, and ""
// when neither is.
func (s RolloutStrategy) Name() Strategy {
	switch {
	case s.Canary != nil:
		return StrategyCanary
	case s.BlueGreen != nil:
		return StrategyBlueGreen
	}
	return ""
}

// Role is what a revision is to its rollout, as Argo Rollouts names the
// ephemeral metadata it gets (canaryMetadata, stableMetadata, activeMetadata,
// previewMetadata).
type Role string

// Roles of a revision.
const (
	RoleStable  Role = "stable"
	RoleCanary  Role = "canary"
	RoleActive  Role = "active"
	RolePreview Role = "preview"
	// RoleOld is a revision on its way out (scaled down after a delay).
	RoleOld Role = "old"
	// RoleExperiment is the pods of an experiment's template, which run
	// beside the revisions (tasks.ExperimentPods says which).
	RoleExperiment Role = "experiment"
)

// Labels and annotations that Argo Rollouts defines and Sluice writes and
// reads on the objects of a rollout, with Argo's keys so that tools written
// for Argo Rollouts find them.
const (
	// LabelPodTemplateHash marks a revision's ReplicaSet and pods with the
	// revision's pod template hash; a Service or DestinationRule subset
	// selects a revision by it.
	LabelPodTemplateHash = "rollouts-pod-template-hash"
	// AnnotationManagedBy names the rollout that manages a routing object
	// (a Service, an Ingress, a VirtualService, a TrafficSplit, an
	// HTTPRoute); a router refuses to change one managed by another.
	AnnotationManagedBy = "argo-rollouts.argoproj.io/managed-by-rollouts"
	// AnnotationExperimentName and AnnotationExperimentTemplate mark an
	// experiment's ReplicaSets (and Services) with the experiment and the
	// template they run, as Argo's experiment controller does.
	AnnotationExperimentName     = "experiment.argoproj.io/name"
	AnnotationExperimentTemplate = "experiment.argoproj.io/template-name"
)
