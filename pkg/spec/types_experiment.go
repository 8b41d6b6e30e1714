package spec

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RolloutExperimentStep is Argo's canary step experiment: extra ReplicaSets
// (processes on the local platform) made from the stable or the canary
// revision's pod template, run side by side for Duration or until the
// analyses that are RequiredForCompletion finish. The step succeeds when
// the experiment does; a failed or errored experiment aborts the update and
// an inconclusive one pauses it, as in Argo.
type RolloutExperimentStep struct {
	// Templates are the experiment's pods; at least one.
	Templates []RolloutExperimentTemplate `json:"templates"`
	// Duration is how long the experiment runs once its pods are
	// available ("30s", "5m"); empty runs until every analysis that is
	// RequiredForCompletion has finished.
	Duration DurationString `json:"duration,omitempty"`
	// Analyses run beside the experiment's pods.
	Analyses []RolloutExperimentStepAnalysisTemplateRef `json:"analyses,omitempty"`
	// DryRun lists metrics whose failures do not fail the experiment's runs.
	DryRun []DryRun `json:"dryRun,omitempty"`
	// AnalysisRunMetadata is added to the experiment's runs.
	AnalysisRunMetadata AnalysisRunMetadata `json:"analysisRunMetadata,omitempty"`
	// ScaleDownDelaySeconds is how long the experiment's pods stay after it
	// ends (Argo's default 30).
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
}

// RolloutExperimentTemplate is one set of an experiment's pods.
type RolloutExperimentTemplate struct {
	// Name is unique within the step; it names the pods' ReplicaSet
	// (<experiment>-<name>) and is what {{templates.<name>.podTemplateHash}}
	// refers to.
	Name string `json:"name"`
	// SpecRef is the revision whose pod template the pods run.
	SpecRef ReplicaSetSpecRef `json:"specRef"`
	// Replicas is the number of pods (default 1).
	Replicas *int32 `json:"replicas,omitempty"`
	// Metadata is added to the pods' template.
	Metadata PodTemplateMetadata `json:"metadata,omitempty"`
	// Selector replaces the rollout's selector for these pods.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Weight is the percentage of traffic the pods receive, taken from the
	// stable's share; only with trafficRouting.
	Weight *int32 `json:"weight,omitempty"`
	// Service, when set, gives the pods a Service of their own (named
	// Service.Name, or after the ReplicaSet when empty).
	Service *TemplateService `json:"service,omitempty"`
}

// ReplicaSetSpecRef names the revision an experiment template copies.
type ReplicaSetSpecRef string

// The revisions an experiment template can copy.
const (
	SpecRefStable ReplicaSetSpecRef = "stable"
	SpecRefCanary ReplicaSetSpecRef = "canary"
)

// TemplateService is the Service of an experiment template.
type TemplateService struct {
	Name string `json:"name,omitempty"`
}

// RolloutExperimentStepAnalysisTemplateRef is one analysis of an
// experiment step.
type RolloutExperimentStepAnalysisTemplateRef struct {
	// Name names the run within the experiment.
	Name string `json:"name"`
	// TemplateName is the AnalysisTemplate (ClusterAnalysisTemplate with
	// ClusterScope).
	TemplateName string `json:"templateName"`
	ClusterScope bool   `json:"clusterScope,omitempty"`
	// Args supply the template's arguments; values may use
	// {{templates.<name>.podTemplateHash}}, {{templates.<name>.replicaset.name}}
	// and {{experiment.availableAt}}, as in Argo.
	Args []AnalysisRunArgument `json:"args,omitempty"`
	// RequiredForCompletion makes the experiment end when this run ends.
	RequiredForCompletion bool `json:"requiredForCompletion,omitempty"`
}

// Experiment is Argo's standalone Experiment: templates' pods run side by
// side (each from its own pod template) for Duration or until the analyses
// RequiredForCompletion finish, with analyses beside them; the experiment
// ends Successful, Failed, Error or Inconclusive with its analyses, or
// Terminated when asked to stop. Its commands and status share the
// sluice.cmd and sluice.status subjects of rollouts: a namespace holds one
// Rollout or Experiment of a name.
type Experiment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ExperimentSpec `json:"spec"`
	// Status is accepted so that `kubectl get experiment -o yaml` output
	// decodes, and is otherwise ignored: Sluice keeps the state itself.
	Status json.RawMessage `json:"status,omitempty"`
}

// ExperimentSpec is the desired state of an Experiment.
type ExperimentSpec struct {
	// Templates are the experiment's pods; at least one.
	Templates []TemplateSpec `json:"templates"`
	// Duration is how long the experiment runs once its pods are available;
	// empty runs until every analysis RequiredForCompletion has finished,
	// or, without one, until it is terminated.
	Duration DurationString `json:"duration,omitempty"`
	// ProgressDeadlineSeconds is how long the pods may take to become
	// available before the experiment fails (default 600).
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
	// Terminate ends a running experiment early (Terminated).
	Terminate bool `json:"terminate,omitempty"`
	// Analyses run beside the pods once they are available.
	Analyses []RolloutExperimentStepAnalysisTemplateRef `json:"analyses,omitempty"`
	// ScaleDownDelaySeconds is how long the pods stay after the experiment
	// ends (default 30).
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
	// DryRun lists metrics whose failures do not fail the analyses.
	DryRun []DryRun `json:"dryRun,omitempty"`
	// MeasurementRetention keeps more measurements of the listed metrics.
	MeasurementRetention []MeasurementRetention `json:"measurementRetention,omitempty"`
	// AnalysisRunMetadata is added to the experiment's analysis runs.
	AnalysisRunMetadata AnalysisRunMetadata `json:"analysisRunMetadata,omitempty"`
}

// TemplateSpec is one set of a standalone Experiment's pods.
type TemplateSpec struct {
	// Name is unique within the experiment; it names the pods' ReplicaSet
	// (<experiment>-<name>).
	Name string `json:"name"`
	// Replicas is the number of pods (default 1).
	Replicas *int32 `json:"replicas,omitempty"`
	// MinReadySeconds is how long a pod must be ready to count as
	// available.
	MinReadySeconds int32 `json:"minReadySeconds,omitempty"`
	// Selector selects the pods; it must match Template's labels.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Template is the pods' template.
	Template corev1.PodTemplateSpec `json:"template"`
	// Service, when set, gives the pods a Service of their own (named
	// Service.Name, or after the ReplicaSet when empty).
	Service *TemplateService `json:"service,omitempty"`
}

// Defaults of a standalone Experiment, as Argo's.
const (
	DefaultExperimentProgressDeadlineSeconds int32 = 600
	DefaultExperimentScaleDownDelaySeconds   int32 = 30
)
