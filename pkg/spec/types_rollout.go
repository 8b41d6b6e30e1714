package spec

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Rollout is Argo Rollouts' Rollout: a workload that is updated step by step
// (canary) or by switching services (blue/green).
type Rollout struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec RolloutSpec `json:"spec"`
	// Status is accepted so that `kubectl get rollout -o yaml` output
	// decodes, and is otherwise ignored: Sluice keeps rollout state itself.
	Status json.RawMessage `json:"status,omitempty"`
}

// RolloutSpec is the desired state of a Rollout.
type RolloutSpec struct {
	// Replicas is the number of desired pods; unset means 1.
	Replicas *int32 `json:"replicas,omitempty"`
	// Selector selects the rollout's pods; it must match Template's labels.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Template is the pod template of the new revision.
	Template corev1.PodTemplateSpec `json:"template"`
	// WorkloadRef points at a Deployment that provides the pod template.
	// Parsed but not supported: Validate rejects it.
	WorkloadRef *ObjectRef `json:"workloadRef,omitempty"`
	// MinReadySeconds is how long a new pod must be ready before it counts
	// as available.
	MinReadySeconds int32 `json:"minReadySeconds,omitempty"`
	// RollbackWindow fast-tracks rollbacks to one of the last Revisions.
	RollbackWindow *RollbackWindowSpec `json:"rollbackWindow,omitempty"`
	// Strategy holds exactly one of Canary and BlueGreen.
	Strategy RolloutStrategy `json:"strategy"`
	// RevisionHistoryLimit is how many old revisions to keep; unset means 10.
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
	// Paused stops the rollout at its current step.
	Paused bool `json:"paused,omitempty"`
	// ProgressDeadlineSeconds is how long an update may go without progress
	// before it is reported as failed; unset means 600.
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`
	// ProgressDeadlineAbort aborts the update when the deadline passes.
	ProgressDeadlineAbort bool `json:"progressDeadlineAbort,omitempty"`
	// RestartAt asks for every pod created before it to be restarted.
	RestartAt *metav1.Time `json:"restartAt,omitempty"`
	// Analysis limits how many finished analysis runs are kept.
	Analysis *AnalysisRunStrategy `json:"analysis,omitempty"`
}

// ObjectRef references another Kubernetes object.
type ObjectRef struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name,omitempty"`
	// ScaleDown is "never", "onsuccess" or "progressively".
	ScaleDown string `json:"scaleDown,omitempty"`
}

// RollbackWindowSpec is the number of recent revisions a rollback to which
// skips the steps.
type RollbackWindowSpec struct {
	Revisions int32 `json:"revisions,omitempty"`
}

// AnalysisRunStrategy limits how many analysis runs are retained; each
// limit defaults to 5.
type AnalysisRunStrategy struct {
	SuccessfulRunHistoryLimit   *int32 `json:"successfulRunHistoryLimit,omitempty"`
	UnsuccessfulRunHistoryLimit *int32 `json:"unsuccessfulRunHistoryLimit,omitempty"`
}

// RolloutStrategy holds exactly one update strategy.
type RolloutStrategy struct {
	BlueGreen *BlueGreenStrategy `json:"blueGreen,omitempty"`
	Canary    *CanaryStrategy    `json:"canary,omitempty"`
}

