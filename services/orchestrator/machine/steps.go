package machine

import (
	"fmt"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// halted reports whether the update may not move on: a user pause or an
// inconclusive analysis, as Argo's haltProgress.
func (d *decision) halted() bool {
	return d.s.UserPaused || d.s.hasCondition(PauseInconclusive) || d.s.hasCondition(PauseInconclusiveExperiment)
}

// progress makes one move of the rollout if one is due: completes the
// current step, promotes the new revision to stable once the plan is done,
// or marks the stable revision complete. It reports whether it moved.
func (d *decision) progress() bool {
	s := d.s
	if s.Deleting {
		return false
	}
	if s.inProgress() {
		if s.Aborted || d.halted() {
			return false
		}
		if s.Step < s.planLen() {
			return d.advanceStep()
		}
		if d.scaleDone() && d.routeDone() {
			d.promoteStable()
			return true
		}
		return false
	}
	if !s.Completed && s.Failure == "" && d.scaleDone() && d.routeDone() {
		s.Completed = true
		d.emit(events.TypeRolloutCompleted, events.StatusData{})
		return true
	}
	return false
}

// advanceStep completes the current step when it is done, or starts the
// pause it needs. It reports whether anything changed.
func (d *decision) advanceStep() bool {
	s := d.s
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
		case !s.PauseUntil.IsZero() && !d.now.Before(s.PauseUntil):
			d.removeCondition(PauseCanaryStep)
			d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "pause ended: " + st.detail()})
			done = true
		}
	case actionSetWeight, actionSetCanaryScale, actionPromote:
		done = d.scaleDone() && d.routeDone()
	case actionSetHeaderRoute, actionSetMirrorRoute:
		done = d.routeDone()
	case actionAnalysis, actionPostPromotionAnalysis:
		done = d.runPassed(d.runName(st.Action, s.Step))
	case actionPreview:
		return d.advancePreview()
	case actionExperiment:
		return d.advanceExperiment(st.Canary.Experiment)
	default:
		done = true
	}
	if done {
		d.completeStep()
	}
	return done
}

// advancePreview moves blue/green's first stage: the preview is up, then
// prePromotionAnalysis passes, then the rollout pauses when auto-promotion
// is off or delayed, then it moves on to the promotion.
func (d *decision) advancePreview() bool {
	s := d.s
	b := s.blueGreen()
	if !d.scaleDone() || !d.routeDone() {
		return false
	}
	if b.PrePromotionAnalysis != nil && !s.PromoteFull && !d.runPassed(d.runName(actionPreview, 0)) {
		return false
	}
	auto := b.AutoPromotionEnabled == nil || *b.AutoPromotionEnabled
	if !s.PromoteFull && (!auto || b.AutoPromotionSeconds > 0) {
		if !s.StepPaused {
			s.StepPaused = true
			d.addCondition(PauseBlueGreen)
			if auto {
				s.PauseUntil = d.now.Add(time.Duration(b.AutoPromotionSeconds) * time.Second)
			}
			d.emit(events.TypeRolloutPaused, events.StatusData{Reason: PauseBlueGreen})
			return true
		}
		if s.hasCondition(PauseBlueGreen) {
			if s.PauseUntil.IsZero() || d.now.Before(s.PauseUntil) {
				return false
			}
			d.removeCondition(PauseBlueGreen)
			d.emit(events.TypeRolloutResumed, events.StatusData{Reason: "autoPromotionSeconds passed"})
		}
	}
	d.completeStep()
	return true
}

// completeStep publishes the end of the current step and enters the next.
func (d *decision) completeStep() {
	s := d.s
	st, _ := s.planStep(s.Step)
	info := stepInfo(s.Step, st)
	d.removeCondition(PauseCanaryStep)
	d.removeCondition(PauseBlueGreen)
	s.Step++
	s.StepPaused, s.PauseUntil = false, time.Time{}
	d.emit(events.TypeRolloutStepCompleted, events.StatusData{Step: &info})
	d.enterStep()
}

// enterStep publishes the start of the current step and starts what it
// does at once (a pause step pauses).
func (d *decision) enterStep() {
	s := d.s
	st, ok := s.planStep(s.Step)
	if !ok {
		return
	}
	info := stepInfo(s.Step, st)
	d.emit(events.TypeRolloutStepStarted, events.StatusData{Step: &info})
	if st.Action == actionExperiment {
		d.startExperiment(st.Canary.Experiment)
		return
	}
	if st.Action != actionPause {
		return
	}
	s.StepPaused = true
	d.addCondition(PauseCanaryStep)
	if !st.Canary.Pause.Indefinite() {
		length, err := st.Canary.Pause.Length()
		if err != nil {
			length = 0
		}
		s.PauseUntil = d.now.Add(length)
	}
	d.emit(events.TypeRolloutPaused, events.StatusData{Reason: PauseCanaryStep + ": " + st.detail()})
}

func stepInfo(i int32, st planStep) events.StepInfo {
	return events.StepInfo{Index: i, Action: st.Action, Detail: st.detail()}
}

// promoteStable makes the new revision the stable one. The former stable
// revision is scaled down after scaleDownDelaySeconds (traffic-routed
// canary without dynamicStableScale, and blue/green), at once otherwise.
func (d *decision) promoteStable() {
	s := d.s
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
		p.ScaleDownAt = d.now.Add(time.Duration(*delay) * time.Second)
	}
}

// abortScaleDownDelay is how long an aborted canary or preview keeps its
// pods; false means it keeps them (abortScaleDownDelaySeconds: 0) or the
// strategy scales them down by other means (basic canary).
func (d *decision) abortScaleDownDelay() (time.Duration, bool) {
	var secs *int32
	switch c, b := d.s.canary(), d.s.blueGreen(); {
	case c != nil && c.TrafficRouting != nil:
		secs = c.AbortScaleDownDelaySeconds
		if secs == nil {
			v := spec.DefaultAbortScaleDownDelaySeconds
			secs = &v
		}
	case b != nil:
		secs = b.AbortScaleDownDelaySeconds
		if secs == nil {
			v := spec.DefaultAbortScaleDownDelaySeconds
			secs = &v
		}
	default:
		return 0, false
	}
	if *secs <= 0 {
		return 0, false
	}
	return time.Duration(*secs) * time.Second, true
}

func (s *State) hasCondition(reason string) bool {
	for _, c := range s.PauseConditions {
		if c.Reason == reason {
			return true
		}
	}
	return false
}

func (d *decision) addCondition(reason string) {
	if !d.s.hasCondition(reason) {
		d.s.PauseConditions = append(d.s.PauseConditions, events.PauseCondition{Reason: reason, StartTime: d.now})
	}
}

func (d *decision) removeCondition(reason string) {
	var out []events.PauseCondition
	for _, c := range d.s.PauseConditions {
		if c.Reason != reason {
			out = append(out, c)
		}
	}
	d.s.PauseConditions = out
}

// refreshPhase derives the phase and message from the state.
func (d *decision) refreshPhase() {
	s := d.s
	if s.isExperiment() {
		d.refreshExperimentPhase()
		return
	}
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
