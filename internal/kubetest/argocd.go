package kubetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/rolloutobj"

	lua "github.com/yuin/gopher-lua"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Argo CD's built-in Lua customizations for argoproj.io/Rollout (health
// assessment and resource actions), as scripts/kube-tools.sh collects them
// from Argo CD's module into <tools>/argocd/Rollout. They run here in
// gopher-lua the way Argo CD runs them: the object as a Lua table in the
// global `obj`, numbers as Lua numbers, the result table read back through
// JSON. Health scripts get Lua's standard libraries (Argo CD opens them for
// built-in scripts); actions get only package, base, table and the "safe"
// os library (os.time and os.date), as Argo CD's API server runs them. Each
// run is bounded by one second, as in Argo CD.

// Argo CD's health status codes (its health.HealthStatusCode values).
const (
	ArgoCDHealthy     = "Healthy"
	ArgoCDProgressing = "Progressing"
	ArgoCDSuspended   = "Suspended"
	ArgoCDDegraded    = "Degraded"
	ArgoCDMissing     = "Missing"
	ArgoCDUnknown     = "Unknown"
)

// ArgoCDInvalidHealth is the message Argo CD reports, with status Unknown,
// when a health script returns a status it does not know.
const ArgoCDInvalidHealth = "Lua returned an invalid health status"

// ArgoCDManager is the field manager Argo CD's API server appears as in
// managedFields when it applies a resource action: it sets no field manager,
// so the API server takes the first word of its User-Agent ("argocd-server/<version> ...").
const ArgoCDManager = "argocd-server"

var rolloutGVR = rolloutobj.Resource

// ArgoCDHealth runs Argo CD's health.lua for obj (an argoproj.io Rollout)
// and returns the health status (ArgoCDHealthy, ...) and message Argo CD
// would show. A script that returns nothing gives "", "". err is for a
// script that fails or an object Argo CD has no health script for here.
// The scripts come from the tools directory ($SLUICE_KUBE_TOOLS, or built).
func ArgoCDHealth(obj *unstructured.Unstructured) (status, message string, err error) {
	script, err := argoCDScript(obj, "health.lua")
	if err != nil {
		return "", "", err
	}
	ret, err := runArgoCDLua(obj, script, true)
	if err != nil {
		return "", "", fmt.Errorf("kubetest: Argo CD health of %s: %w", obj.GetName(), err)
	}
	switch ret := ret.(type) {
	case nil:
		return "", "", nil
	case []any:
		// An empty Lua table reads back as an array; Argo CD takes it as
		// an empty health status.
		if len(ret) == 0 {
			return "", "", nil
		}
		return "", "", fmt.Errorf("kubetest: Argo CD health of %s: the script returned a list", obj.GetName())
	case map[string]any:
		status, _ = ret["status"].(string)
		message, _ = ret["message"].(string)
		switch status {
		case ArgoCDHealthy, ArgoCDProgressing, ArgoCDSuspended, ArgoCDDegraded, ArgoCDMissing, ArgoCDUnknown:
			return status, message, nil
		}
		return ArgoCDUnknown, ArgoCDInvalidHealth, nil
	default:
		return "", "", fmt.Errorf("kubetest: Argo CD health of %s: the script returned %T, not a table", obj.GetName(), ret)
	}
}

// ArgoCDActionInfo is one resource action as Argo CD's discovery script
// offers it for an object.
type ArgoCDActionInfo struct {
	Name        string
	Disabled    bool
	DisplayName string
}

// ArgoCDActions runs Argo CD's actions/discovery.lua for obj and returns
// the actions it offers, sorted by name, each with whether it is disabled
// (greyed out in Argo CD's UI).
func ArgoCDActions(obj *unstructured.Unstructured) ([]ArgoCDActionInfo, error) {
	script, err := argoCDScript(obj, filepath.Join("actions", "discovery.lua"))
	if err != nil {
		return nil, err
	}
	ret, err := runArgoCDLua(obj, script, false)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action discovery for %s: %w", obj.GetName(), err)
	}
	actions, ok := ret.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("kubetest: Argo CD action discovery for %s: the script returned %T, not a table of actions", obj.GetName(), ret)
	}
	var infos []ArgoCDActionInfo
	for name, v := range actions {
		info := ArgoCDActionInfo{Name: name}
		if m, ok := v.(map[string]any); ok {
			info.Disabled, _ = m["disabled"].(bool)
			info.DisplayName, _ = m["displayName"].(string)
		}
		infos = append(infos, info)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos, nil
}

