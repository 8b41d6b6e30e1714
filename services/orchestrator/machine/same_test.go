package machine

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
)

// TestSameJSONAgreesWithJSON changes one value of a filled state at a
// time, in every way that may or may not show in JSON, and checks that
// sameJSON says "same" exactly when json.Marshal encodes both states
// alike. sameJSON compares the values of other packages whole, so they
// are changed value by value only where their type first occurs; and
// Kubernetes types (templates, selectors) only whole.
func TestSameJSONAgreesWithJSON(t *testing.T) {
	k8s := func(t reflect.Type) bool { return strings.HasPrefix(t.PkgPath(), "k8s.io/") }
	a := fillState(t, k8s)
	b := fillState(t, k8s)
	if !a.sameJSON(&b) {
		t.Fatalf("two states filled alike are not the same")
	}

	// The places to change: every value, except inside Kubernetes types
	// and inside a second value of another package's struct type.
	type site struct {
		at    *path
		whole bool // changed only as a whole
	}
	var sites []site
	own := reflect.TypeFor[State]().PkgPath()
	seen := map[reflect.Type]bool{}
	visit(reflect.ValueOf(&b).Elem(), root, func(v reflect.Value, at *path) bool {
		typ := v.Type()
		whole := k8s(typ) || typ.Kind() == reflect.Struct && typ.PkgPath() != own && seen[typ] && !isLeaf(typ)
		seen[typ] = true
		sites = append(sites, site{at, whole})
		return !whole
	})

	// An edit changes the value at a site of b, and maybe of a.
	type edit struct {
		name string
		// a and b change v and report whether they apply to it; a may
		// be nil.
		a, b func(v reflect.Value, whole bool) bool
	}
	setNil := func(v reflect.Value, _ bool) bool {
		switch v.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			if !v.IsNil() {
				v.SetZero()
				return true
			}
		}
		return false
	}
	setEmpty := func(v reflect.Value, _ bool) bool {
		switch {
		case v.Kind() == reflect.Slice && !isLeaf(v.Type()): // no raw JSON is not valid JSON
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return true
		case v.Kind() == reflect.Map:
			v.Set(reflect.MakeMap(v.Type()))
			return true
		}
		return false
	}
	inZone := func(zone *time.Location, instant func(time.Time) time.Time) func(reflect.Value, bool) bool {
		return func(v reflect.Value, _ bool) bool {
			x, ok := v.Addr().Interface().(*time.Time)
			if ok {
				*x = instant(*x).In(zone)
			}
			return ok
		}
	}
	keep := func(x time.Time) time.Time { return x }
	zero := func(time.Time) time.Time { return time.Time{} }
	gmt, cet := time.FixedZone("GMT", 0), time.FixedZone("CET", 3600)
	edits := []edit{
		{name: "change", b: func(v reflect.Value, whole bool) bool {
			if whole {
				// Filled anew, every value differs from the first fill.
				(&filler{t: t}).fill(v, root, 0)
				return true
			}
			return change(v)
		}},
		{name: "nil", b: setNil},
		{name: "nil and empty", a: setNil, b: setEmpty},
		{name: "same instant and offset, another zone", b: inZone(gmt, keep)},
		{name: "same instant, another offset", b: inZone(cet, keep)},
		{name: "zero times in zones with other offsets", a: inZone(time.UTC, zero), b: inZone(cet, zero)},
	}

	av, bv := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	ja := mustJSON(t, a)
	var same, different int
	for _, st := range sites {
		for _, e := range edits {
			// Each edit is undone after the check.
			var undo []func()
			applied := true
			apply := func(root reflect.Value, edit func(reflect.Value, bool) bool) {
				st.at.reach(root, func(v reflect.Value) {
					saved := reflect.New(v.Type()).Elem()
					saved.Set(v)
					if v.Kind() == reflect.Slice && isLeaf(v.Type()) {
						saved.SetBytes(bytes.Clone(v.Bytes())) // change changes raw bytes in place
					}
					undo = append(undo, func() { st.at.reach(root, func(v reflect.Value) { v.Set(saved) }) })
					applied = edit(v, st.whole) && applied
				})
			}
			if e.a != nil {
				apply(av, e.a)
			}
			apply(bv, e.b)
			if applied {
				jaNow := ja
				if e.a != nil {
					jaNow = mustJSON(t, a)
				}
				want := bytes.Equal(jaNow, mustJSON(t, b))
				if got := a.sameJSON(&b); got != want {
					t.Errorf("%s: %s: sameJSON says %t, JSON says %t", st.at, e.name, got, want)
				}
				if got := b.sameJSON(&a); got != want {
					t.Errorf("%s: %s: sameJSON the other way round says %t, JSON says %t", st.at, e.name, got, want)
				}
				if want {
					same++
				} else {
					different++
				}
			}
			for _, u := range undo {
				u()
			}
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("the test did not undo its edit at %s", firstDifference(av, bv, "State"))
	}
	// Guard the test itself: a walk that reached little would pass.
	if different < 400 || same < 50 {
		t.Fatalf("only %d edits changed the JSON and %d did not", different, same)
	}
}

