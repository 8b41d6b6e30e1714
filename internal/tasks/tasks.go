// Package tasks is the internal protocol between the orchestrator and the
// worker services (replicas, traffic, analyzer). It is not public API: it may
// change between releases, and docs/events.md describes it for operators.
//
// A task follows triggered -> started -> finished, correlated by its ID
// (started only once the task has run for worker.Config.StartedAfter, 250ms
// by default; a task finished sooner reports finished only):
//
//	orchestrator --io.sluice.task.triggered.v1--> sluice.task.<service>.<ns>.<name>
//	worker       --io.sluice.task.started.v1----> sluice.result.<ns>.<name>
//	analyzer     --io.sluice.task.measured.v1---> sluice.result.<ns>.<name>  (analysis only, per measurement)
//	worker       --io.sluice.task.finished.v1---> sluice.result.<ns>.<name>
//
// Every task carries the complete desired state of what it manages (all
// revisions' replica counts; the whole routing table), never a delta, so that
// applying a task twice has the effect of applying it once. Seq orders the
// scale and route tasks of one rollout for one service: the replicas and
// traffic workers must not apply a task whose Seq is lower than one they
// already applied for that rollout, and report such a task finished with
// OutcomeStale. Analysis tasks are keyed by run name instead (a run is
// created once and terminated once), so the analyzer ignores Seq.
package tasks

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// Worker services, the <service> token of a task subject.
const (
	ServiceReplicas = "replicas"
	ServiceTraffic  = "traffic"
	ServiceAnalyzer = "analyzer"
)

// Event types of the task protocol.
const (
	TypeTriggered = "io.sluice.task.triggered.v1"
	TypeStarted   = "io.sluice.task.started.v1"
	TypeMeasured  = "io.sluice.task.measured.v1"
	TypeFinished  = "io.sluice.task.finished.v1"
)

// Task kinds.
const (
	// KindScale makes the listed revisions run the listed replica counts and
	// finishes when each is available at its count (scaling down finishes
	// once the pods are gone).
	KindScale = "replicas.scale"
	// KindRoute applies a routing table and finishes when the router
	// reports it in effect.
	KindRoute = "traffic.route"
	// KindAnalysisRun starts an analysis run; it finishes with the run's
	// verdict (never, for a background run, until terminated).
	KindAnalysisRun = "analysis.run"
	// KindAnalysisTerminate stops a run; the run then finishes Successful
	// unless it had already failed.
	KindAnalysisTerminate = "analysis.terminate"
)

// Task is the data of io.sluice.task.triggered.v1.
type Task struct {
	// ID identifies the task across its attempts; the event id is
	// ID + "#" + Attempt, so a republished attempt is stored once.
	ID      string     `json:"id"`
	Attempt int        `json:"attempt"`
	Kind    string     `json:"kind"`
	Ref     events.Ref `json:"ref"`
	// Seq orders this rollout's tasks for one service (see package doc).
	Seq int64 `json:"seq"`
	// Revision is the rollout revision the task serves.
	Revision int64 `json:"revision"`
	// OwnerKind is the kind of object Ref names: empty for a Rollout,
	// spec.KindExperiment for a standalone Experiment (whose tasks have
	// Revision 1). On Kubernetes what the task creates (ReplicaSets,
	// Services, Jobs, AnalysisRuns) is owned by that object.
	OwnerKind string `json:"ownerKind,omitempty"`

	Scale    *Scale    `json:"scale,omitempty"`
	Route    *Route    `json:"route,omitempty"`
	Analysis *Analysis `json:"analysis,omitempty"`
}

// Service is the worker service that carries out kind.
func Service(kind string) (string, error) {
	switch kind {
	case KindScale:
		return ServiceReplicas, nil
	case KindRoute:
		return ServiceTraffic, nil
	case KindAnalysisRun, KindAnalysisTerminate:
		return ServiceAnalyzer, nil
	}
	return "", fmt.Errorf("no service carries out task kind %q", kind)
}

// EventID is the CloudEvent id of one attempt of a task.
func (t Task) EventID() string { return fmt.Sprintf("%s#%d", t.ID, t.Attempt) }

// Scale is the desired size of every revision the rollout still runs.
// Revisions not listed are left alone (the orchestrator lists every revision
// that has pods, with Replicas 0 for those to remove).
type Scale struct {
	// Workload carries what every revision shares.
	Workload Workload `json:"workload"`
	// Revisions lists the desired state of each revision.
	Revisions []RevisionScale `json:"revisions"`
	// Remove means the rollout is being deleted: every listed revision
	// (all at 0 replicas) is removed, not only scaled down, with whatever
	// the platform keeps for it (ReplicaSets on Kubernetes; processes and
	// their records on the local platform), and so is every other revision
	// the worker still runs for the rollout. The task finishes once they
	// are gone. The worker then forgets the rollout, its seq guard
	// included (on Kubernetes it lives on the ReplicaSets), so the next
	// task for it starts fresh whatever its seq; a Remove with a seq lower
	// than one applied is stale, as any task.
	Remove bool `json:"remove,omitempty"`
}

