package argostatus

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/pkg/events"
)

// Argo's condition types (v1alpha1.RolloutConditionType).
const (
	ConditionInvalidSpec    = "InvalidSpec"
	ConditionAvailable      = "Available"
	ConditionProgressing    = "Progressing"
	ConditionReplicaFailure = "ReplicaFailure"
	ConditionPaused         = "Paused"
	ConditionCompleted      = "Completed"
	ConditionHealthy        = "Healthy"
)

// Argo's condition reasons (utils/conditions).
const (
	ReasonInvalidSpec              = "InvalidSpec"
	ReasonAvailable                = "AvailableReason"
	ReasonReplicaSetUpdated        = "ReplicaSetUpdated"
	ReasonReplicaSetNotAvailable   = "ReplicaSetNotAvailable"
	ReasonNewReplicaSetAvailable   = "NewReplicaSetAvailable"
	ReasonRolloutPaused            = "RolloutPaused"
	ReasonRolloutResumed           = "RolloutResumed"
	ReasonRolloutRetry             = "RolloutRetry"
	ReasonRolloutAborted           = "RolloutAborted"
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonReconciliationError      = "ReconciliationError"
	ReasonRolloutCompleted         = "RolloutCompleted"
	ReasonRolloutHealthy           = "RolloutHealthy"
)

// Argo's condition messages.
const (
	msgAvailable         = "Rollout has minimum availability"
	msgNotAvailable      = "Rollout does not have minimum availability"
	msgPaused            = "Rollout is paused"
	msgResumed           = "Rollout is resumed"
	msgRetry             = "Retrying Rollout after abort"
	msgHealthy           = "Rollout is healthy"
	msgNotHealthy        = "Rollout is not healthy"
	msgAborted           = "Rollout aborted update to revision %d"
	msgRSProgressing     = "ReplicaSet %q is progressing."
	msgRSCompleted       = "ReplicaSet %q has successfully progressed."
	msgRSTimedOut        = "ReplicaSet %q has timed out progressing."
	msgReconcileError    = "Reconciliation failed with error: %s"
	condTrue, condFalse  = "True", "False"
	condUnknown          = "Unknown"
	prefixAborted        = ReasonRolloutAborted + ": "
	prefixDeadline       = ReasonProgressDeadlineExceeded + ": "
	replicaSetNameFormat = "%s-%s"
)

// conds is a condition list changed as Argo's SetRolloutCondition
// changes it: a condition whose status and reason are unchanged is left
// as it is (message and times too); a changed one moves to the end, and
// keeps its lastTransitionTime when only its reason changed. So the list
// has Argo's order, which is the order of the changes.
type conds struct {
	list []condition
	now  metav1.Time
}

func (c *conds) get(typ string) *condition {
	for i := range c.list {
		if c.list[i].Type == typ {
			return &c.list[i]
		}
	}
	return nil
}

// set reports whether it changed the list.
func (c *conds) set(typ, status, reason, message string) bool {
	cur := c.get(typ)
	if cur != nil && cur.Status == status && cur.Reason == reason {
		return false
	}
	n := condition{Type: typ, Status: status, Reason: reason, Message: message, LastUpdateTime: c.now, LastTransitionTime: c.now}
	if cur != nil && cur.Status == status {
		n.LastTransitionTime = cur.LastTransitionTime
	}
	c.remove(typ)
	c.list = append(c.list, n)
	return true
}

func (c *conds) remove(typ string) {
	out := c.list[:0:0]
	for _, x := range c.list {
		if x.Type != typ {
			out = append(out, x)
		}
	}
	c.list = out
}