// ArgoCDAction runs Argo CD's resource action (e.g. "resume", "abort",
// "retry", "promote-full", "restart", "pause", "skip-current-step") on a
// copy of obj and returns the object the script produces, with empty
// objects the Lua round trip turned into empty lists restored as Argo CD
// does. obj is not changed. An unknown action is an error naming the known
// ones. ApplyArgoCDAction applies the result the way Argo CD does.
func ArgoCDAction(obj *unstructured.Unstructured, action string) (*unstructured.Unstructured, error) {
	script, err := argoCDScript(obj, filepath.Join("actions", action, "action.lua"))
	if errors.Is(err, os.ErrNotExist) {
		dir, _ := ArgoCDScriptsDir(obj.GetKind())
		known, _ := filepath.Glob(filepath.Join(dir, "actions", "*", "action.lua"))
		names := make([]string, 0, len(known))
		for _, k := range known {
			names = append(names, filepath.Base(filepath.Dir(k)))
		}
		return nil, fmt.Errorf("kubetest: Argo CD has no action %q for %s (it has %s): %w",
			action, obj.GetKind(), strings.Join(names, ", "), err)
	}
	if err != nil {
		return nil, err
	}
	ret, err := runArgoCDLua(obj, script, false)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action %s on %s: %w", action, obj.GetName(), err)
	}
	m, ok := ret.(map[string]any)
	if !ok {
		// A list is Argo CD's newer form (resources to patch or create);
		// no Rollout action returns one.
		return nil, fmt.Errorf("kubetest: Argo CD action %s on %s returned %T, not the object", action, obj.GetName(), ret)
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action %s on %s: %w", action, obj.GetName(), err)
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action %s on %s: the result is not an object: %w", action, obj.GetName(), err)
	}
	restoreEmptyObjects(out.Object, obj.Object)
	return out, nil
}

// RunArgoCDAction does what Argo CD's "run resource action" does to the
// Rollout namespace/name on this control plane: reads the live object, runs
// the action (ArgoCDAction) and applies the result (ApplyArgoCDAction). It
// returns the object as the API server has it afterwards.
func (cp *ControlPlane) RunArgoCDAction(ctx context.Context, namespace, name, action string) (*unstructured.Unstructured, error) {
	live, err := cp.Dynamic.Resource(rolloutGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action %s: %w", action, err)
	}
	newObj, err := ArgoCDAction(live, action)
	if err != nil {
		return nil, err
	}
	return cp.ApplyArgoCDAction(ctx, live, newObj)
}

// ApplyArgoCDAction applies an action's result to the cluster as Argo CD's
// API server does: a JSON merge patch from live to newObj; when it changes
// status, the whole patch goes to the status subresource first (falling
// back to one patch when there is none) and the rest to the object. The
// requests carry Argo CD's User-Agent and no field manager, so managedFields
// name ArgoCDManager. It returns the object after the last patch (live when
// nothing changed).
func (cp *ControlPlane) ApplyArgoCDAction(ctx context.Context, live, newObj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	liveJSON, err := json.Marshal(live.Object)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action: %w", err)
	}
	newJSON, err := json.Marshal(newObj.Object)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action: %w", err)
	}
	patch, err := jsonpatch.CreateMergePatch(liveJSON, newJSON)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action: merge patch: %w", err)
	}
	if string(patch) == "{}" {
		return live, nil
	}
	nonStatus, status, err := splitStatusPatch(patch)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD action: %w", err)
	}
	gvk := live.GroupVersionKind()
	if gvk.Group != rolloutGVR.Group || gvk.Kind != "Rollout" {
		return nil, fmt.Errorf("kubetest: Argo CD action: only argoproj.io Rollouts are supported here, not %s", gvk)
	}
	gvr := rolloutGVR.GroupResource().WithVersion(gvk.Version)
	client, err := argoCDClient(cp.Config)
	if err != nil {
		return nil, err
	}
	res := client.Resource(gvr).Namespace(live.GetNamespace())
	var out *unstructured.Unstructured
	if status != nil {
		out, err = res.Patch(ctx, live.GetName(), types.MergePatchType, patch, metav1.PatchOptions{}, "status")
		switch {
		case err == nil:
			patch = nonStatus
		case apierrors.IsNotFound(err): // no status subresource: one patch does it all
		default:
			return nil, fmt.Errorf("kubetest: Argo CD action: patch status of %s: %w", live.GetName(), err)
		}
	}
	if patch != nil {
		out, err = res.Patch(ctx, live.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return nil, fmt.Errorf("kubetest: Argo CD action: patch %s: %w", live.GetName(), err)
		}
	}
	return out, nil
}

