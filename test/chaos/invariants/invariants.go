// Package invariants checks the history of a fault-injection run: what was
// requested, every call the data plane answered, every status event, every
// state write the orchestrators made, the dead letters and the consumers'
// backlogs at the end. It is pure: the suite (test/chaos) gathers the
// history, Check judges it.
package invariants

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

// Invariant names, as reported.
const (
	// Lost: an accepted request or task was lost: the rollout's final
	// revision is not the number of templates requested, an event the
	// suite did not poison was dead-lettered, or a consumer still holds
	// work at the end.
	Lost = "nothing-lost"
	// AbortHolds: after an aborted event, the aborted revision got canary
	// traffic (the weight was not 0 when the event was published, or rose
	// again later).
	AbortHolds = "abort-holds"
	// Once: an effect was not applied once: two calls with the same seq
	// carried different content, or a status event of one step of one
	// revision was published twice under different ids.
	Once = "applied-once"
	// SingleDecider: two orchestrators decided for one rollout at once:
	// a state version was written twice, or went backwards.
	SingleDecider = "single-decider"
	// Settles: a rollout did not reach its final phase within the bound
	// after the faults cleared, or reached another one.
	Settles = "settles"
	// NeverPromotes: a revision whose analysis had no good data was
	// promoted: it got more than the pre-analysis weight, became stable,
	// or was announced completed.
	NeverPromotes = "missing-data-never-promotes"
	// NotEarly: a timed wait (a pause's duration, an analysis's
	// interval) ended earlier than it must by the suite's clock, by more
	// than the tolerance.
	NotEarly = "timed-waits-not-early"
	// Agrees: at the end the data plane disagrees with the rollout's
	// record: the routing it last applied is not the routing the state
	// says is in effect, or the replica counts it last applied are not
	// the ones the state last asked for. A superseded effect that got
	// through (a partitioned or paused worker's, or a deposed
	// orchestrator's) leaves it so.
	Agrees = "data-plane-agrees"
)

// Expectation is what a rollout must end as.
type Expectation struct {
	// Phase is Healthy or Degraded.
	Phase string
	// Revisions is the number of distinct templates requested, so the
	// rollout's final revision number.
	Revisions int64
	// NoPromotion marks a rollout whose new revision's analysis has no
	// good data (failing, NaN, empty, Prometheus down or timing out).
	NoPromotion bool
	// StableHash is the pod hash of the revision before the update; with
	// NoPromotion it must still be stable at the end.
	StableHash string
	// MaxWeight is the highest canary weight allowed before the analysis
	// passes (with NoPromotion).
	MaxWeight int32
}

// StatusEvent is a published status event.
type StatusEvent struct {
	ID       string
	Type     string
	Ref      events.Ref
	Time     time.Time
	Snapshot events.Snapshot
	// Step is the step index of step.started and step.completed.
	Step *int32
}

// StateWrite is one write of a rollout's state, in the bucket's order.
type StateWrite struct {
	Ref     events.Ref
	Version int64
}

// Final is a rollout's state at the end.
type Final struct {
	Phase      string
	Revision   int64
	PodHash    string
	StableHash string
	// SettledAt is when the rollout was first seen in its final phase at
	// its final revision (zero: never).
	SettledAt time.Time
	// Routing is the routing the state records as in effect (nil: none
	// yet); Replicas the replica count it last asked for, by pod hash, for
	// every revision with more than zero.
	Routing  *tasks.Route
	Replicas map[string]int32
}

// DeadLetter is one dead-lettered event.
type DeadLetter struct {
	Subject string
	Reason  string
	// Poison marks an event the suite published as poison.
	Poison bool
}

// Backlog is a durable consumer's unfinished work at the end.
type Backlog struct {
	Stream, Durable     string
	Pending, AckPending uint64
}

// TimedWait is one timed wait, measured by the suite's clock: it began no
// earlier than From (a command the suite sent, a request it answered) and
// ended no later than To (an event it received), so To-From is at least
// its true length.
type TimedWait struct {
	Ref  events.Ref
	What string // "pause of step 2", "interval of metric ticks"
	Want time.Duration
	From time.Time
	To   time.Time
}

// History is everything a run recorded.
type History struct {
	Expect      map[events.Ref]Expectation
	Final       map[events.Ref]Final
	Calls       []dataplane.Record
	Status      []StatusEvent
	Writes      []StateWrite
	DeadLetters []DeadLetter
	Backlogs    []Backlog
	// Cleared is when the last fault ended; Bound how long after it every
	// rollout must be settled.
	Cleared time.Time
	Bound   time.Duration
	// Waits are the timed waits measured; each must last at least its
	// Want less Tolerance.
	Waits     []TimedWait
	Tolerance time.Duration
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string
	Rollout   string
	Detail    string
}