// BlueGreenStrategy runs the new revision behind PreviewService and then
// switches ActiveService to it.
type BlueGreenStrategy struct {
	// ActiveService is the Service that receives production traffic. Required.
	ActiveService string `json:"activeService"`
	// PreviewService, when set, selects the new revision before promotion.
	PreviewService string `json:"previewService,omitempty"`
	// PreviewReplicaCount is how many replicas the new revision runs before
	// promotion; unset means all of them.
	PreviewReplicaCount *int32 `json:"previewReplicaCount,omitempty"`
	// AutoPromotionEnabled promotes without waiting for a promote command;
	// unset means true.
	AutoPromotionEnabled *bool `json:"autoPromotionEnabled,omitempty"`
	// AutoPromotionSeconds delays auto-promotion after the preview is ready.
	AutoPromotionSeconds int32 `json:"autoPromotionSeconds,omitempty"`
	// MaxUnavailable bounds unavailable pods during a restart; unset means 25%.
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
	// ScaleDownDelaySeconds delays scaling down the old revision after the
	// switch; unset means 30.
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
	// ScaleDownDelayRevisionLimit bounds how many old revisions may wait for
	// their scale-down at once; unset means no limit.
	ScaleDownDelayRevisionLimit *int32 `json:"scaleDownDelayRevisionLimit,omitempty"`
	// PrePromotionAnalysis runs before the switch and gates it.
	PrePromotionAnalysis *RolloutAnalysis `json:"prePromotionAnalysis,omitempty"`
	// AntiAffinity keeps new pods off the nodes of the old revision.
	AntiAffinity *AntiAffinity `json:"antiAffinity,omitempty"`
	// PostPromotionAnalysis runs after the switch; failing it switches back.
	PostPromotionAnalysis *RolloutAnalysis `json:"postPromotionAnalysis,omitempty"`
	// PreviewMetadata is added to the new revision's pods while in preview.
	PreviewMetadata *PodTemplateMetadata `json:"previewMetadata,omitempty"`
	// ActiveMetadata is added to the active revision's pods.
	ActiveMetadata *PodTemplateMetadata `json:"activeMetadata,omitempty"`
	// AbortScaleDownDelaySeconds delays scaling down the preview after an
	// abort; 0 keeps it running; unset means 30.
	AbortScaleDownDelaySeconds *int32 `json:"abortScaleDownDelaySeconds,omitempty"`
}

// AntiAffinity holds exactly one anti-affinity rule between revisions.
type AntiAffinity struct {
	PreferredDuringSchedulingIgnoredDuringExecution *PreferredDuringSchedulingIgnoredDuringExecution `json:"preferredDuringSchedulingIgnoredDuringExecution,omitempty"`
	RequiredDuringSchedulingIgnoredDuringExecution  *RequiredDuringSchedulingIgnoredDuringExecution  `json:"requiredDuringSchedulingIgnoredDuringExecution,omitempty"`
}

// PreferredDuringSchedulingIgnoredDuringExecution is a soft anti-affinity
// rule with a Weight between 1 and 100.
type PreferredDuringSchedulingIgnoredDuringExecution struct {
	Weight int32 `json:"weight"`
}

// RequiredDuringSchedulingIgnoredDuringExecution is a hard anti-affinity rule.
type RequiredDuringSchedulingIgnoredDuringExecution struct{}

