package crd

import (
	"testing"
	"time"
)

// Two writers at once (the status writer after an event and the rewrite
// after ReplicaSet counts changed, or two replicas) each record what they
// wrote. Their records may land in either order; what the record keeps
// must be what the object shows, or the watcher reads Sluice's own write
// as a tool's request (a step index "advanced" by nobody is a promote).
func TestWritesRecordedOutOfOrder(t *testing.T) {
	step := func(n int64) *int64 { return &n }
	at := time.Date(2026, 12, 7, 5, 27, 2, 0, time.UTC)
	older := write{id: "a", version: "1361", fields: Requested{StepIndex: step(0)}, now: at}
	later := write{id: "b", version: "1366", fields: Requested{Paused: true, StepIndex: step(1)}, now: at}
	object := later.fields // the object shows the write that landed last

	for _, order := range [][]write{{older, later}, {later, older}} {
		rec := Written{Intents: []Intent{{ID: "a", Fields: older.fields, At: at}, {ID: "b", Fields: later.fields, At: at}}}
		for _, w := range order {
			w.record(&rec)
		}
		if got := differs(rec.Fields, object); len(got) > 0 {
			t.Errorf("recorded %s then %s: fields %v differ from the object's in %v", order[0].version, order[1].version, rec.Fields, got)
		}
		if len(rec.Intents) != 0 {
			t.Errorf("recorded %s then %s: intents %v left", order[0].version, order[1].version, rec.Intents)
		}
		if reqs := Requests(rec.was(object, at), object, rec.Pending, 4); len(reqs) > 0 {
			t.Errorf("recorded %s then %s: the object asks for %v", order[0].version, order[1].version, reqs)
		}
	}
}

// While two writes are in progress, the object may show either: neither
// writer's intent hides the other's.
func TestIntentsOfConcurrentWrites(t *testing.T) {
	step := func(n int64) *int64 { return &n }
	at := time.Date(2026, 12, 7, 5, 27, 2, 0, time.UTC)
	rec := Written{Fields: Requested{StepIndex: step(0)}, Intents: []Intent{
		{ID: "a", Fields: Requested{Paused: true, StepIndex: step(1)}, At: at},
		{ID: "b", Fields: Requested{StepIndex: step(0)}, At: at},
	}}
	object := Requested{Paused: true, StepIndex: step(1)} // a's write landed, not yet recorded
	if reqs := Requests(rec.was(object, at), object, nil, 4); len(reqs) > 0 {
		t.Errorf("a write in progress read as requests %v", reqs)
	}
	// An intent past intentTTL is a writer that stopped: no longer
	// believed, so a tool's change matching it is a request again.
	late := at.Add(intentTTL)
	if reqs := Requests(rec.was(object, late), object, nil, 4); len(reqs) != 1 {
		t.Errorf("with expired intents: requests %v, want the step advance as one promote", reqs)
	}
	if got := live(rec.Intents, late, ""); len(got) != 0 {
		t.Errorf("expired intents kept: %v", got)
	}
	if got := live(rec.Intents, at, "a"); len(got) != 1 || got[0].ID != "b" {
		t.Errorf("dropping a: %v", got)
	}
}

func TestNewer(t *testing.T) {
	cases := []struct {
		rv, recorded string
		want         bool
	}{
		{"1366", "", true},
		{"1366", "1361", true},
		{"1366", "1366", true}, // a write that changed nothing
		{"1361", "1366", false},
		{"99", "100", false}, // numbers, not strings
		{"opaque", "1366", true},
	}
	for _, c := range cases {
		if got := newer(c.rv, c.recorded); got != c.want {
			t.Errorf("newer(%q, %q) = %v, want %v", c.rv, c.recorded, got, c.want)
		}
	}
}