func (v Violation) String() string {
	if v.Rollout == "" {
		return v.Invariant + ": " + v.Detail
	}
	return v.Invariant + ": " + v.Rollout + ": " + v.Detail
}

// Check returns every violation in h, sorted.
func Check(h History) []Violation {
	var out []Violation
	add := func(inv string, r events.Ref, format string, args ...any) {
		name := ""
		if r != (events.Ref{}) {
			name = r.String()
		}
		out = append(out, Violation{Invariant: inv, Rollout: name, Detail: fmt.Sprintf(format, args...)})
	}
	checkLost(h, add)
	checkAborts(h, add)
	checkOnce(h, add)
	checkSingleDecider(h, add)
	checkSettles(h, add)
	checkNoPromotion(h, add)
	checkNotEarly(h, add)
	checkAgrees(h, add)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

type adder func(inv string, r events.Ref, format string, args ...any)

func checkLost(h History, add adder) {
	for r, e := range h.Expect {
		if f := h.Final[r]; f.Revision != e.Revisions {
			add(Lost, r, "final revision %d, want %d (one per distinct template requested)", f.Revision, e.Revisions)
		}
	}
	for _, d := range h.DeadLetters {
		if !d.Poison {
			add(Lost, events.Ref{}, "event on %s dead-lettered: %s", d.Subject, d.Reason)
		}
	}
	for _, b := range h.Backlogs {
		if b.Pending > 0 || b.AckPending > 0 {
			add(Lost, events.Ref{}, "consumer %s on %s still holds %d undelivered and %d unacknowledged events", b.Durable, b.Stream, b.Pending, b.AckPending)
		}
	}
}

// routesOf returns the route calls of r that were in effect (applied or
// reapplied), in order.
func routesOf(h History, r events.Ref) []dataplane.Record {
	var out []dataplane.Record
	for _, c := range h.Calls {
		if c.Kind == dataplane.KindRoute && c.Ref == r && c.Outcome != dataplane.Stale && c.Route != nil {
			out = append(out, c)
		}
	}
	return out
}

func checkAborts(h History, add adder) {
	for _, ev := range h.Status {
		if ev.Type != events.TypeRolloutAborted {
			continue
		}
		hash := ev.Snapshot.PodHash
		var before *dataplane.Record
		routes := routesOf(h, ev.Ref)
		for i := range routes {
			c := routes[i]
			if !c.At.After(ev.Time) {
				before = &routes[i]
				continue
			}
			if c.Route.CanaryHash == hash && c.Route.CanaryWeight > 0 {
				add(AbortHolds, ev.Ref, "revision %s aborted at %s got canary weight %d again at %s (seq %d)", hash, ev.Time.Format(time.StampMicro), c.Route.CanaryWeight, c.At.Format(time.StampMicro), c.Seq)
			}
		}
		if before != nil && before.Route.CanaryHash == hash && before.Route.CanaryWeight > 0 {
			add(AbortHolds, ev.Ref, "aborted event of revision %s published at %s while its canary weight was still %d (seq %d)", hash, ev.Time.Format(time.StampMicro), before.Route.CanaryWeight, before.Seq)
		}
	}
}

func checkOnce(h History, add adder) {
	type seqKey struct {
		kind string
		ref  events.Ref
		seq  int64
	}
	content := map[seqKey]string{}
	for _, c := range h.Calls {
		k := seqKey{c.Kind, c.Ref, c.Seq}
		if prev, ok := content[k]; ok && prev != c.Content {
			add(Once, c.Ref, "%s seq %d applied with two different contents: %s and %s", c.Kind, c.Seq, prev, c.Content)
			continue
		}
		content[k] = c.Content
	}
	type stepKey struct {
		ref      events.Ref
		typ      string
		revision int64
		step     int32
	}
	ids := map[stepKey]string{}
	for _, ev := range h.Status {
		switch ev.Type {
		case events.TypeRolloutStepStarted, events.TypeRolloutStepCompleted, events.TypeRolloutCompleted, events.TypeRolloutAborted:
		default:
			continue
		}
		k := stepKey{ev.Ref, ev.Type, ev.Snapshot.Revision, -1}
		if ev.Step != nil {
			k.step = *ev.Step
		}
		if prev, ok := ids[k]; ok && prev != ev.ID {
			add(Once, ev.Ref, "%s of revision %d step %d published twice, as %s and %s", shortType(ev.Type), k.revision, k.step, prev, ev.ID)
			continue
		}
		ids[k] = ev.ID
	}
}

func shortType(t string) string {
	return strings.TrimSuffix(strings.TrimPrefix(t, "io.sluice."), ".v1")
}

func checkSingleDecider(h History, add adder) {
	last := map[events.Ref]int64{}
	for _, w := range h.Writes {
		if prev, ok := last[w.Ref]; ok && w.Version <= prev {
			add(SingleDecider, w.Ref, "state version %d written after version %d", w.Version, prev)
		}
		last[w.Ref] = w.Version
	}
}

func checkSettles(h History, add adder) {
	for r, e := range h.Expect {
		f := h.Final[r]
		switch {
		case f.Phase != e.Phase:
			add(Settles, r, "ended %s at revision %d, want %s", orNone(f.Phase), f.Revision, e.Phase)
		case f.SettledAt.IsZero():
			add(Settles, r, "never settled")
		case f.SettledAt.After(h.Cleared.Add(h.Bound)):
			add(Settles, r, "settled %s after the faults cleared, bound %s", f.SettledAt.Sub(h.Cleared).Round(time.Millisecond), h.Bound)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "with no phase"
	}
	return s
}

func checkNoPromotion(h History, add adder) {
	for r, e := range h.Expect {
		if !e.NoPromotion {
			continue
		}
		if f := h.Final[r]; f.StableHash != e.StableHash {
			add(NeverPromotes, r, "stable revision moved from %s to %s", e.StableHash, f.StableHash)
		}
		for _, c := range routesOf(h, r) {
			if c.Route.CanaryHash != e.StableHash && c.Route.CanaryWeight > e.MaxWeight {
				add(NeverPromotes, r, "revision %s got canary weight %d (seq %d), more than the %d before its analysis", c.Route.CanaryHash, c.Route.CanaryWeight, c.Seq, e.MaxWeight)
			}
			if c.Route.StableHash != "" && c.Route.StableHash != e.StableHash {
				add(NeverPromotes, r, "route seq %d made %s stable", c.Seq, c.Route.StableHash)
			}
		}
		for _, ev := range h.Status {
			if ev.Ref == r && ev.Type == events.TypeRolloutCompleted && ev.Snapshot.PodHash != e.StableHash {
				add(NeverPromotes, r, "revision %s announced completed (%s)", ev.Snapshot.PodHash, ev.ID)
			}
		}
	}
}

func checkNotEarly(h History, add adder) {
	for _, w := range h.Waits {
		if took := w.To.Sub(w.From); took < w.Want-h.Tolerance {
			add(NotEarly, w.Ref, "%s lasted at most %s, want %s (tolerance %s)", w.What, took.Round(time.Millisecond), w.Want, h.Tolerance)
		}
	}
}

// Disagreements lists where the data plane's last applied routing and
// replica counts differ from each expected rollout's record, for the suite
// to wait until they agree before it checks (a scale-down or route in
// flight when the rollouts settled disagrees for a moment).
func Disagreements(h History) []Violation {
	var out []Violation
	checkAgrees(h, func(inv string, r events.Ref, format string, args ...any) {
		out = append(out, Violation{Invariant: inv, Rollout: r.String(), Detail: fmt.Sprintf(format, args...)})
	})
	return out
}

func checkAgrees(h History, add adder) {
	type last struct {
		route *tasks.Route
		scale map[string]int32
	}
	applied := map[events.Ref]*last{}
	for _, c := range h.Calls {
		if c.Outcome == dataplane.Stale {
			continue
		}
		l := applied[c.Ref]
		if l == nil {
			l = &last{}
			applied[c.Ref] = l
		}
		switch c.Kind {
		case dataplane.KindRoute:
			l.route = c.Route
		case dataplane.KindScale:
			l.scale = map[string]int32{}
			for _, rv := range c.Scale {
				if rv.Replicas > 0 && !c.Remove {
					l.scale[rv.PodHash] = rv.Replicas
				}
			}
		}
	}
	for r := range h.Expect {
		f, l := h.Final[r], applied[r]
		if l == nil {
			l = &last{}
		}
		if got, want := routeString(l.route), routeString(f.Routing); got != want {
			add(Agrees, r, "the data plane routes %s, the record says %s", got, want)
		}
		if len(l.scale) > 0 || len(f.Replicas) > 0 {
			if !maps.Equal(l.scale, f.Replicas) {
				add(Agrees, r, "the data plane runs %v replicas, the record asked for %v", l.scale, f.Replicas)
			}
		}
	}
}

func routeString(rt *tasks.Route) string {
	if rt == nil || rt.Remove {
		return "nothing"
	}
	b, _ := json.Marshal(rt)
	return string(b)
}
