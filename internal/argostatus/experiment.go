package argostatus

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/pkg/events"
)

// Experiment is what Argo's Experiment status depends on besides the
// snapshot of a standalone experiment (events.Snapshot with Kind
// events.KindExperiment).
type Experiment struct {
	// Name is the object's.
	Name string
	// Status is the status the object has now (nil: none): completed
	// template statuses, transition times and the conditions' order are
	// kept from it.
	Status map[string]any
	// ReplicaSets are the counts of each template's ReplicaSet, by
	// template name, when the caller has them (a template without an entry
	// has no ReplicaSet: 0). Nil takes the snapshot's available counts.
	ReplicaSets map[string]ReplicaSet
}

// Argo's Experiment condition reason and messages (utils/conditions).
const (
	ReasonExperimentCompleted = "ExperimentCompleted"
	msgExperimentProgressing  = "Experiment %q is progressing."
	msgExperimentRunning      = "Experiment %q is running."
	msgExperimentCompleted    = "Experiment %q has successfully ran and completed."
	templateStatusProgressing = "Progressing"
	templateStatusRunning     = "Running"
	templateStatusSuccessful  = "Successful"
	templateStatusFailed      = "Failed"
	templateStatusError       = "Error"
	experimentAnalysisPending = "Pending"
)

// experimentStatus has the JSON field names, types and omissions of Argo
// Rollouts' v1alpha1.ExperimentStatus (v1.10.0).
type experimentStatus struct {
	Phase            string           `json:"phase,omitempty"`
	Message          string           `json:"message,omitempty"`
	TemplateStatuses []templateStatus `json:"templateStatuses,omitempty"`
	AvailableAt      *metav1.Time     `json:"availableAt,omitempty"`
	Conditions       []condition      `json:"conditions,omitempty"`
	AnalysisRuns     []experimentRun  `json:"analysisRuns,omitempty"`
}

type templateStatus struct {
	Name               string       `json:"name"`
	Replicas           int32        `json:"replicas"`
	UpdatedReplicas    int32        `json:"updatedReplicas"`
	ReadyReplicas      int32        `json:"readyReplicas"`
	AvailableReplicas  int32        `json:"availableReplicas"`
	CollisionCount     *int32       `json:"collisionCount,omitempty"`
	Status             string       `json:"status,omitempty"`
	Message            string       `json:"message,omitempty"`
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
	ServiceName        string       `json:"serviceName,omitempty"`
	PodTemplateHash    string       `json:"podTemplateHash,omitempty"`
}

type experimentRun struct {
	Name        string `json:"name"`
	AnalysisRun string `json:"analysisRun"`
	Phase       string `json:"phase"`
	Message     string `json:"message,omitempty"`
}

// ExperimentStatus is a standalone Experiment's whole status as Argo
// Rollouts' experiment controller writes it, after data's snapshot, for
// ex. now stamps what changes. Integers are int64 and times RFC 3339
// strings, as in unstructured objects.
//
//   - phase and message are the snapshot's, but for an experiment stopped
//     by terminate: Argo has no phase Terminated and ends its own
//     terminated experiments Successful, which Argo CD's health check and
//     the kubectl plugin know, so the object says Successful with the
//     reason in its message;
//   - availableAt is when every template's pods were first available;
//   - templateStatuses has one entry per template: the counts of its
//     ReplicaSet <experiment>-<template>, its status as Argo's (Progressing
//     until its pods are available, Running, then Successful once the
//     experiment ended; Failed for a template whose pods were not
//     available within progressDeadlineSeconds; a completed status never
//     changes again), its pod-template hash and Service;
//   - analysisRuns has one entry per analysis: its name within the
//     experiment, the AnalysisRun's (<experiment>-<analysis>), its phase
//     and message (Pending until the run reports);
//   - conditions: Progressing as Argo sets it (ReplicaSetUpdated while the
//     counts change, NewReplicaSetAvailable while running,
//     ExperimentCompleted, False, once Successful), and InvalidSpec while
//     data.Errors says the spec was rejected (the caller passes them for
//     as long as the object has the rejected spec).
func ExperimentStatus(data events.StatusData, ex Experiment, now time.Time) map[string]any {
	var old experimentStatus
	if ex.Status != nil {
		if b, err := json.Marshal(ex.Status); err == nil {
			_ = json.Unmarshal(b, &old) // a malformed status is replaced
		}
	}
	snap := data.Status
	st := experimentStatus{Phase: snap.Phase, Message: snap.Message, AnalysisRuns: old.AnalysisRuns, TemplateStatuses: old.TemplateStatuses}
	if st.Phase == events.ExperimentPhaseTerminated {
		st.Phase, st.Message = events.ExperimentPhaseSuccessful, "Experiment terminated: "+snap.Message
	}
	sum := snap.Experiment
	if sum != nil {
		if !sum.AvailableAt.IsZero() {
			st.AvailableAt = metaTime(sum.AvailableAt)
		}
		st.TemplateStatuses = templateStatuses(snap, *sum, ex, old, now)
		st.AnalysisRuns = experimentRuns(snap, *sum, old)
	}
	if st.AvailableAt == nil {
		st.AvailableAt = old.AvailableAt
	}
	c := conds{list: old.Conditions, now: metav1.NewTime(now.UTC().Truncate(time.Second))}
	if len(data.Errors) > 0 {
		msg := fmt.Sprintf("The Experiment %q is invalid: %s", ex.Name, strings.Join(data.Errors, "; "))
		if cur := c.get(ConditionInvalidSpec); cur != nil && cur.Message != msg {
			c.remove(ConditionInvalidSpec)
		}
		c.set(ConditionInvalidSpec, condTrue, ReasonInvalidSpec, msg)
	} else {
		c.remove(ConditionInvalidSpec)
	}
	switch {
	case st.Phase == events.ExperimentPhaseSuccessful:
		c.set(ConditionProgressing, condFalse, ReasonExperimentCompleted, fmt.Sprintf(msgExperimentCompleted, ex.Name))
	case progressed(old.TemplateStatuses, st.TemplateStatuses):
		// Argo renews this condition on every progress, keeping only its
		// transition time.
		prev := c.get(ConditionProgressing)
		n := condition{Type: ConditionProgressing, Status: condTrue, Reason: ReasonReplicaSetUpdated,
			Message: fmt.Sprintf(msgExperimentProgressing, ex.Name), LastUpdateTime: c.now, LastTransitionTime: c.now}
		if prev != nil && prev.Status == condTrue {
			n.LastTransitionTime = prev.LastTransitionTime
		}
		c.remove(ConditionProgressing)
		c.list = append(c.list, n)
	case st.AvailableAt != nil && st.Phase == events.ExperimentPhaseRunning:
		c.set(ConditionProgressing, condTrue, ReasonNewReplicaSetAvailable, fmt.Sprintf(msgExperimentRunning, ex.Name))
	}
	st.Conditions = c.list
	return toMap(st)
}

