package machine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/pkg/spec"
)

// sharedTypes are the read-only values clone shares between copies
// instead of copying them (see State).
var sharedTypes = []reflect.Type{
	reflect.TypeFor[*spec.Rollout](),
	reflect.TypeFor[*spec.Experiment](),
}

// TestCloneSharesNothing fills every field reachable from State, copies
// the state, changes every value reachable from the copy, and checks that
// the original did not change: a pointer, slice or map that clone forgot
// to copy (say, in a field added later) fails it.
func TestCloneSharesNothing(t *testing.T) {
	orig := fillState(t, nil)
	pristine := fillState(t, nil)
	before := mustJSON(t, orig)

	c := orig.clone()
	if got := mustJSON(t, c); !bytes.Equal(got, before) {
		t.Fatalf("the copy encodes differently:\n%s\nwant\n%s", got, before)
	}
	if !reflect.DeepEqual(c, orig) {
		t.Fatalf("the copy differs from the original at %s", firstDifference(reflect.ValueOf(c), reflect.ValueOf(orig), "State"))
	}

	changed := 0
	visit(reflect.ValueOf(&c).Elem(), root, func(v reflect.Value, _ *path) bool {
		if slices.Contains(sharedTypes, v.Type()) {
			return false
		}
		if change(v) {
			changed++
		}
		if v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && !v.IsNil() {
			k := reflect.New(v.Type().Key()).Elem()
			k.SetString("added")
			v.SetMapIndex(k, reflect.New(v.Type().Elem()).Elem())
		}
		return true
	})
	if changed < 1000 {
		t.Fatalf("changed only %d values of the copy; is the state filled?", changed)
	}
	if reflect.DeepEqual(c, pristine) {
		t.Fatalf("changing every value of the copy left it as it was")
	}
	if got := mustJSON(t, orig); !bytes.Equal(got, before) {
		t.Fatalf("changing the copy changed the original at %s", firstDifference(reflect.ValueOf(orig), reflect.ValueOf(pristine), "State"))
	}
	if !reflect.DeepEqual(orig, pristine) {
		t.Fatalf("changing the copy changed the original at %s (a field JSON leaves out)", firstDifference(reflect.ValueOf(orig), reflect.ValueOf(pristine), "State"))
	}
}

// TestCloneKeepsNilAndEmpty checks that the copy of a state keeps nil and
// empty slices and maps apart, where JSON may not: only then is an
// unchanged copy deeply equal to its original.
func TestCloneKeepsNilAndEmpty(t *testing.T) {
	st := fillState(t, nil)
	empty := 0
	visit(reflect.ValueOf(&st).Elem(), root, func(v reflect.Value, _ *path) bool {
		switch v.Kind() {
		case reflect.Slice:
			if v.Type().Elem().Kind() != reflect.Uint8 {
				v.Set(reflect.MakeSlice(v.Type(), 0, 0))
				empty++
			}
			return false
		case reflect.Map:
			v.Set(reflect.MakeMap(v.Type()))
			empty++
			return false
		}
		return true
	})
	if empty < 50 {
		t.Fatalf("emptied only %d slices and maps", empty)
	}
	if c := st.clone(); !reflect.DeepEqual(c, st) {
		t.Fatalf("the copy of a state with empty slices and maps differs at %s", firstDifference(reflect.ValueOf(c), reflect.ValueOf(st), "State"))
	}
	var zero State
	if c := zero.clone(); !reflect.DeepEqual(c, zero) {
		t.Fatalf("the copy of the zero state differs at %s", firstDifference(reflect.ValueOf(c), reflect.ValueOf(zero), "State"))
	}
}

// fillState returns a state in which every field reachable from State is
// set, each leaf to a value of its own; the same every time. Values of the
// types opaque reports are left zero.
func fillState(t testing.TB, opaque func(reflect.Type) bool) State {
	t.Helper()
	f := filler{t: t, opaque: opaque}
	var st State
	f.fill(reflect.ValueOf(&st).Elem(), root, 0)
	return st
}

// filler sets every field reachable from a value. It fails the test on a
// type it does not know how to fill, naming the field.
type filler struct {
	t      testing.TB
	opaque func(reflect.Type) bool
	n      int
}

func (f *filler) fill(v reflect.Value, at *path, depth int) {
	if depth > 40 {
		f.t.Fatalf("%s: too deep; a recursive type?", at)
	}
	if f.opaque != nil && f.opaque(v.Type()) {
		return
	}
	f.n++
	n := f.n
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = t0.Add(time.Duration(n) * time.Second)
		return
	case *resource.Quantity:
		*x = resource.MustParse(fmt.Sprint(n))
		return
	case *intstr.IntOrString:
		*x = intstr.FromInt32(int32(n))
		return
	}
	switch t := v.Type(); t.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(n % 100))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n % 100))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(n))
	case reflect.String:
		v.SetString(fmt.Sprint("s", n))
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		f.fill(p.Elem(), at.to(deref{}), depth+1)
		v.Set(p)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			// Raw JSON (json.RawMessage, metav1.FieldsV1) must be valid.
			v.SetBytes(fmt.Appendf(nil, `{"n":%d}`, n))
			return
		}
		s := reflect.MakeSlice(t, 1, 1)
		f.fill(s.Index(0), at.to(0), depth+1)
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i), at.to(i), depth+1)
		}
	case reflect.Map:
		k := reflect.New(t.Key()).Elem()
		f.fill(k, at.to("key"), depth+1)
		e := reflect.New(t.Elem()).Elem()
		f.fill(e, at.to(k), depth+1)
		m := reflect.MakeMapWithSize(t, 1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range t.NumField() {
			sf := t.Field(i)
			if !sf.IsExported() {
				f.t.Fatalf("%s: %s has the unexported field %s: teach the test to fill a %s", at, t, sf.Name, t)
			}
			f.fill(v.Field(i), at.to(fieldStep{sf.Name, i}), depth+1)
		}
	default:
		f.t.Fatalf("%s: the test cannot fill a %s (%s)", at, t, t.Kind())
	}
}

