package machine

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// halted reports whether the update may not move on: a user pause or an
// inconclusive analysis, as Argo's haltProgress.
func (r *run) halted() bool {
	return r.s.UserPaused || r.s.hasCondition(PauseInconclusive)
}

// progress makes one move of the rollout if one is due: completes the
// current step, promotes the new revision to stable once the plan is done,
// or marks the stable revision complete. It reports whether it moved.
func (r *run) progress() bool {
	s := r.s
	if s.inProgress() {
		if s.Aborted || r.halted() {
			return false
		}
		if s.Step < s.planLen() {
			return r.advanceStep()
		}
		if r.scaleDone() && r.routeDone() {
			r.promoteStable()
			return true
		}
		return false
	}
	if !s.Completed && s.Failure == "" && r.scaleDone() && r.routeDone() {
		s.Completed = true
		r.emit(events.TypeRolloutCompleted, events.StatusData{})
		return true
	}
	return false
}

// advanceStep completes the current step when it is done, or starts the
// pause it needs. It reports whether anything changed.
func (r *run) advanceStep() bool {
	s := r.s
	st, ok := s.planStep(s.Step)
	if !ok {
		return false
	}
	done := false
	switch st.Action {
	case actionPause:
		switch {
		case !s.hasCondition(PauseCanaryStep):
			done = true
		case !s.PauseUntil.IsZero() && !r.now.Before(s.PauseUntil):
			r.removeCondition(PauseCanaryStep)
			r.emit(events.TypeRolloutResumed, events.StatusData{Reason: "pause ended: " + st.detail()})
			done = true
		}
	case actionSetWeight, actionSetCanaryScale, actionPromote:
		done = r.scaleDone() && r.routeDone()
	case actionSetHeaderRoute, actionSetMirrorRoute:
		done = r.routeDone()
	case actionAnalysis, actionPostPromotionAnalysis:
		done = r.runPassed(r.runName(st.Action, s.Step))
	case actionPreview:
		return r.advancePreview()
	default:
		done = true
	}
	if done {
		r.completeStep()
	}
	return done
}

// advancePreview moves blue/green's first stage: the preview is up, then
// prePromotionAnalysis passes, then the rollout pauses when auto-promotion
// is off or delayed, then it moves on to the promotion.
func (r *run) advancePreview() bool {
	s := r.s
	b := s.blueGreen()
	if !r.scaleDone() || !r.routeDone() {
		return false
	}
	if b.PrePromotionAnalysis != nil && !s.PromoteFull && !r.runPassed(r.runName(actionPreview, 0)) {
		return false
	}
	auto := b.AutoPromotionEnabled == nil || *b.AutoPromotionEnabled
	if !s.PromoteFull && (!auto || b.AutoPromotionSeconds > 0) {
		if !s.StepPaused {
			s.StepPaused = true
			r.addCondition(PauseBlueGreen)
			if auto {
				s.PauseUntil = r.now.Add(time.Duration(b.AutoPromotionSeconds) * time.Second)
			}
			r.emit(events.TypeRolloutPaused, events.StatusData{Reason: PauseBlueGreen})
			return true
		}
		if s.hasCondition(PauseBlueGreen) {
			if s.PauseUntil.IsZero() || r.now.Before(s.PauseUntil) {
				return false
			}
			r.removeCondition(PauseBlueGreen)
			r.emit(events.TypeRolloutResumed, events.StatusData{Reason: "autoPromotionSeconds passed"})
		}
	}
	r.completeStep()
	return true
}

// completeStep publishes the end of the current step and enters the next.
func (r *run) completeStep() {
	s := r.s
	st, _ := s.planStep(s.Step)
	info := stepInfo(s.Step, st)
	r.removeCondition(PauseCanaryStep)
	r.removeCondition(PauseBlueGreen)
	s.Step++
	s.StepPaused, s.PauseUntil = false, time.Time{}
	r.emit(events.TypeRolloutStepCompleted, events.StatusData{Step: &info})
	r.enterStep()
}

// enterStep publishes the start of the current step and starts what it
// does at once (a pause step pauses).
func (r *run) enterStep() {
	s := r.s
	st, ok := s.planStep(s.Step)
	if !ok {
		return
	}
	info := stepInfo(s.Step, st)
	r.emit(events.TypeRolloutStepStarted, events.StatusData{Step: &info})
	if st.Action != actionPause {
		return
	}
	s.StepPaused = true
	r.addCondition(PauseCanaryStep)
	if !st.Canary.Pause.Indefinite() {
		d, err := st.Canary.Pause.Length()
		if err != nil {
			d = 0
		}
		s.PauseUntil = r.now.Add(d)
	}
	r.emit(events.TypeRolloutPaused, events.StatusData{Reason: PauseCanaryStep + ": " + st.detail()})
}

