package machine

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
)

// sameJSON reports whether s and o encode to the same JSON, the form the
// orchestrator stores, without encoding them: Next tells a changed state
// from an unchanged one by it. So it does not tell a nil slice or map
// from an empty one where JSON omits both, nor two times that encode
// alike. The machine's own fields are compared one by one, the cheap ones
// first, so that a change is usually found at once; the values of other
// packages (templates, spec, task contents) with sameEncoding.
//
// same_test.go checks, field by field, that sameJSON agrees with
// json.Marshal: a field added to State or its records needs a line here.
func (s *State) sameJSON(o *State) bool {
	return s.Version == o.Version && s.Ref == o.Ref && s.Kind == o.Kind &&
		s.Revision == o.Revision && s.PodHash == o.PodHash &&
		s.StableRevision == o.StableRevision && s.StableHash == o.StableHash &&
		s.Step == o.Step && s.StepPaused == o.StepPaused && sameOptionalTime(s.PauseUntil, o.PauseUntil) &&
		s.UserPaused == o.UserPaused && s.PromoteFull == o.PromoteFull &&
		s.Aborted == o.Aborted && sameOptionalTime(s.AbortedAt, o.AbortedAt) && s.AbortReason == o.AbortReason &&
		s.AbortPending == o.AbortPending && sameOptionalTime(s.AbortScaleDownAt, o.AbortScaleDownAt) &&
		s.Failure == o.Failure && s.Completed == o.Completed && s.Retries == o.Retries &&
		s.Phase == o.Phase && s.Message == o.Message &&
		s.Seq == o.Seq && sameOptionalTime(s.EvaluatedAt, o.EvaluatedAt) &&
		sameEach(s.PauseConditions, o.PauseConditions, func(a, b *events.PauseCondition) bool {
			return a.Reason == b.Reason && sameTime(a.StartTime, b.StartTime)
		}) &&
		sameEach(s.Pods, o.Pods, samePods) &&
		samePtr(s.Scale, o.Scale, sameTask) && samePtr(s.Route, o.Route, sameTask) &&
		sameEach(s.Runs, o.Runs, sameRun) && sameEach(s.Experiments, o.Experiments, sameEncoding[*ExperimentRecord]) &&
		sameEncoding(s.Routing, o.Routing) && sameEncoding(s.LastAnalysis, o.LastAnalysis) &&
		sameEach(s.History, o.History, sameRevision) &&
		s.UpdateID == o.UpdateID && s.AbortCause == o.AbortCause &&
		s.Restart.Pending == o.Restart.Pending && s.Restart.Cause == o.Restart.Cause &&
		sameOptionalTime(s.Restart.At, o.Restart.At) && sameOptionalTime(s.Restart.Due, o.Restart.Due) &&
		s.Deleting == o.Deleting && s.DeleteCause == o.DeleteCause &&
		sameEncoding(s.Spec, o.Spec) && sameEncoding(s.ExperimentSpec, o.ExperimentSpec)
}

func samePods(a, b *PodRecord) bool {
	return a.Revision == b.Revision && a.Hash == b.Hash && a.Replicas == b.Replicas &&
		a.Current == b.Current && a.Ready == b.Ready && a.Available == b.Available &&
		sameOptionalTime(a.ScaleDownAt, b.ScaleDownAt)
}

func sameTask(a, b *TaskRecord) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Seq == b.Seq && a.Revision == b.Revision &&
		a.Attempt == b.Attempt && sameTime(a.SentAt, b.SentAt) &&
		sameOptionalTime(a.StartBy, b.StartBy) && sameOptionalTime(a.FinishBy, b.FinishBy) &&
		a.Started == b.Started && a.Done == b.Done && a.Failed == b.Failed && a.Overdue == b.Overdue &&
		a.Message == b.Message &&
		sameEncoding(a.Scale, b.Scale) && sameEncoding(a.Route, b.Route) && sameEncoding(a.Analysis, b.Analysis)
}

func sameRun(a, b *RunRecord) bool {
	return a.Name == b.Name && a.Purpose == b.Purpose && a.Step == b.Step && a.Phase == b.Phase &&
		a.Skipped == b.Skipped && maps.Equal(a.Measured, b.Measured) &&
		sameTask(&a.Task, &b.Task) && samePtr(a.Stop, b.Stop, sameTask) &&
		sameEncoding(a.Summary, b.Summary)
}

// sameTime reports whether a and b encode alike: the same instant in the
// same UTC offset (RFC 3339 keeps the offset, not the zone's name nor a
// monotonic reading).
func sameTime(a, b time.Time) bool {
	if !a.Equal(b) {
		return false
	}
	_, x := a.Zone()
	_, y := b.Zone()
	return x == y
}

// sameOptionalTime is sameTime for an omitzero field, which a zero time
// leaves out whatever its location.
func sameOptionalTime(a, b time.Time) bool {
	return a.IsZero() && b.IsZero() || sameTime(a, b)
}

// sameEach compares two slices that JSON omits when empty.
func sameEach[T any](a, b []T, same func(a, b *T) bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !same(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

// samePtr compares two pointers that JSON omits when nil.
func samePtr[T any](a, b *T, same func(a, b *T) bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return same(a, b)
}

// sameEncoding reports whether a and b encode to the same JSON. It is for
// values that are deeply equal or plainly different, as unchanged parts of
// a state are: reflect.DeepEqual answers the first at once when they share
// memory (Spec) and in a walk otherwise; only values
// it finds different are encoded, since some differences do not show in
// JSON (a field tagged "-", a nil slice against an empty one).
func sameEncoding[T any](a, b T) bool {
	if reflect.DeepEqual(a, b) {
		return true
	}
	x, err := json.Marshal(a)
	if err != nil {
		return false
	}
	y, err := json.Marshal(b)
	return err == nil && bytes.Equal(x, y)
}
