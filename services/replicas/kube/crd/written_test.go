package crd

import (
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
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

// Argo CD's retry clears status.abort while Sluice has not yet answered the
// abort: the writer answering it keeps the tool's value (held), and its
// intent must not make another writer, or the watcher, take that value for
// Sluice's own; once the abort is answered, the clearing is a retry.
func TestRetryWhileAbortPending(t *testing.T) {
	at := time.Date(2026, 12, 7, 5, 41, 35, 0, time.UTC)
	const abortID = "k8s:uid:3200:abort"
	rec := Written{UID: "uid", Fields: Requested{Abort: true}, FieldsVersion: "3207", Pending: map[string]string{fieldAbort: abortID}}
	object := Requested{} // the retry cleared abort
	if reqs := Requests(rec.was(object, at), object, rec.Pending, 4); len(reqs) != 0 {
		t.Fatalf("while the abort is pending: requests %v, want none yet", reqs)
	}

	// The writer answering the abort holds the field at the tool's value.
	held := differs(rec.was(object, at), object)
	if !slices.Contains(held, fieldAbort) {
		t.Fatalf("the answering writer holds %v, want abort held", held)
	}
	rec.Intents = append(rec.Intents, Intent{ID: "a", Fields: object, Held: held, At: at})

	// Meanwhile another writer (after another event) must hold it too.
	if got := differs(rec.was(object, at), object); !slices.Contains(got, fieldAbort) {
		t.Errorf("a concurrent writer holds %v: it would write abort back and lose the retry", got)
	}

	answer := write{id: "a", version: "3216", fields: object, held: held, causes: []string{abortID}, answered: []string{abortID}, now: at}
	answer.record(&rec)
	if len(rec.Pending) != 0 || len(rec.Intents) != 0 {
		t.Fatalf("after the answer: pending %v, intents %v", rec.Pending, rec.Intents)
	}
	reqs := Requests(rec.was(object, at), object, rec.Pending, 4)
	if len(reqs) != 1 || reqs[0].Type != events.TypeRolloutRetry {
		t.Errorf("after the answer: requests %v, want one retry", reqs)
	}
}