// conditionsOf evaluates Argo's conditions for the new status st, in the
// order Argo's controller evaluates them: InvalidSpec, then the pause
// conditions (checkPausedConditions), then Healthy, Progressing,
// Available, ReplicaFailure and Completed (calculateRolloutConditions).
func conditionsOf(data events.StatusData, v view, old, st status, now time.Time) []condition {
	snap := data.Status
	c := &conds{list: append([]condition(nil), old.Conditions...), now: *metaTime(now)}
	rsName := fmt.Sprintf(replicaSetNameFormat, v.name, snap.PodHash)

	if len(data.Errors) > 0 {
		msg := joinErrors(v.name, data.Errors)
		if cur := c.get(ConditionInvalidSpec); cur != nil && cur.Message != msg {
			c.remove(ConditionInvalidSpec) // Argo rewrites it when the reason why changes
		}
		c.set(ConditionInvalidSpec, condTrue, ReasonInvalidSpec, msg)
	} else {
		c.remove(ConditionInvalidSpec)
	}

	isPaused := len(st.PauseConditions) > 0 || v.paused
	if snap.Aborted {
		msg := fmt.Sprintf(msgAborted, snap.Revision)
		if m, ok := strings.CutPrefix(snap.Message, prefixAborted); ok {
			msg = m
		}
		c.set(ConditionProgressing, condFalse, ReasonRolloutAborted, msg)
	}
	prog := c.get(ConditionProgressing)
	abortCond := prog != nil && prog.Reason == ReasonRolloutAborted
	progPaused := prog != nil && prog.Reason == ReasonRolloutPaused
	// Argo leaves a completed rollout's Progressing alone; it judges by
	// the status before its reconcile and gets here one reconcile later,
	// which this single write does not wait for.
	if isPaused != progPaused && !abortCond && !completed(st) {
		if isPaused {
			c.set(ConditionProgressing, condUnknown, ReasonRolloutPaused, msgPaused)
		} else {
			c.set(ConditionProgressing, condUnknown, ReasonRolloutResumed, msgResumed)
		}
	}
	if !snap.Aborted && abortCond {
		c.set(ConditionProgressing, condUnknown, ReasonRolloutRetry, msgRetry)
	}
	if p := c.get(ConditionPaused); isPaused != (p != nil && p.Status == condTrue) && !abortCond {
		s := condFalse
		if isPaused {
			s = condTrue
		}
		c.set(ConditionPaused, s, ReasonRolloutPaused, msgPaused)
	}

	healthy := rolloutHealthy(v, st)
	var becameUnhealthy bool
	if !isPaused && healthy {
		c.set(ConditionHealthy, condTrue, ReasonRolloutHealthy, msgHealthy)
	} else if c.get(ConditionHealthy) != nil {
		becameUnhealthy = c.set(ConditionHealthy, condFalse, ReasonRolloutHealthy, msgNotHealthy)
	}

	if !snap.Aborted {
		deadline, isDeadline := strings.CutPrefix(snap.Message, prefixDeadline)
		isDeadline = isDeadline && snap.Phase == events.PhaseDegraded
		switch {
		case healthy:
			c.set(ConditionProgressing, condTrue, ReasonNewReplicaSetAvailable, fmt.Sprintf(msgRSCompleted, rsName))
		case isDeadline:
			c.set(ConditionProgressing, condFalse, ReasonProgressDeadlineExceeded, deadline)
		case snap.Phase == events.PhaseDegraded:
			c.set(ConditionProgressing, condFalse, ReasonReconciliationError, fmt.Sprintf(msgReconcileError, snap.Message))
		case isPaused && c.get(ConditionProgressing) != nil && c.get(ConditionProgressing).Reason == ReasonRolloutPaused:
			// Paused: Argo's next reconcile sees no progress and keeps it.
		case progressing(v, old, st) || becameUnhealthy:
			reason, msg := ReasonReplicaSetUpdated, fmt.Sprintf(msgRSProgressing, rsName)
			if st.StableRS == st.CurrentPodHash && becameUnhealthy {
				reason, msg = ReasonReplicaSetNotAvailable, msgNotAvailable
			}
			// Argo stamps every progress, so the condition is replaced
			// (lastUpdateTime now) rather than left as it is.
			ltt := c.now
			if cur := c.get(ConditionProgressing); cur != nil {
				if cur.Status == condTrue {
					ltt = cur.LastTransitionTime
				}
				c.remove(ConditionProgressing)
			}
			c.set(ConditionProgressing, condTrue, reason, msg)
			c.get(ConditionProgressing).LastTransitionTime = ltt
		}
	}

	if available(v, st) {
		c.set(ConditionAvailable, condTrue, ReasonAvailable, msgAvailable)
	} else {
		c.set(ConditionAvailable, condFalse, ReasonAvailable, msgNotAvailable)
	}
	c.remove(ConditionReplicaFailure)
	if completed(st) {
		c.set(ConditionCompleted, condTrue, ReasonRolloutCompleted, ReasonRolloutCompleted)
	} else {
		c.set(ConditionCompleted, condFalse, ReasonRolloutCompleted, ReasonRolloutCompleted)
	}
	return c.list
}