// TestSameJSONAfterLoad: a state loaded from JSON, and its copy, are the
// same as the state that was stored.
func TestSameJSONAfterLoad(t *testing.T) {
	w, _ := midUpdate(t)
	var loaded State
	if err := json.Unmarshal(mustJSON(t, w.st), &loaded); err != nil {
		t.Fatal(err)
	}
	c := loaded.clone()
	for name, pair := range map[string][2]*State{
		"loaded and stored": {&loaded, &w.st},
		"copy and loaded":   {&c, &loaded},
		"copy and stored":   {&c, &w.st},
	} {
		if !pair[0].sameJSON(pair[1]) || !pair[1].sameJSON(pair[0]) {
			t.Errorf("%s: not the same", name)
		}
	}
}

// TestUnchangedObservations: an observation that applies but changes
// nothing returns the very state it was given, at the same version, and
// no effects; also when the state holds empty slices and maps where a
// state loaded from JSON has none (Next may rebuild them as nil).
func TestUnchangedObservations(t *testing.T) {
	for name, edit := range map[string]func(t testing.TB, st *State){
		"as is":  func(testing.TB, *State) {},
		"loaded": func(t testing.TB, st *State) { *st = roundTrip(t, *st) },
		"empty slices": func(_ testing.TB, st *State) {
			if st.Runs == nil {
				st.Runs = []RunRecord{}
			}
			if st.Pods == nil {
				st.Pods = []PodRecord{}
			}
			for i := range st.Runs {
				if st.Runs[i].Measured == nil {
					st.Runs[i].Measured = map[string]int{}
				}
			}
		},
	} {
		for scenario, setup := range map[string]func(t *testing.T) *world{
			"paused canary without runs": func(t *testing.T) *world {
				w := newWorld(t, Config{})
				ro := basicCanary(4, intStr(1), intStr(0), setWeight(25), pauseIndefinitely(), setWeight(50))
				start(w, ro)
				w.request(image(ro, "web:2"))
				w.settle()
				w.expectPhase("Paused")
				return w
			},
			"routed canary with background analysis": func(t *testing.T) *world {
				w, _ := midUpdate(t)
				return w
			},
		} {
			t.Run(scenario+"/"+name, func(t *testing.T) {
				w := setup(t)
				edit(t, &w.st)
				wake, ok := w.st.NextWakeup()
				if ok && !wake.After(w.now) {
					t.Fatalf("setup: a deadline is due")
				}
				// A tick before any deadline applies, and changes nothing.
				next, effs := w.next(w.st, Observation{Tick: true})
				if next.Version != w.st.Version || len(effs) != 0 {
					t.Fatalf("version %d -> %d, effects %s; want nothing", w.st.Version, next.Version, describeEffects(effs))
				}
				if !reflect.DeepEqual(next, w.st) {
					t.Fatalf("the state returned is not the one given")
				}
			})
		}
	}
}