// Workload is the part of the Rollout a worker needs to create pods.
type Workload struct {
	Selector        *metav1.LabelSelector `json:"selector,omitempty"`
	MinReadySeconds int32                 `json:"minReadySeconds,omitempty"`
	// Annotations and Labels of the Rollout object (for the local platform's
	// settings such as local.sluice.io/listen).
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// AntiAffinity, when set, keeps a new revision's pods (canary, preview)
	// off the nodes of the stable or active revision's pods.
	AntiAffinity *spec.AntiAffinity `json:"antiAffinity,omitempty"`
	// RevisionHistoryLimit is how many revisions without pods a platform
	// keeps (Kubernetes: scaled-down ReplicaSets, for a quick undo); unset
	// means spec.DefaultRevisionHistoryLimit.
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
}

// RevisionScale is one revision's desired state.
type RevisionScale struct {
	Revision int64     `json:"revision"`
	PodHash  string    `json:"podHash"`
	Role     spec.Role `json:"role"`
	Replicas int32     `json:"replicas"`
	// Template is the revision's pod template, without the pod hash label
	// (the worker adds spec.LabelPodTemplateHash).
	Template corev1.PodTemplateSpec `json:"template"`
	// Metadata is the ephemeral metadata of the revision's current role
	// (canaryMetadata, stableMetadata, activeMetadata, previewMetadata).
	Metadata *spec.PodTemplateMetadata `json:"metadata,omitempty"`
	// RestartAt, when set, restarts the revision's pods, as Argo's
	// spec.restartAt does: every pod started before it is replaced by a new
	// one, with at most MaxUnavailable of the revision's pods unavailable at
	// once (at least one at a time). The task finishes once every pod was
	// started at or after RestartAt and the revision is available at its
	// count. Pods started later are left alone, so the task stays
	// idempotent: the orchestrator keeps sending the same RestartAt. A
	// RestartAt still to come is waited for (on Kubernetes, whose pod
	// creationTimestamps have whole seconds, until the second after it).
	// A pod not available anyway is replaced without counting against
	// MaxUnavailable.
	RestartAt      time.Time `json:"restartAt,omitzero"`
	MaxUnavailable int32     `json:"maxUnavailable,omitempty"`
	// Experiment, when set, makes these the pods of an experiment's
	// template rather than of the revision itself: they run apart from the
	// revision's own pods (their own ReplicaSet on Kubernetes, their own
	// processes locally), even when PodHash equals a revision's, and a
	// scale entry is identified by (PodHash, Experiment.Template).
	Experiment *ExperimentPods `json:"experiment,omitempty"`
}

// ExperimentPods identifies the pods of one template of an experiment.
type ExperimentPods struct {
	// Name is the experiment's: <rollout>-<pod hash>-<revision>-<step>, as
	// Argo names the Experiment of a canary step.
	Name string `json:"name"`
	// Template is the template's name (templates[].name).
	Template string `json:"template"`
	// Selector, when set, replaces the workload's selector for these pods.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Service, when set, is the name of a Service to give the pods
	// (Kubernetes; created with them and deleted when they go).
	Service string `json:"service,omitempty"`
}

// ReplicaSetName is the name of the pods' ReplicaSet (Argo's
// <experiment>-<template>), also their process name on the local platform.
func (e ExperimentPods) ReplicaSetName() string { return e.Name + "-" + e.Template }

// Route is the complete desired routing of one rollout.
type Route struct {
	Strategy spec.Strategy `json:"strategy"`
	// Canary fields: the services, the router, and what goes where.
	CanaryService  string               `json:"canaryService,omitempty"`
	StableService  string               `json:"stableService,omitempty"`
	TrafficRouting *spec.TrafficRouting `json:"trafficRouting,omitempty"`
	StableHash     string               `json:"stableHash,omitempty"`
	CanaryHash     string               `json:"canaryHash,omitempty"`
	// CanaryWeight is the percentage (of MaxTrafficWeight, default 100) of
	// traffic routed to the canary.
	CanaryWeight int32                 `json:"canaryWeight"`
	HeaderRoutes []spec.SetHeaderRoute `json:"headerRoutes,omitempty"`
	MirrorRoutes []spec.SetMirrorRoute `json:"mirrorRoutes,omitempty"`
	// Experiments are the experiment templates that receive a share of
	// the traffic (weight set; trafficRouting only). Their weights come out
	// of the stable's share: the stable gets 100 - CanaryWeight - the sum.
	Experiments []ExperimentRoute `json:"experiments,omitempty"`

	// Blue/green fields.
	ActiveService  string `json:"activeService,omitempty"`
	PreviewService string `json:"previewService,omitempty"`
	ActiveHash     string `json:"activeHash,omitempty"`
	PreviewHash    string `json:"previewHash,omitempty"`

	// Annotations of the Rollout (for the local proxy's listen address).
	Annotations map[string]string `json:"annotations,omitempty"`
	// Remove means the rollout is being deleted: the router removes what
	// it manages for it (the local proxy is closed; objects the router
	// created are deleted; routes it added to objects it does not own are
	// taken out and their weights set back to the stable service; the
	// Services are left, released). The other fields describe the routing
	// to remove. As for Scale.Remove, the router forgets the rollout where
	// it keeps the seq itself (the local proxy); on Kubernetes, objects it
	// only releases no longer carry the rollout's seq either.
	Remove bool `json:"remove,omitempty"`
}

