package invariants

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

var (
	t0   = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	good = events.Ref{Namespace: "chaos", Name: "good"}
	bad  = events.Ref{Namespace: "chaos", Name: "bad"}
)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func route(r events.Ref, ms int, seq int64, stable, canary string, weight int32, outcome string) dataplane.Record {
	rt := &tasks.Route{StableHash: stable, CanaryHash: canary, CanaryWeight: weight}
	return dataplane.Record{
		Call:    dataplane.Call{Kind: dataplane.KindRoute, Ref: r, Seq: seq, Route: rt},
		At:      at(ms),
		Outcome: outcome,
		Content: stable + "/" + canary + "/" + string(rune('0'+weight/10)),
	}
}

func scale(r events.Ref, ms int, seq int64, replicas map[string]int32, outcome string) dataplane.Record {
	var revs []tasks.RevisionScale
	for _, hash := range sortedHashes(replicas) {
		revs = append(revs, tasks.RevisionScale{PodHash: hash, Replicas: replicas[hash]})
	}
	return dataplane.Record{
		Call:    dataplane.Call{Kind: dataplane.KindScale, Ref: r, Seq: seq, Scale: revs},
		At:      at(ms),
		Outcome: outcome,
		Content: fmt.Sprint(replicas),
	}
}

func sortedHashes(m map[string]int32) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func step(i int32) *int32 { return &i }

// clean is the history of one good rollout that completed and one whose
// analysis failed and was aborted, with every fault handled.
func clean() History {
	return History{
		Expect: map[events.Ref]Expectation{
			good: {Phase: "Healthy", Revisions: 2},
			bad:  {Phase: "Degraded", Revisions: 2, NoPromotion: true, StableHash: "b1", MaxWeight: 20},
		},
		Final: map[events.Ref]Final{
			good: {Phase: "Healthy", Revision: 2, PodHash: "g2", StableHash: "g2", SettledAt: at(900),
				Routing: &tasks.Route{StableHash: "g2", CanaryHash: "g2"}, Replicas: map[string]int32{"g2": 3}},
			bad: {Phase: "Degraded", Revision: 2, PodHash: "b2", StableHash: "b1", SettledAt: at(800),
				Routing: &tasks.Route{StableHash: "b1", CanaryHash: "b2"}, Replicas: map[string]int32{"b1": 3}},
		},
		Calls: []dataplane.Record{
			route(good, 100, 1, "g1", "g2", 20, dataplane.Applied),
			route(good, 150, 1, "g1", "g2", 20, dataplane.Reapplied), // redelivered
			route(good, 300, 2, "g2", "g2", 0, dataplane.Applied),
			route(good, 310, 1, "g1", "g2", 20, dataplane.Stale), // a late copy
			route(bad, 100, 1, "b1", "b2", 20, dataplane.Applied),
			route(bad, 700, 2, "b1", "b2", 0, dataplane.Applied),
			route(bad, 750, 1, "b1", "b2", 20, dataplane.Stale),
			scale(good, 80, 1, map[string]int32{"g1": 3, "g2": 1}, dataplane.Applied),
			scale(good, 400, 2, map[string]int32{"g1": 0, "g2": 3}, dataplane.Applied),
			scale(bad, 80, 1, map[string]int32{"b1": 3, "b2": 1}, dataplane.Applied),
			scale(bad, 760, 2, map[string]int32{"b1": 3, "b2": 0}, dataplane.Applied),
			scale(bad, 770, 1, map[string]int32{"b1": 3, "b2": 1}, dataplane.Stale), // a late copy
		},
		Status: []StatusEvent{
			{ID: "good/v3/0", Type: events.TypeRolloutStepStarted, Ref: good, Time: at(90), Snapshot: events.Snapshot{Revision: 2, PodHash: "g2"}, Step: step(0)},
			{ID: "good/v9/0", Type: events.TypeRolloutCompleted, Ref: good, Time: at(320), Snapshot: events.Snapshot{Revision: 2, PodHash: "g2"}},
			{ID: "bad/v8/0", Type: events.TypeRolloutAborted, Ref: bad, Time: at(720), Snapshot: events.Snapshot{Revision: 2, PodHash: "b2"}},
		},
		Writes:      []StateWrite{{good, 1}, {bad, 1}, {good, 2}, {good, 4}, {bad, 2}},
		DeadLetters: []DeadLetter{{Subject: "sluice.cmd.chaos.good", Reason: "not a CloudEvent", Poison: true}},
		Backlogs:    []Backlog{{Stream: events.StreamTasks, Durable: "worker-traffic"}},
		Cleared:     at(500),
		Bound:       time.Second,
		Waits:       []TimedWait{{Ref: good, What: "pause of step 1", Want: 100 * time.Millisecond, From: at(100), To: at(195)}},
		Tolerance:   10 * time.Millisecond,
	}
}