// argoCDClient is a dynamic client that identifies as Argo CD's API server.
func argoCDClient(config *rest.Config) (dynamic.Interface, error) {
	c := rest.CopyConfig(config)
	c.UserAgent = ArgoCDManager + "/kubetest (linux/amd64)"
	client, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kubetest: Argo CD client: %w", err)
	}
	return client, nil
}

// splitStatusPatch separates a merge patch's status from the rest; either
// is nil when absent.
func splitStatusPatch(patch []byte) (nonStatus, status []byte, err error) {
	var obj map[string]any
	if err := json.Unmarshal(patch, &obj); err != nil {
		return nil, nil, err
	}
	s, ok := obj["status"]
	if !ok {
		return patch, nil, nil
	}
	if status, err = json.Marshal(map[string]any{"status": s}); err != nil {
		return nil, nil, err
	}
	delete(obj, "status")
	if len(obj) > 0 {
		if nonStatus, err = json.Marshal(obj); err != nil {
			return nil, nil, err
		}
	}
	return nonStatus, status, nil
}

// ArgoCDScriptsDir returns the directory of Argo CD's customizations for
// kind (e.g. "Rollout") in the tools directory ($SLUICE_KUBE_TOOLS, or
// built by scripts/kube-tools.sh). Tests read Argo CD's own test cases
// (health_test.yaml, actions/action_test.yaml and their testdata) there.
func ArgoCDScriptsDir(kind string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), SharedStartTimeout)
	defer cancel()
	tools, err := FindTools(ctx)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(tools, "argocd", kind)
	if _, err := os.Stat(filepath.Join(dir, "health.lua")); err != nil {
		return "", fmt.Errorf("kubetest: %w: no Argo CD Lua scripts for %s in %s (%v); rebuild the tools with `make kube-tools`",
			ErrNoTools, kind, tools, err)
	}
	return dir, nil
}

// argoCDScript reads one of Argo CD's scripts for obj's kind.
func argoCDScript(obj *unstructured.Unstructured, name string) (string, error) {
	gvk := obj.GroupVersionKind()
	if gvk.Group != rolloutGVR.Group || gvk.Kind == "" {
		return "", fmt.Errorf("kubetest: Argo CD scripts are collected only for argoproj.io kinds, not %q", gvk)
	}
	dir, err := ArgoCDScriptsDir(gvk.Kind)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("kubetest: Argo CD script: %w", err)
	}
	return string(data), nil
}

// runArgoCDLua runs script with obj in the global `obj` and returns the
// value it returns, converted as Argo CD's JSON encoding of Lua values does.
func runArgoCDLua(obj *unstructured.Unstructured, script string, openLibs bool) (any, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	if err := openSafeOS(L, openLibs); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("actionParams", L.NewTable())
	L.SetGlobal("obj", toLua(L, obj.Object))
	if err := L.DoString(script); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
			return nil, apiErr
		}
		return nil, err
	}
	return fromLua(L.Get(-1), map[*lua.LTable]bool{})
}