// path locates a value inside a state: for messages, and to reach the
// value again.
type path struct {
	up   *path
	step any // a fieldStep, deref, a slice index (int) or a map key (reflect.Value)
}

type fieldStep struct {
	name  string
	index int
}

// deref steps from a pointer to the value it points to.
type deref struct{}

var root = &path{step: fieldStep{name: "State"}}

func (p *path) to(step any) *path { return &path{up: p, step: step} }

func (p *path) String() string {
	switch s := p.step.(type) {
	case fieldStep:
		if p.up == nil {
			return s.name
		}
		return p.up.String() + "." + s.name
	case deref:
		return p.up.String()
	default:
		return fmt.Sprintf("%s[%v]", p.up, s)
	}
}

// reach calls fn on the value at p inside v, the value at the root; a
// value inside a map is changed in a copy that is then stored in the map.
func (p *path) reach(v reflect.Value, fn func(v reflect.Value)) {
	var steps []any
	for q := p; q.up != nil; q = q.up {
		steps = append(steps, q.step)
	}
	slices.Reverse(steps)
	var walk func(v reflect.Value, steps []any)
	walk = func(v reflect.Value, steps []any) {
		if len(steps) == 0 {
			fn(v)
			return
		}
		switch s := steps[0].(type) {
		case fieldStep:
			walk(v.Field(s.index), steps[1:])
		case deref:
			walk(v.Elem(), steps[1:])
		case int:
			walk(v.Index(s), steps[1:])
		case reflect.Value:
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(s))
			walk(e, steps[1:])
			v.SetMapIndex(s, e)
		}
	}
	walk(v, steps)
}

// isLeaf reports whether visit stops at a value of type t: a value with
// unexported fields the filler knows, raw bytes, or a scalar.
func isLeaf(t reflect.Type) bool {
	switch t {
	case reflect.TypeFor[time.Time](), reflect.TypeFor[resource.Quantity](), reflect.TypeFor[intstr.IntOrString]():
		return true
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Struct, reflect.Map, reflect.Array:
		return false
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8
	}
	return true
}

// visit calls fn on v, a settable value, and then, unless fn returns false
// or v is a leaf, on every value it holds, depth first and in a fixed
// order. fn may change the value it is given; a map's values are visited
// in a copy that is then stored in the map.
func visit(v reflect.Value, at *path, fn func(v reflect.Value, at *path) bool) {
	if !fn(v, at) || isLeaf(v.Type()) {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			visit(v.Elem(), at.to(deref{}), fn)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if sf := v.Type().Field(i); sf.IsExported() {
				visit(v.Field(i), at.to(fieldStep{sf.Name, i}), fn)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			visit(v.Index(i), at.to(i), fn)
		}
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		for _, k := range keys {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			visit(e, at.to(k), fn)
			v.SetMapIndex(k, e)
		}
	}
}

// change gives v, a leaf, another value in place (raw bytes are changed in
// their array, and stay valid JSON). It reports false when v is no leaf.
func change(v reflect.Value) bool {
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = x.Add(time.Hour)
		return true
	case *resource.Quantity:
		*x = resource.MustParse(fmt.Sprint(x.Value() + 1))
		return true
	case *intstr.IntOrString:
		*x = intstr.FromInt32(x.IntVal + 1)
		return true
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.String:
		v.SetString(v.String() + "'")
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			return false
		}
		b := v.Bytes()
		i := bytes.IndexAny(b, "012345678")
		if i < 0 {
			return false
		}
		b[i]++
	default:
		return false
	}
	return true
}

// firstDifference returns the path of the first value that differs between
// a and b, two values of the same type.
func firstDifference(a, b reflect.Value, path string) string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return ""
	}
	if isLeaf(a.Type()) {
		return path
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return path
		}
		return firstDifference(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		for i := range a.NumField() {
			if a.Type().Field(i).IsExported() {
				if d := firstDifference(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); d != "" {
					return d
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if a.Len() != b.Len() || a.Kind() == reflect.Slice && a.IsNil() != b.IsNil() {
			return path
		}
		for i := range a.Len() {
			if d := firstDifference(a.Index(i), b.Index(i), fmt.Sprint(path, "[", i, "]")); d != "" {
				return d
			}
		}
	case reflect.Map:
		if a.Len() != b.Len() || a.IsNil() != b.IsNil() {
			return path
		}
		for _, k := range a.MapKeys() {
			if !b.MapIndex(k).IsValid() {
				return fmt.Sprint(path, "[", k, "]")
			}
			if d := firstDifference(a.MapIndex(k), b.MapIndex(k), fmt.Sprint(path, "[", k, "]")); d != "" {
				return d
			}
		}
	}
	return path
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}