func TestCleanHistoryHasNoViolations(t *testing.T) {
	if v := Check(clean()); len(v) != 0 {
		t.Fatalf("violations in a clean history: %v", v)
	}
}

// Each case breaks one invariant the way a bug would, and Check must name it.
func TestEachInvariantCatchesItsViolation(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(h *History)
		want    string
	}{
		{"request lost", func(h *History) {
			h.Final[good] = Final{Phase: "Healthy", Revision: 1, StableHash: "g1", SettledAt: at(900)}
		}, Lost + ": chaos/good: final revision 1, want 2"},
		{"task dead-lettered", func(h *History) {
			h.DeadLetters = append(h.DeadLetters, DeadLetter{Subject: "sluice.task.traffic.chaos.good", Reason: "gave up after 10 deliveries"})
		}, Lost + ": event on sluice.task.traffic.chaos.good dead-lettered"},
		{"task stuck", func(h *History) { h.Backlogs[0].AckPending = 1 }, Lost + ": consumer worker-traffic"},
		{"weight rises after abort", func(h *History) {
			h.Calls = append(h.Calls, route(bad, 760, 3, "b1", "b2", 20, dataplane.Applied))
		}, AbortHolds + ": chaos/bad: revision b2 aborted"},
		{"aborted announced too early", func(h *History) { h.Status[2].Time = at(600) }, AbortHolds + ": chaos/bad: aborted event of revision b2 published"},
		{"one seq, two effects", func(h *History) {
			h.Calls[1].Content = "g1/g2/5"
		}, Once + ": chaos/good: route seq 1 applied with two different contents"},
		{"step announced twice", func(h *History) {
			h.Status = append(h.Status, StatusEvent{ID: "good/v4/0", Type: events.TypeRolloutStepStarted, Ref: good, Time: at(95), Snapshot: events.Snapshot{Revision: 2}, Step: step(0)})
		}, Once + ": chaos/good: rollout.step.started of revision 2 step 0 published twice"},
		{"two deciders", func(h *History) { h.Writes = append(h.Writes, StateWrite{good, 4}) }, SingleDecider + ": chaos/good: state version 4 written after version 4"},
		{"never settles", func(h *History) {
			f := h.Final[good]
			f.SettledAt = at(1600)
			h.Final[good] = f
		}, Settles + ": chaos/good: settled 1.1s after the faults cleared"},
		{"wrong phase", func(h *History) {
			f := h.Final[bad]
			f.Phase = "Healthy"
			h.Final[bad] = f
		}, Settles + ": chaos/bad: ended Healthy"},
		{"missing data promoted", func(h *History) {
			h.Calls = append(h.Calls[:5], route(bad, 400, 2, "b1", "b2", 50, dataplane.Applied))
		}, NeverPromotes + ": chaos/bad: revision b2 got canary weight 50"},
		{"pause ends early", func(h *History) { h.Waits[0].To = at(189) }, NotEarly + ": chaos/good: pause of step 1 lasted at most 89ms, want 100ms"},
		{"missing data completed", func(h *History) {
			h.Status = append(h.Status, StatusEvent{ID: "bad/v9/0", Type: events.TypeRolloutCompleted, Ref: bad, Time: at(700), Snapshot: events.Snapshot{Revision: 2, PodHash: "b2"}})
		}, NeverPromotes + ": chaos/bad: revision b2 announced completed"},
		{"a superseded route applied last", func(h *History) {
			// A deposed orchestrator's decision, numbered past the one
			// the record holds, reached the data plane after it.
			h.Calls = append(h.Calls, route(good, 800, 3, "g1", "g2", 20, dataplane.Applied))
		}, Agrees + `: chaos/good: the data plane routes {"strategy":"","stableHash":"g1","canaryHash":"g2","canaryWeight":20`},
		{"replicas differ from the record", func(h *History) {
			h.Calls = append(h.Calls, scale(good, 900, 3, map[string]int32{"g1": 3, "g2": 3}, dataplane.Applied))
		}, Agrees + ": chaos/good: the data plane runs map[g1:3 g2:3] replicas, the record asked for map[g2:3]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := clean()
			c.breakIt(&h)
			v := Check(h)
			found := false
			for _, x := range v {
				if strings.HasPrefix(x.String(), c.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("violations %v do not include %q", v, c.want)
			}
		})
	}
}