// TestSameScaleAndRoute checks the typed comparisons of desired scales and
// routing tables against their JSON forms, which they replace.
func TestSameScaleAndRoute(t *testing.T) {
	md := &spec.PodTemplateMetadata{Labels: map[string]string{"role": "canary"}}
	rs := func(hash string, replicas int32, edits ...func(*tasks.RevisionScale)) tasks.RevisionScale {
		r := tasks.RevisionScale{Revision: 2, PodHash: hash, Role: spec.RoleCanary, Replicas: replicas, Metadata: md}
		for _, e := range edits {
			e(&r)
		}
		return r
	}
	base := []tasks.RevisionScale{rs("a", 2), rs("b", 3)}
	scales := []struct {
		name string
		b    []tasks.RevisionScale
		want bool
	}{
		{"same", []tasks.RevisionScale{rs("a", 2), rs("b", 3)}, true},
		{"other order", []tasks.RevisionScale{rs("b", 3), rs("a", 2)}, true},
		{"with a revision at zero", []tasks.RevisionScale{rs("a", 2), rs("c", 0), rs("b", 3)}, true},
		{"with a template", []tasks.RevisionScale{rs("a", 2, func(r *tasks.RevisionScale) { r.Template = podTemplate("web:2") }), rs("b", 3)}, true},
		{"equal metadata elsewhere", []tasks.RevisionScale{rs("a", 2, func(r *tasks.RevisionScale) {
			r.Metadata = &spec.PodTemplateMetadata{Labels: map[string]string{"role": "canary"}, Annotations: map[string]string{}}
		}), rs("b", 3)}, true},
		{"other metadata", []tasks.RevisionScale{rs("a", 2, func(r *tasks.RevisionScale) { r.Metadata = nil }), rs("b", 3)}, false},
		{"other replicas", []tasks.RevisionScale{rs("a", 1), rs("b", 3)}, false},
		{"other role", []tasks.RevisionScale{rs("a", 2, func(r *tasks.RevisionScale) { r.Role = spec.RoleStable }), rs("b", 3)}, false},
		{"other revision", []tasks.RevisionScale{rs("a", 2, func(r *tasks.RevisionScale) { r.Revision = 3 }), rs("b", 3)}, false},
		{"one missing", []tasks.RevisionScale{rs("a", 2)}, false},
		{"one scaled to zero", []tasks.RevisionScale{rs("a", 2), rs("b", 0)}, false},
		{"one more", []tasks.RevisionScale{rs("a", 2), rs("b", 3), rs("c", 1)}, false},
		{"none", nil, false},
	}
	for _, c := range scales {
		if got := sameScale(base, c.b); got != c.want {
			t.Errorf("scale %s: sameScale %t, want %t", c.name, got, c.want)
		}
		if got := sameScale(c.b, base); got != c.want {
			t.Errorf("scale %s: sameScale the other way round %t, want %t", c.name, got, c.want)
		}
		if got := scaleKeyJSON(t, base) == scaleKeyJSON(t, c.b); got != c.want {
			t.Errorf("scale %s: the JSON comparison it replaces says %t", c.name, got)
		}
	}

	tr := &spec.TrafficRouting{Nginx: &spec.NginxTrafficRouting{StableIngress: "web"}}
	route := func(edits ...func(*tasks.Route)) *tasks.Route {
		r := &tasks.Route{Strategy: spec.StrategyCanary, TrafficRouting: tr, StableHash: "a", CanaryHash: "b", CanaryWeight: 20}
		for _, e := range edits {
			e(r)
		}
		return r
	}
	routes := []struct {
		name string
		b    *tasks.Route
		want bool
	}{
		{"same", route(), true},
		{"equal routing elsewhere", route(func(r *tasks.Route) {
			r.TrafficRouting = &spec.TrafficRouting{Nginx: &spec.NginxTrafficRouting{StableIngress: "web"}, UnknownRouters: []string{}}
		}), true},
		{"empty header routes", route(func(r *tasks.Route) { r.HeaderRoutes = []spec.SetHeaderRoute{} }), true},
		{"other weight", route(func(r *tasks.Route) { r.CanaryWeight = 30 }), false},
		{"header route", route(func(r *tasks.Route) { r.HeaderRoutes = []spec.SetHeaderRoute{{Name: "h"}} }), false},
		{"none", nil, false},
	}
	for _, c := range routes {
		if got := sameRoute(route(), c.b); got != c.want {
			t.Errorf("route %s: sameRoute %t, want %t", c.name, got, c.want)
		}
		if got := bytes.Equal(mustJSON(t, route()), mustJSON(t, c.b)); got != c.want {
			t.Errorf("route %s: JSON says %t", c.name, got)
		}
	}
	if !sameRoute(nil, nil) {
		t.Errorf("no route is not the same as no route")
	}
}

// scaleKeyJSON is how sameScale compared scales before it was typed: the
// JSON of the revisions with pods, without templates, by pod hash.
func scaleKeyJSON(t *testing.T, rs []tasks.RevisionScale) string {
	var keep []tasks.RevisionScale
	for _, r := range rs {
		if r.Replicas > 0 {
			r.Template.Reset()
			keep = append(keep, r)
		}
	}
	slices.SortFunc(keep, func(a, b tasks.RevisionScale) int { return strings.Compare(a.PodHash, b.PodHash) })
	return string(mustJSON(t, keep))
}

func roundTrip(t testing.TB, st State) State {
	t.Helper()
	var out State
	if err := json.Unmarshal(mustJSON(t, st), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
