package trigger

import (
	"encoding/json"
	"strconv"
	"time"

	kjson "k8s.io/apimachinery/pkg/util/json"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// RevisionAnnotation is where Argo keeps a Rollout's revision number.
const RevisionAnnotation = "rollout.argoproj.io/revision"

// Rollout returns the object templates see as .rollout (and conditions as
// rollout): m as Argo's Rollout (apiVersion argoproj.io/v1alpha1, kind
// Rollout, metadata with the annotation rollout.argoproj.io/revision set
// to the event's revision, spec with spec.template) and status as Argo's
// controller writes it after data's snapshot (argostatus.Status: the same
// status the Rollout object shows, the snapshot's replica counts, the
// conditions as of this event alone). m may be nil (the rollout was deleted or never
// accepted): metadata then has only name and namespace. Numbers are int64
// where whole, as in Argo's unstructured object, so {{.rollout.spec.replicas}}
// prints 4.
func Rollout(m *spec.Rollout, data events.StatusData) map[string]any {
	snap := data.Status
	obj := map[string]any{}
	if m != nil {
		obj = toMap(m)
	}
	obj["apiVersion"] = "argoproj.io/v1alpha1"
	obj["kind"] = "Rollout"
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	if meta["name"] == nil || meta["name"] == "" {
		meta["name"] = snap.Name
	}
	if meta["namespace"] == nil || meta["namespace"] == "" {
		meta["namespace"] = snap.Namespace
	}
	if snap.Revision > 0 {
		ann, _ := meta["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
			meta["annotations"] = ann
		}
		ann[RevisionAnnotation] = strconv.FormatInt(snap.Revision, 10)
	}
	if _, ok := obj["spec"]; !ok {
		obj["spec"] = map[string]any{}
	}
	obj["status"] = argostatus.Status(data, argostatus.Rollout{Spec: m}, snap.UpdatedAt)
	return obj
}

// Vars returns what templates and conditions see:
//   - rollout: Rollout's object;
//   - context: the configuration's context map;
//   - sluice: {event: {id, type, actor, reason, time}, step, analysis,
//     measurement, command, dashboardURL}: the event itself, its step,
//     analysis summary, measurement and refused command when it has
//     them (absent otherwise), and the dashboard's URL of the rollout
//     when dashboardURL is set ("<dashboardURL>/#/ns/<ns>/<name>", the
//     gateway dashboard's rollout page).
func Vars(rollout map[string]any, ev events.Event, data events.StatusData, context map[string]string, dashboardURL string) map[string]any {
	ctx := map[string]any{}
	for k, v := range context {
		ctx[k] = v
	}
	sl := map[string]any{
		"event": map[string]any{
			"id":     ev.ID(),
			"type":   ev.Type(),
			"actor":  events.Extension(ev, events.ExtActor),
			"reason": data.Reason,
			"time":   ev.Time().UTC().Format(time.RFC3339),
		},
		"dashboardURL": "",
	}
	if data.Step != nil {
		sl["step"] = toMap(data.Step)
	}
	if data.Analysis != nil {
		sl["analysis"] = toMap(data.Analysis)
	}
	if data.Measurement != nil {
		sl["measurement"] = toMap(data.Measurement)
	}
	if data.Command != nil {
		sl["command"] = toMap(data.Command)
	}
	if dashboardURL != "" {
		sl["dashboardURL"] = DashboardURL(dashboardURL, events.Ref{Namespace: data.Status.Namespace, Name: data.Status.Name})
	}
	return map[string]any{"rollout": rollout, "context": ctx, "sluice": sl}
}

// DashboardURL is the gateway dashboard's page of r, the dashboard served
// at base.
func DashboardURL(base string, r events.Ref) string {
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return base + "/#/ns/" + r.Namespace + "/" + r.Name
}

// toMap is v's JSON as generic data, whole numbers as int64 (as
// Kubernetes' unstructured objects have them).
func toMap(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return map[string]any{}
	}
	var out map[string]any
	if err := kjson.Unmarshal(b, &out); err != nil || out == nil {
		return map[string]any{}
	}
	return out
}