// CanaryStrategy moves traffic to the new revision step by step.
type CanaryStrategy struct {
	// CanaryService selects only the new revision's pods; required with
	// traffic routing.
	CanaryService string `json:"canaryService,omitempty"`
	// StableService selects only the stable revision's pods; required with
	// traffic routing.
	StableService string `json:"stableService,omitempty"`
	// Steps run in order; an update with no steps is promoted at once.
	Steps []CanaryStep `json:"steps,omitempty"`
	// TrafficRouting splits traffic with a router; without it the split is
	// the ratio of replicas.
	TrafficRouting *TrafficRouting `json:"trafficRouting,omitempty"`
	// MaxUnavailable bounds unavailable pods during the update; unset means 25%.
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
	// MaxSurge bounds pods above Replicas during the update; unset means 25%.
	MaxSurge *intstr.IntOrString `json:"maxSurge,omitempty"`
	// Analysis runs in the background while the steps execute.
	Analysis *RolloutAnalysisBackground `json:"analysis,omitempty"`
	// AntiAffinity keeps new pods off the nodes of the old revision.
	AntiAffinity *AntiAffinity `json:"antiAffinity,omitempty"`
	// CanaryMetadata is added to the canary pods during an update.
	CanaryMetadata *PodTemplateMetadata `json:"canaryMetadata,omitempty"`
	// StableMetadata is added to the stable pods.
	StableMetadata *PodTemplateMetadata `json:"stableMetadata,omitempty"`
	// ScaleDownDelaySeconds delays scaling down the old revision once the
	// stable service points at the new one. Only with traffic routing, where
	// unset means 30.
	ScaleDownDelaySeconds *int32 `json:"scaleDownDelaySeconds,omitempty"`
	// ScaleDownDelayRevisionLimit bounds how many old revisions may wait for
	// their scale-down at once.
	ScaleDownDelayRevisionLimit *int32 `json:"scaleDownDelayRevisionLimit,omitempty"`
	// AbortScaleDownDelaySeconds delays scaling down the canary after an
	// abort; 0 keeps it running. Only with traffic routing, where unset
	// means 30.
	AbortScaleDownDelaySeconds *int32 `json:"abortScaleDownDelaySeconds,omitempty"`
	// DynamicStableScale scales the stable revision down as traffic moves
	// away from it. Only with traffic routing.
	DynamicStableScale bool `json:"dynamicStableScale,omitempty"`
	// PingPong alternates two services instead of switching selectors.
	// Parsed but not supported: Validate rejects it.
	PingPong *PingPongSpec `json:"pingPong,omitempty"`
	// MinPodsPerReplicaSet is the least number of pods a non-empty revision
	// runs with traffic routing.
	MinPodsPerReplicaSet *int32 `json:"minPodsPerReplicaSet,omitempty"`
}

// PingPongSpec names the two services of Argo's ping-pong feature.
type PingPongSpec struct {
	PingService string `json:"pingService"`
	PongService string `json:"pongService"`
}

// PodTemplateMetadata is extra metadata added to pods.
type PodTemplateMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// CanaryStep is one step of a canary update. Exactly one field is set.
type CanaryStep struct {
	// SetWeight routes this percentage of traffic (of MaxTrafficWeight with
	// traffic routing) to the canary.
	SetWeight *int32 `json:"setWeight,omitempty"`
	// Pause waits for a duration, or for a promote when it has none.
	Pause *RolloutPause `json:"pause,omitempty"`
	// Experiment runs extra pods beside the revisions (an experiment).
	Experiment *RolloutExperimentStep `json:"experiment,omitempty"`
	// Analysis runs an analysis and waits for its verdict.
	Analysis *RolloutAnalysis `json:"analysis,omitempty"`
	// SetCanaryScale sizes the canary apart from its traffic weight.
	SetCanaryScale *SetCanaryScale `json:"setCanaryScale,omitempty"`
	// SetHeaderRoute sends requests that match headers to the canary.
	SetHeaderRoute *SetHeaderRoute `json:"setHeaderRoute,omitempty"`
	// SetMirrorRoute copies matching requests to the canary.
	SetMirrorRoute *SetMirrorRoute `json:"setMirrorRoute,omitempty"`
	// Plugin runs a step plugin. Parsed but not supported: Validate rejects it.
	Plugin *PluginStep `json:"plugin,omitempty"`
}

// RolloutPause is a pause step.
type RolloutPause struct {
	// Duration is seconds as an integer or a numeric string ("30"), or a Go
	// duration string ("30s", "5m", "1h"). Unset pauses until promoted.
	Duration *intstr.IntOrString `json:"duration,omitempty"`
}

// SetCanaryScale sets the canary's size without changing its traffic weight.
// Exactly one field is set.
type SetCanaryScale struct {
	// Weight is the canary's size as a percentage of Replicas.
	Weight *int32 `json:"weight,omitempty"`
	// Replicas is the canary's size as a number of pods.
	Replicas *int32 `json:"replicas,omitempty"`
	// MatchTrafficWeight sizes the canary by its traffic weight again.
	MatchTrafficWeight bool `json:"matchTrafficWeight,omitempty"`
}

// SetHeaderRoute sends all requests that match to the canary. A step with no
// Match removes the route.
type SetHeaderRoute struct {
	// Name must be listed in trafficRouting.managedRoutes.
	Name  string               `json:"name,omitempty"`
	Match []HeaderRoutingMatch `json:"match,omitempty"`
}