// templateStatuses are the templates' entries, in the snapshot's order.
func templateStatuses(snap events.Snapshot, sum events.ExperimentSummary, ex Experiment, old experimentStatus, now time.Time) []templateStatus {
	at := metaTime(now)
	ended := snap.Phase != events.ExperimentPhasePending && snap.Phase != events.ExperimentPhaseRunning
	var out []templateStatus
	for _, t := range sum.Templates {
		ts := templateStatus{Name: t.Name, ServiceName: t.Service, PodTemplateHash: t.PodHash}
		if ex.ReplicaSets != nil {
			rs := ex.ReplicaSets[t.Name]
			ts.Replicas, ts.ReadyReplicas, ts.AvailableReplicas = rs.Replicas, rs.Ready, rs.Available
		} else {
			ts.Replicas, ts.ReadyReplicas, ts.AvailableReplicas = t.Available, t.Available, t.Available
		}
		ts.UpdatedReplicas = ts.Replicas
		var prev *templateStatus
		for i := range old.TemplateStatuses {
			if old.TemplateStatuses[i].Name == t.Name {
				prev = &old.TemplateStatuses[i]
			}
		}
		switch {
		case prev != nil && templateCompleted(prev.Status):
			ts.Status, ts.Message = prev.Status, prev.Message
		case !ended && t.Replicas > 0 && t.Available >= t.Replicas:
			ts.Status = templateStatusRunning
		case !ended:
			ts.Status = templateStatusProgressing
		case snap.Phase == events.ExperimentPhaseFailed && sum.AvailableAt.IsZero() && t.Available < t.Replicas:
			// Its pods did not become available in time.
			ts.Status, ts.Message = templateStatusFailed, snap.Message
		default:
			ts.Status = templateStatusSuccessful
		}
		ts.LastTransitionTime = at
		if prev != nil {
			ts.CollisionCount = prev.CollisionCount
			if prev.Status == ts.Status && prev.Replicas == ts.Replicas && prev.ReadyReplicas == ts.ReadyReplicas &&
				prev.AvailableReplicas == ts.AvailableReplicas && prev.LastTransitionTime != nil {
				ts.LastTransitionTime = prev.LastTransitionTime
			}
		}
		out = append(out, ts)
	}
	return out
}

func templateCompleted(s string) bool {
	return s == templateStatusSuccessful || s == templateStatusFailed || s == templateStatusError
}

// progressed reports whether a template's counts changed, or a template
// appeared, as Argo's ExperimentProgressing judges it.
func progressed(old, cur []templateStatus) bool {
	if len(old) < len(cur) {
		return true
	}
	for _, o := range old {
		for _, c := range cur {
			if o.Name == c.Name && (o.Replicas != c.Replicas || o.UpdatedReplicas != c.UpdatedReplicas ||
				o.ReadyReplicas != c.ReadyReplicas || o.AvailableReplicas != c.AvailableReplicas) {
				return true
			}
		}
	}
	return false
}

// experimentRuns are the analyses' entries, in the order the summary
// names their runs: the snapshot's phase, else the one written before (a
// finished run the snapshot no longer lists), else Pending.
func experimentRuns(snap events.Snapshot, sum events.ExperimentSummary, old experimentStatus) []experimentRun {
	var out []experimentRun
	for _, name := range sum.Runs {
		r := experimentRun{Name: strings.TrimPrefix(name, sum.Name+"-"), AnalysisRun: name, Phase: experimentAnalysisPending}
		found := false
		for _, s := range snap.Runs {
			if s.Name == name {
				r.Phase, r.Message, found = s.Phase, s.Message, true
			}
		}
		if !found {
			for _, o := range old.AnalysisRuns {
				if o.AnalysisRun == name {
					r.Phase, r.Message = o.Phase, o.Message
				}
			}
		}
		out = append(out, r)
	}
	return out
}
