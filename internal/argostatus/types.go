package argostatus

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// status has the JSON field names, types and omissions of Argo Rollouts'
// v1alpha1.RolloutStatus (v1.10.0). canary and blueGreen are values, as
// in Argo, so they are written as {} when empty. What Sluice does not
// produce (collisionCount, alb, albs, the canary's experiment, ping-pong
// and step plugin fields) is kept as the object has it.
type status struct {
	Abort                      bool             `json:"abort,omitempty"`
	PauseConditions            []pauseCondition `json:"pauseConditions,omitempty"`
	ControllerPause            bool             `json:"controllerPause,omitempty"`
	AbortedAt                  *metav1.Time     `json:"abortedAt,omitempty"`
	CurrentPodHash             string           `json:"currentPodHash,omitempty"`
	CurrentStepHash            string           `json:"currentStepHash,omitempty"`
	Replicas                   int32            `json:"replicas,omitempty"`
	UpdatedReplicas            int32            `json:"updatedReplicas,omitempty"`
	ReadyReplicas              int32            `json:"readyReplicas,omitempty"`
	AvailableReplicas          int32            `json:"availableReplicas,omitempty"`
	CurrentStepIndex           *int32           `json:"currentStepIndex,omitempty"`
	CollisionCount             *int32           `json:"collisionCount,omitempty"`
	ObservedGeneration         string           `json:"observedGeneration,omitempty"`
	Conditions                 []condition      `json:"conditions,omitempty"`
	Canary                     canaryStatus     `json:"canary"`
	BlueGreen                  blueGreenStatus  `json:"blueGreen"`
	HPAReplicas                int32            `json:"HPAReplicas,omitempty"`
	Selector                   string           `json:"selector,omitempty"`
	StableRS                   string           `json:"stableRS,omitempty"`
	RestartedAt                *metav1.Time     `json:"restartedAt,omitempty"`
	PromoteFull                bool             `json:"promoteFull,omitempty"`
	Phase                      string           `json:"phase,omitempty"`
	Message                    string           `json:"message,omitempty"`
	WorkloadObservedGeneration string           `json:"workloadObservedGeneration,omitempty"`
	ALB                        json.RawMessage  `json:"alb,omitempty"`
	ALBs                       json.RawMessage  `json:"albs,omitempty"`
}

type pauseCondition struct {
	Reason    string      `json:"reason"`
	StartTime metav1.Time `json:"startTime"`
}

type condition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	LastUpdateTime     metav1.Time `json:"lastUpdateTime"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime"`
	Reason             string      `json:"reason"`
	Message            string      `json:"message"`
}

type canaryStatus struct {
	CurrentStepAnalysisRunStatus       *runStatus      `json:"currentStepAnalysisRunStatus,omitempty"`
	CurrentBackgroundAnalysisRunStatus *runStatus      `json:"currentBackgroundAnalysisRunStatus,omitempty"`
	CurrentExperiment                  string          `json:"currentExperiment,omitempty"`
	Weights                            *trafficWeights `json:"weights,omitempty"`
	StablePingPong                     string          `json:"stablePingPong,omitempty"`
	StepPluginStatuses                 json.RawMessage `json:"stepPluginStatuses,omitempty"`
}

type blueGreenStatus struct {
	PreviewSelector                string     `json:"previewSelector,omitempty"`
	ActiveSelector                 string     `json:"activeSelector,omitempty"`
	ScaleUpPreviewCheckPoint       bool       `json:"scaleUpPreviewCheckPoint,omitempty"`
	PrePromotionAnalysisRunStatus  *runStatus `json:"prePromotionAnalysisRunStatus,omitempty"`
	PostPromotionAnalysisRunStatus *runStatus `json:"postPromotionAnalysisRunStatus,omitempty"`
}

type trafficWeights struct {
	Canary weightDestination `json:"canary"`
	Stable weightDestination `json:"stable"`
	// Additional are the running experiment's weighted templates.
	Additional []weightDestination `json:"additional,omitempty"`
}

type weightDestination struct {
	Weight          int32  `json:"weight"`
	ServiceName     string `json:"serviceName,omitempty"`
	PodTemplateHash string `json:"podTemplateHash,omitempty"`
}

type runStatus struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}