// openSafeOS gives scripts os.time and os.date (Argo CD's "safe" os
// library, which is gopher-lua's implementation of the two). With the
// standard libraries open, the rest of os stays, as in Argo CD.
func openSafeOS(L *lua.LState, full bool) error {
	if full {
		return nil // the standard os library is already open
	}
	scratch := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer scratch.Close()
	if err := scratch.CallByParam(lua.P{Fn: scratch.NewFunction(lua.OpenOs), NRet: 1, Protect: true}, lua.LString(lua.OsLibName)); err != nil {
		return err
	}
	osLib, ok := scratch.Get(-1).(*lua.LTable)
	if !ok {
		return errors.New("gopher-lua's os library did not open")
	}
	safe := L.NewTable()
	for _, name := range []string{"time", "date"} {
		fn, ok := osLib.RawGetString(name).(*lua.LFunction)
		if !ok || fn.GFunction == nil {
			return fmt.Errorf("gopher-lua's os.%s is missing", name)
		}
		safe.RawSetString(name, L.NewFunction(fn.GFunction))
	}
	L.SetGlobal(lua.OsLibName, safe)
	loaded := L.GetField(L.Get(lua.RegistryIndex), "_LOADED")
	L.SetField(loaded, lua.OsLibName, safe)
	return nil
}

// toLua converts a decoded JSON/unstructured value as Argo CD does: json
// numbers of any Go type become Lua numbers, a json.Number a string, and
// anything else nil.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		t := L.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(L, item))
		}
		return t
	default:
		return lua.LNil
	}
}

// fromLua converts a Lua value back as Argo CD's JSON encoding does: an
// empty table is an empty list, a table keyed 1..n a list, a table keyed by
// strings an object; mixed or sparse keys, cycles and functions are errors.
func fromLua(v lua.LValue, seen map[*lua.LTable]bool) (any, error) {
	switch v := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LTable:
		if seen[v] {
			return nil, errors.New("the result nests a table in itself")
		}
		seen[v] = true
		defer delete(seen, v)
		key, value := v.Next(lua.LNil)
		switch key.Type() {
		case lua.LTNil:
			return []any{}, nil
		case lua.LTNumber:
			var list []any
			for want := lua.LNumber(1); key != lua.LNil; want++ {
				if n, ok := key.(lua.LNumber); !ok || n != want {
					return nil, errors.New("the result has a table with sparse or mixed keys")
				}
				item, err := fromLua(value, seen)
				if err != nil {
					return nil, err
				}
				list = append(list, item)
				key, value = v.Next(key)
			}
			return list, nil
		case lua.LTString:
			obj := map[string]any{}
			for key != lua.LNil {
				s, ok := key.(lua.LString)
				if !ok {
					return nil, errors.New("the result has a table with mixed keys")
				}
				item, err := fromLua(value, seen)
				if err != nil {
					return nil, err
				}
				obj[string(s)] = item
				key, value = v.Next(key)
			}
			return obj, nil
		default:
			return nil, fmt.Errorf("the result has a table keyed by %s", key.Type())
		}
	default:
		return nil, fmt.Errorf("the result holds a %s", v.Type())
	}
}

// restoreEmptyObjects undoes what the Lua round trip does to empty objects
// (they come back as empty lists) wherever the original had an object, as
// Argo CD does before patching.
func restoreEmptyObjects(out, orig map[string]any) {
	for k, was := range orig {
		switch now := out[k].(type) {
		case map[string]any:
			if was, ok := was.(map[string]any); ok {
				restoreEmptyObjects(now, was)
			}
		case []any:
			switch was := was.(type) {
			case map[string]any:
				if len(now) == 0 {
					out[k] = map[string]any{}
				}
			case []any:
				restoreEmptyInList(now, was)
			}
		}
	}
}

func restoreEmptyInList(out, orig []any) {
	for i := range out {
		if i >= len(orig) {
			return
		}
		switch now := out[i].(type) {
		case map[string]any:
			if was, ok := orig[i].(map[string]any); ok {
				restoreEmptyObjects(now, was)
			}
		case []any:
			if was, ok := orig[i].([]any); ok {
				restoreEmptyInList(now, was)
			}
		}
	}
}