// HeaderRoutingMatch matches one request header.
type HeaderRoutingMatch struct {
	HeaderName  string       `json:"headerName"`
	HeaderValue *StringMatch `json:"headerValue"`
}

// SetMirrorRoute copies a percentage of the requests that match to the
// canary; responses from the canary are discarded. A step with no Match
// removes the route.
type SetMirrorRoute struct {
	// Name must be listed in trafficRouting.managedRoutes.
	Name string `json:"name"`
	// Match entries are ORed; the conditions inside one entry are ANDed.
	Match []RouteMatch `json:"match,omitempty"`
	// Percentage of matching requests to mirror, 0 to 100.
	Percentage *int32 `json:"percentage,omitempty"`
}

// RouteMatch matches requests by method, path and headers.
type RouteMatch struct {
	Method  *StringMatch           `json:"method,omitempty"`
	Path    *StringMatch           `json:"path,omitempty"`
	Headers map[string]StringMatch `json:"headers,omitempty"`
}

// StringMatch matches a string in exactly one way.
type StringMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// PluginStep is Argo's step plugin call.
type PluginStep struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config,omitempty"`
}

// RolloutAnalysisBackground is an analysis that runs alongside the steps.
type RolloutAnalysisBackground struct {
	RolloutAnalysis `json:",inline"`
	// StartingStep is the index of the step at which the analysis starts;
	// unset means the first.
	StartingStep *int32 `json:"startingStep,omitempty"`
}

// RolloutAnalysis creates an analysis run from one or more templates.
type RolloutAnalysis struct {
	// Templates are merged into one run.
	Templates []AnalysisTemplateRef `json:"templates,omitempty"`
	// Args supply the templates' arguments.
	Args []AnalysisRunArgument `json:"args,omitempty"`
	// DryRun lists metrics whose failures do not fail the run.
	DryRun []DryRun `json:"dryRun,omitempty"`
	// MeasurementRetention bounds how many measurements a run keeps.
	MeasurementRetention []MeasurementRetention `json:"measurementRetention,omitempty"`
	// AnalysisRunMetadata is added to the run.
	AnalysisRunMetadata AnalysisRunMetadata `json:"analysisRunMetadata,omitempty"`
}

// AnalysisTemplateRef names an AnalysisTemplate, or a ClusterAnalysisTemplate
// when ClusterScope is set.
type AnalysisTemplateRef struct {
	TemplateName string `json:"templateName"`
	ClusterScope bool   `json:"clusterScope,omitempty"`
}

// AnalysisRunArgument supplies one template argument: a Value, or a value
// taken from the rollout (ValueFrom).
type AnalysisRunArgument struct {
	Name      string             `json:"name"`
	Value     string             `json:"value,omitempty"`
	ValueFrom *ArgumentValueFrom `json:"valueFrom,omitempty"`
}

// ArgumentValueFrom takes an argument's value from the rollout. Exactly one
// field is set.
type ArgumentValueFrom struct {
	// PodTemplateHashValue is the pod template hash of the Stable or Latest
	// revision.
	PodTemplateHashValue *ValueFromPodTemplateHash `json:"podTemplateHashValue,omitempty"`
	// FieldRef is a field of the Rollout, such as metadata.labels['app'].
	FieldRef *FieldRef `json:"fieldRef,omitempty"`
}

// ValueFromPodTemplateHash selects the revision whose pod template hash an
// argument receives.
type ValueFromPodTemplateHash string

// Revisions an argument's pod template hash can come from.
const (
	Stable ValueFromPodTemplateHash = "Stable"
	Latest ValueFromPodTemplateHash = "Latest"
)

// FieldRef selects a field of the referencing object by path.
type FieldRef struct {
	FieldPath string `json:"fieldPath"`
}

// AnalysisRunMetadata is extra metadata added to an analysis run.
type AnalysisRunMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
