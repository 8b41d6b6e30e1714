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
	walkUnknown(nil, path, v, t, &out)
	return out
}

// frame is one object on the way from the document's root to a key: its
// path, its value as decoded from JSON, and its Go type.
type frame struct {
	path *field.Path
	obj  map[string]any
	t    reflect.Type
}

func walkUnknown(outer []frame, path *field.Path, v any, t reflect.Type, out *[]Warning) {
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
		here := append(outer[:len(outer):len(outer)], frame{path: path, obj: obj, t: t})
		for _, key := range sortedKeys(obj) {
			ft, known := fields[key]
			if !known {
				if !keeper {
					detail := misplacedDetail(key, here)
					if detail == "" {
						detail = unknownDetail(key, fields)
					}
					*out = append(*out, Warning{Field: path.Child(key).String(), Detail: detail})
				}
				continue
			}
			walkUnknown(here, path.Child(key), obj[key], ft, out)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			walkUnknown(outer, path.Index(i), e, t.Elem(), out)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, key := range sortedKeys(obj) {
			walkUnknown(outer, path.Key(key), obj[key], mapElem(t, key), out)
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

// misplacedDetail says where key belongs when it is the name of a known
// field at another level of the document: a field of an enclosing object
// (successCondition indented under provider.prometheus belongs to the
// metric), or a field one or two levels below an object on the way
// (steps under strategy belongs to strategy.canary). It returns "" when no
// such field exists or the place is ambiguous. Frames are the objects from
// the root to the one holding key.
func misplacedDetail(key string, frames []frame) string {
	for i := len(frames) - 1; i >= 0; i-- {
		f := frames[i]
		if _, ok := jsonFields(f.t)[key]; ok && i < len(frames)-1 {
			where := f.path.Child(key).String()
			msg := fmt.Sprintf("unknown field here; %s belongs to %s (%s)", key, holderName(f.t, f.path), where)
			if absent, ok := absence[key]; ok {
				if why := absent(f.t, f.obj); why != "" {
					msg += "; " + why
				}
			}
			return msg
		}
		if found := fieldsBelow(f.t, key, f.path.String(), 2); len(found) == 1 {
			return fmt.Sprintf("unknown field here; %s belongs at %s", key, found[0])
		}
	}
	return ""
}

// fieldsBelow returns the paths, rendered under prefix, of the fields named
// key in the Sluice types that t's fields hold, up to depth levels down.
// Only the nearest level with a match counts. List elements are written
// [*].
func fieldsBelow(t reflect.Type, key, prefix string, depth int) []string {
	type node struct {
		t    reflect.Type
		path string
	}
	level := []node{{t, prefix}}
	for d := 0; d < depth && len(level) > 0; d++ {
		var next []node
		var found []string
		for _, n := range level {
			for name, ft := range jsonFields(n.t) {
				p := name
				if n.path != "" {
					p = n.path + "." + name
				}
				et := ft
				for et.Kind() == reflect.Pointer || et.Kind() == reflect.Slice || et.Kind() == reflect.Array {
					if et.Kind() != reflect.Pointer {
						p += "[*]"
					}
					et = et.Elem()
				}
				if et.Kind() != reflect.Struct || et.PkgPath() != ownPackage || decodesItself(et) {
					continue
				}
				if _, ok := jsonFields(et)[key]; ok {
					found = append(found, p+"."+key)
				}
				next = append(next, node{et, p})
			}
		}
		if len(found) > 0 {
			sort.Strings(found)
			return found
		}
		level = next
	}
	return nil
}

// ownPackage is this package's import path: hints look only into its
// types, not into Kubernetes' pod template.
var ownPackage = reflect.TypeFor[Rollout]().PkgPath()

// holderName names the object a field belongs to, for a hint.
func holderName(t reflect.Type, path *field.Path) string {
	switch t {
	case reflect.TypeFor[Metric]():
		return "the metric"
	case reflect.TypeFor[RolloutSpec]():
		return "the rollout's spec"
	case reflect.TypeFor[CanaryStrategy]():
		return "the canary strategy"
	case reflect.TypeFor[BlueGreenStrategy]():
		return "the blueGreen strategy"
	case reflect.TypeFor[CanaryStep]():
		return "the step"
	}
	if path == nil {
		return "the document's top level"
	}
	return path.String()
}

// absence says what leaving a field out of the object that holds it (t,
// with keys obj) means, when that is worth a warning: a field misplaced is
// a field absent.
var absence = map[string]func(t reflect.Type, obj map[string]any) string{
	"successCondition": metricWithoutCondition,
	"failureCondition": metricWithoutCondition,
	"replicas": func(t reflect.Type, obj map[string]any) string {
		if _, set := obj["replicas"]; t == reflect.TypeFor[RolloutSpec]() && !set {
			return "without it the rollout runs 1 replica"
		}
		return ""
	},
	"steps": func(t reflect.Type, obj map[string]any) string {
		if _, set := obj["steps"]; t == reflect.TypeFor[CanaryStrategy]() && !set {
			return "without steps an update is promoted at once"
		}
		return ""
	},
}

func metricWithoutCondition(t reflect.Type, obj map[string]any) string {
	_, success := obj["successCondition"]
	_, failure := obj["failureCondition"]
	if t != reflect.TypeFor[Metric]() || success || failure {
		return ""
	}
	return "without it the metric has no condition and every measurement passes"
}