// Analysis asks the analyzer to run (or terminate) one analysis run.
type Analysis struct {
	// RunName is unique per rollout, revision and purpose.
	RunName string `json:"runName"`
	// Purpose is "step", "background", "prePromotion" or "postPromotion".
	Purpose string `json:"purpose,omitempty"`
	// Spec is the rollout's analysis reference: templates, args, dry run.
	Spec *spec.RolloutAnalysis `json:"spec,omitempty"`
	// Args already resolved from the rollout (pod hashes, field refs).
	Args []spec.AnalysisRunArgument `json:"args,omitempty"`
}

// ErrStale means a task with a higher seq was already applied for the
// rollout, either before this one or while it waited, so this one was not:
// applying it would undo a later decision (a late "weight 20" after an
// abort's "weight 0"). Workers (replicas.Backend, traffic.Router) wrap it;
// the task finishes OutcomeStale.
var ErrStale = errors.New("stale task")

// Outcomes of a finished task.
const (
	OutcomeSucceeded = "Succeeded"
	OutcomeFailed    = "Failed"
	// OutcomeStale means a later task for the same rollout had already been
	// applied; nothing was done.
	OutcomeStale = "Stale"
)

// Started is the data of io.sluice.task.started.v1.
type Started struct {
	TaskID  string `json:"taskId"`
	Attempt int    `json:"attempt"`
	Kind    string `json:"kind"`
	// Worker identifies the process that took the task.
	Worker string    `json:"worker"`
	At     time.Time `json:"at"`
}

// Finished is the data of io.sluice.task.finished.v1.
type Finished struct {
	TaskID  string    `json:"taskId"`
	Attempt int       `json:"attempt"`
	Kind    string    `json:"kind"`
	Outcome string    `json:"outcome"`
	Message string    `json:"message,omitempty"`
	Worker  string    `json:"worker,omitempty"`
	At      time.Time `json:"at"`

	// Replicas reports each revision's pods after a scale task.
	Replicas []RevisionStatus `json:"replicas,omitempty"`
	// CanaryWeight is the weight in effect after a route task.
	CanaryWeight *int32 `json:"canaryWeight,omitempty"`
	// Analysis is the verdict of an analysis run.
	Analysis *events.AnalysisSummary `json:"analysis,omitempty"`
}

// RevisionStatus counts one revision's pods, or one experiment
// template's: a scale entry is identified by (PodHash, Template).
type RevisionStatus struct {
	Revision int64  `json:"revision"`
	PodHash  string `json:"podHash"`
	// Template is the entry's Experiment.Template for an experiment's pods,
	// empty for the revision's own pods; without it the orchestrator could
	// not tell the two apart when they share a pod hash.
	Template  string `json:"template,omitempty"`
	Replicas  int32  `json:"replicas"`
	Ready     int32  `json:"ready"`
	Available int32  `json:"available"`
}

// Measured is the data of io.sluice.task.measured.v1: one measurement of an
// analysis run in progress, with the run's summary so far.
type Measured struct {
	TaskID  string `json:"taskId"`
	RunName string `json:"runName"`
	// Index numbers the measurements of one metric of the run from 1, so
	// that a redelivered report is recognised.
	Index       int                    `json:"index"`
	Measurement events.Measurement     `json:"measurement"`
	Analysis    events.AnalysisSummary `json:"analysis"`
}

// ExperimentRoute is the traffic of one experiment template.
type ExperimentRoute struct {
	// Pods are the template's pods (ExperimentPods of its scale entry).
	Pods ExperimentPods `json:"pods"`
	// PodHash is the pods' pod template hash.
	PodHash string `json:"podHash"`
	// Weight is the template's percentage of the traffic (of
	// MaxTrafficWeight, default 100).
	Weight int32 `json:"weight"`
}