func stepInfo(i int32, st planStep) events.StepInfo {
	return events.StepInfo{Index: i, Action: st.Action, Detail: st.detail()}
}

// promoteStable makes the new revision the stable one. The former stable
// revision is scaled down after scaleDownDelaySeconds (traffic-routed
// canary without dynamicStableScale, and blue/green), at once otherwise.
func (r *run) promoteStable() {
	s := r.s
	prev := s.StableHash
	s.StableHash, s.StableRevision = s.PodHash, s.Revision
	s.PromoteFull = false
	s.PauseConditions = nil
	s.StepPaused, s.PauseUntil = false, time.Time{}
	var delay *int32
	switch c, b := s.canary(), s.blueGreen(); {
	case c != nil && c.TrafficRouting != nil && !c.DynamicStableScale:
		delay = c.ScaleDownDelaySeconds
	case b != nil:
		delay = b.ScaleDownDelaySeconds
	}
	if p := s.pod(prev); p != nil && delay != nil && *delay > 0 {
		p.ScaleDownAt = r.now.Add(time.Duration(*delay) * time.Second)
	}
}

// abortScaleDownDelay is how long an aborted canary or preview keeps its
// pods; false means it keeps them (abortScaleDownDelaySeconds: 0) or the
// strategy scales them down by other means (basic canary).
func (r *run) abortScaleDownDelay() (time.Duration, bool) {
	var d *int32
	switch c, b := r.s.canary(), r.s.blueGreen(); {
	case c != nil && c.TrafficRouting != nil:
		d = c.AbortScaleDownDelaySeconds
		if d == nil {
			v := spec.DefaultAbortScaleDownDelaySeconds
			d = &v
		}
	case b != nil:
		d = b.AbortScaleDownDelaySeconds
		if d == nil {
			v := spec.DefaultAbortScaleDownDelaySeconds
			d = &v
		}
	default:
		return 0, false
	}
	if *d <= 0 {
		return 0, false
	}
	return time.Duration(*d) * time.Second, true
}

func (s *State) hasCondition(reason string) bool {
	for _, c := range s.PauseConditions {
		if c.Reason == reason {
			return true
		}
	}
	return false
}

func (r *run) addCondition(reason string) {
	if !r.s.hasCondition(reason) {
		r.s.PauseConditions = append(r.s.PauseConditions, events.PauseCondition{Reason: reason, StartTime: r.now})
	}
}

func (r *run) removeCondition(reason string) {
	var out []events.PauseCondition
	for _, c := range r.s.PauseConditions {
		if c.Reason != reason {
			out = append(out, c)
		}
	}
	r.s.PauseConditions = out
}

// refreshPhase derives the phase and message from the state.
func (r *run) refreshPhase() {
	s := r.s
	switch {
	case s.Revision == 0:
		s.Phase, s.Message = "", ""
	case s.Aborted:
		s.Phase, s.Message = events.PhaseDegraded, abortMessage(s)
	case s.Failure != "":
		s.Phase, s.Message = events.PhaseDegraded, s.Failure
	case s.Scale != nil && s.Scale.Overdue && s.Scale.active():
		s.Phase, s.Message = events.PhaseDegraded, deadlineMessage(s)
	case s.UserPaused:
		s.Phase, s.Message = events.PhasePaused, "manually paused"
	case len(s.PauseConditions) > 0:
		s.Phase, s.Message = events.PhasePaused, s.PauseConditions[0].Reason
	case !s.inProgress() && s.Completed:
		s.Phase, s.Message = events.PhaseHealthy, ""
	case !s.inProgress():
		s.Phase, s.Message = events.PhaseProgressing, fmt.Sprintf("waiting for revision %d to be in place", s.Revision)
	case s.Step < s.planLen():
		st, _ := s.planStep(s.Step)
		s.Phase, s.Message = events.PhaseProgressing, fmt.Sprintf("updating to revision %d: step %d/%d (%s)", s.Revision, s.Step+1, s.planLen(), st.detail())
	default:
		s.Phase, s.Message = events.PhaseProgressing, fmt.Sprintf("promoting revision %d to stable", s.Revision)
	}
}

func abortMessage(s *State) string {
	m := fmt.Sprintf("RolloutAborted: Rollout aborted update to revision %d", s.Revision)
	if s.AbortReason != "" {
		m += ": " + s.AbortReason
	}
	return m
}

func deadlineMessage(s *State) string {
	return fmt.Sprintf("ProgressDeadlineExceeded: ReplicaSet %q has timed out progressing.", s.Ref.Name+"-"+s.PodHash)
}
