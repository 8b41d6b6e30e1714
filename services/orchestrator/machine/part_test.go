package machine

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestRevisionPartIsWhatChangesOnlyWithARevision checks, on a state with
// every field set, that the revision part and the rest together are the
// whole state, and that Same tells a changed part from an unchanged one
// as JSON does.
func TestRevisionPartIsWhatChangesOnlyWithARevision(t *testing.T) {
	k8s := func(t reflect.Type) bool { return strings.HasPrefix(t.PkgPath(), "k8s.io/") }
	st := fillState(t, k8s)
	p := st.RevisionPart()
	if p.IsZero() {
		t.Fatal("a filled state has an empty revision part")
	}
	rest := st
	rest.SetRevisionPart(RevisionPart{})
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(mustJSON(t, rest), &fields); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"spec", "experimentSpec", "history"} {
		if _, ok := fields[name]; ok {
			t.Errorf("the state without its revision part still encodes %q", name)
		}
	}
	rest.SetRevisionPart(p)
	if string(mustJSON(t, rest)) != string(mustJSON(t, st)) {
		t.Fatal("the state with its revision part put back encodes differently")
	}

	other := fillState(t, k8s)
	same := other.RevisionPart()
	if !p.Same(&same) {
		t.Fatal("two parts filled alike are not the same")
	}
	for name, change := range map[string]func(*RevisionPart){
		"a template":   func(p *RevisionPart) { p.History[0].Template.Labels = map[string]string{"changed": "yes"} },
		"a revision":   func(p *RevisionPart) { p.History = p.History[1:] },
		"the spec":     func(p *RevisionPart) { s := *p.Spec; s.Name = "other"; p.Spec = &s },
		"no spec":      func(p *RevisionPart) { p.Spec = nil },
		"the exp spec": func(p *RevisionPart) { p.ExperimentSpec = nil },
	} {
		fresh := fillState(t, k8s)
		o := fresh.RevisionPart()
		o.History = append([]RevisionRecord(nil), o.History...)
		change(&o)
		var x, y any
		_ = json.Unmarshal(mustJSON(t, p), &x)
		_ = json.Unmarshal(mustJSON(t, o), &y)
		if reflect.DeepEqual(x, y) || p.Same(&o) {
			t.Errorf("changing %s: Same says %v", name, p.Same(&o))
		}
	}
}
