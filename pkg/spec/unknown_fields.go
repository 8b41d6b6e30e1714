package spec

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Warning is a problem that does not make a document invalid: a field
// Sluice does not know. Argo Rollouts drops such fields silently; Sluice
// reports them, because a misspelt field is usually a setting the author
// believes is in effect.
type Warning struct {
	// Field is the path of the field, e.g. "spec.strategy.canary.stepz".
	Field string
	// Detail says what is wrong, e.g. `unknown field (did you mean "steps"?)`.
	Detail string
}

// String renders w as "FIELD: DETAIL".
func (w Warning) String() string {
	return w.Field + ": " + w.Detail
}

// unknownFieldKeeper is implemented by types that keep their unknown keys
// to reject them in Validate, so that they are not also warnings.
type unknownFieldKeeper interface{ keepsUnknownKeys() }

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	fieldKeeper     = reflect.TypeFor[unknownFieldKeeper]()
)

// unknownFields returns a warning for every key of v, a value decoded from
// JSON, that has no field in t, the Go type v was decoded into. Values of
// types that decode themselves (json.RawMessage, IntOrString, Quantity,
// Time) are not looked into, except TrafficRouting, which reports its own
// unknown keys, and the Gateway API plugin's configuration (see mapElem).
// Warnings are ordered by path: keys sorted, list elements by index.
func unknownFields(path *field.Path, v any, t reflect.Type) []Warning {
	var out []Warning
	walkUnknown(path, v, t, &out)
	return out
}

func walkUnknown(path *field.Path, v any, t reflect.Type, out *[]Warning) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	keeper := reflect.PointerTo(t).Implements(fieldKeeper)
	if !keeper && decodesItself(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		fields := jsonFields(t)
		for _, key := range sortedKeys(obj) {
			ft, known := fields[key]
			if !known {
				if !keeper {
					*out = append(*out, Warning{Field: path.Child(key).String(), Detail: unknownDetail(key, fields)})
				}
				continue
			}
			walkUnknown(path.Child(key), obj[key], ft, out)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			walkUnknown(path.Index(i), e, t.Elem(), out)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, key := range sortedKeys(obj) {
			walkUnknown(path.Key(key), obj[key], mapElem(t, key), out)
		}
	}
}

// mapElem returns the type of the value at key of map type t. The Gateway
// API plugin's configuration is raw JSON in the Go type but has a known
// shape, so its fields are checked too.
func mapElem(t reflect.Type, key string) reflect.Type {
	if t == reflect.TypeFor[RouterPlugins]() && key == GatewayAPIPlugin {
		return reflect.TypeFor[GatewayAPITrafficRouting]()
	}
	return t.Elem()
}

func decodesItself(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(jsonUnmarshaler) || pt.Implements(textUnmarshaler)
}

// unknownDetail says a key is unknown and, when a known key is a likely
// intended spelling, names it.
func unknownDetail(key string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	for name := range fields {
		d := editDistance(strings.ToLower(key), strings.ToLower(name))
		if d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	// A short key is close to too many names for a suggestion to help: allow
	// one edit per three characters, or a difference in case alone.
	if best == "" || (bestDist > len(key)/3 && !strings.EqualFold(best, key)) {
		return "unknown field"
	}
	return fmt.Sprintf("unknown field (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var jsonFieldsCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonFields returns the JSON keys of struct type t and their Go types, as
// encoding/json sees them: fields of embedded structs without a name are
// promoted, fields tagged "-" and unexported fields are left out.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := jsonFieldsCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	addJSONFields(t, m)
	jsonFieldsCache.Store(t, m)
	return m
}

func addJSONFields(t reflect.Type, m map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addJSONFields(ft, m)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