// completed is Argo's RolloutCompleted: the revision rolled out is stable.
func completed(st status) bool { return st.StableRS != "" && st.StableRS == st.CurrentPodHash }

// rolloutHealthy is Argo's RolloutHealthy: every desired replica updated
// and available, and the strategy done (blue/green's Services on the new
// revision; the canary's steps done, its revision stable and old replicas
// gone). The generation is observed by construction.
func rolloutHealthy(v view, st status) bool {
	done := true
	switch {
	case v.blueGreen:
		done = st.BlueGreen.ActiveSelector == st.CurrentPodHash
		if v.previewSvc != "" {
			done = done && st.BlueGreen.PreviewSelector == st.CurrentPodHash
		}
	case v.canary:
		steps := v.steps == 0 || st.CurrentStepIndex == nil || *st.CurrentStepIndex == v.steps
		done = steps && completed(st) && st.Replicas == v.replicas
	}
	return st.UpdatedReplicas == v.replicas && st.AvailableReplicas == v.replicas && done
}

// progressing is Argo's RolloutProgressing: something moved since the
// status the object had.
func progressing(v view, old, st status) bool {
	moved := false
	switch {
	case v.canary:
		step := old.CurrentStepIndex != nil && st.CurrentStepIndex != nil && *old.CurrentStepIndex != *st.CurrentStepIndex
		moved = old.StableRS != st.StableRS || step || old.CurrentStepHash != st.CurrentStepHash
	case v.blueGreen:
		moved = old.BlueGreen.ActiveSelector != st.BlueGreen.ActiveSelector || old.BlueGreen.PreviewSelector != st.BlueGreen.PreviewSelector
	}
	return st.UpdatedReplicas != old.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		st.ReadyReplicas > old.ReadyReplicas ||
		st.AvailableReplicas > old.AvailableReplicas ||
		moved
}

// available is Argo's Available condition: blue/green's active revision
// has every desired replica available; a canary has as many available
// replicas, counted over all of its revisions.
func available(v view, st status) bool {
	if v.blueGreen {
		return st.BlueGreen.ActiveSelector != "" && st.AvailableReplicas >= v.replicas
	}
	return st.AvailableReplicas >= v.replicas
}

// phase is Argo's CalculateRolloutPhase over the new status: what
// `kubectl argo rollouts get` shows and Argo CD's health check reports.
func phase(v view, st status) (string, string) {
	for _, c := range st.Conditions {
		if c.Type == ConditionInvalidSpec {
			return events.PhaseDegraded, ConditionInvalidSpec + ": " + c.Message
		}
		if c.Reason == ReasonRolloutAborted || c.Reason == ReasonProgressDeadlineExceeded {
			return events.PhaseDegraded, c.Reason + ": " + c.Message
		}
	}
	if v.paused {
		return events.PhasePaused, "manually paused"
	}
	if len(st.PauseConditions) > 0 {
		return events.PhasePaused, st.PauseConditions[0].Reason
	}
	if v.restartAt != nil && (st.RestartedAt == nil || !v.restartAt.Time.Equal(st.RestartedAt.Time)) {
		return events.PhaseProgressing, "rollout is restarting"
	}
	if st.UpdatedReplicas < v.replicas {
		return events.PhaseProgressing, "more replicas need to be updated"
	}
	if st.AvailableReplicas < st.UpdatedReplicas {
		return events.PhaseProgressing, "updated replicas are still becoming available"
	}
	switch {
	case v.blueGreen:
		if st.BlueGreen.ActiveSelector == "" || st.BlueGreen.ActiveSelector != st.CurrentPodHash {
			return events.PhaseProgressing, "active service cutover pending"
		}
		if !completed(st) {
			if r := st.BlueGreen.PostPromotionAnalysisRunStatus; v.postAnalyze && (r == nil || !analysisDone(r.Status)) {
				return events.PhaseProgressing, "waiting for analysis to complete"
			}
			return events.PhaseProgressing, "waiting for post-promotion verification to complete"
		}
	case v.canary:
		if !v.routed && st.Replicas > st.UpdatedReplicas {
			return events.PhaseProgressing, "old replicas are pending termination"
		}
		if !completed(st) {
			return events.PhaseProgressing, "waiting for all steps to complete"
		}
	}
	return events.PhaseHealthy, ""
}

// analysisDone is Argo's AnalysisPhase.Completed.
func analysisDone(p string) bool {
	switch p {
	case "Successful", "Failed", "Error", "Inconclusive":
		return true
	}
	return false
}
