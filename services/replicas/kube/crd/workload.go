package crd

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Values of workloadRef.scaleDown: what happens to the referenced
// Deployment as the Rollout takes over its traffic (Argo's semantics).
const (
	// ScaleDownNever leaves the Deployment as it is (the default).
	ScaleDownNever = "never"
	// ScaleDownOnSuccess scales the Deployment to 0 once the Rollout is
	// Healthy on its current revision with every replica available.
	ScaleDownOnSuccess = "onsuccess"
	// ScaleDownProgressively lowers the Deployment by each Rollout replica
	// that becomes available.
	ScaleDownProgressively = "progressively"
)

// workloadRef is a Rollout's spec.workloadRef.
type workloadRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	ScaleDown  string `json:"scaleDown"`
}

func workloadRefOf(u *unstructured.Unstructured) (*workloadRef, error) {
	raw, ok, _ := unstructured.NestedMap(u.Object, "spec", "workloadRef")
	if !ok {
		return nil, nil
	}
	var ref workloadRef
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ref); err != nil {
		return nil, fmt.Errorf("spec.workloadRef: %w", err)
	}
	switch {
	case ref.Kind != "Deployment" || ref.APIVersion != "" && ref.APIVersion != "apps/v1":
		return nil, fmt.Errorf("spec.workloadRef: only an apps/v1 Deployment can provide the pod template, not %s %s", ref.APIVersion, ref.Kind)
	case ref.Name == "":
		return nil, fmt.Errorf("spec.workloadRef.name: Required value")
	}
	switch ref.ScaleDown {
	case "", ScaleDownNever, ScaleDownOnSuccess, ScaleDownProgressively:
	default:
		return nil, fmt.Errorf("spec.workloadRef.scaleDown: Unsupported value %q: supported values: %q, %q, %q", ref.ScaleDown, ScaleDownNever, ScaleDownOnSuccess, ScaleDownProgressively)
	}
	return &ref, nil
}

// resolve returns the manifest the orchestrator gets for a Rollout with a
// workloadRef: the Deployment's pod template in spec.template (and its
// selector when the Rollout has none), without the workloadRef.
func resolve(u *unstructured.Unstructured, dep *appsv1.Deployment) (map[string]any, error) {
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	spec = runtime.DeepCopyJSON(spec)
	delete(spec, "workloadRef")
	tmpl, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&dep.Spec.Template)
	if err != nil {
		return nil, err
	}
	delete(tmpl["metadata"].(map[string]any), "creationTimestamp")
	spec["template"] = tmpl
	if _, ok := spec["selector"]; !ok && dep.Spec.Selector != nil {
		sel, err := runtime.DefaultUnstructuredConverter.ToUnstructured(dep.Spec.Selector)
		if err != nil {
			return nil, err
		}
		spec["selector"] = sel
	}
	return spec, nil
}

// workloadGeneration is the Deployment generation last published for a
// Rollout, from status.workloadObservedGeneration (Argo's field).
func workloadGeneration(u *unstructured.Unstructured) int64 {
	s, _, _ := unstructured.NestedString(u.Object, "status", "workloadObservedGeneration")
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// reportWorkloadProblem shows why a workloadRef cannot be resolved in the
// Rollout's status, where kubectl shows it.
func (w *Watcher) reportWorkloadProblem(ctx context.Context, u *unstructured.Unstructured, problem error) error {
	msg := problem.Error()
	if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase == "Degraded" {
		if old, _, _ := unstructured.NestedString(u.Object, "status", "message"); old == msg {
			return nil
		}
	}
	w.log.Warn("Rollout workloadRef cannot be resolved", "rollout", u.GetNamespace()+"/"+u.GetName(), "error", msg)
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{"phase": "Degraded", "message": msg}})
	_, err := w.cfg.Dynamic.Resource(RolloutResource).Namespace(u.GetNamespace()).
		Patch(ctx, u.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "sluice"}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// scaleDown lowers the referenced Deployment as its scaleDown asks, judged
// from the Rollout's status. It never scales the Deployment up.
func (w *Watcher) scaleDown(ctx context.Context, u *unstructured.Unstructured, ref *workloadRef, dep *appsv1.Deployment) error {
	if ref.ScaleDown == "" || ref.ScaleDown == ScaleDownNever || dep.Spec.Replicas == nil {
		return nil
	}
	want := int64(1)
	if n, ok, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); ok {
		want = n
	}
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	available, _ := status["availableReplicas"].(int64)
	target := int64(*dep.Spec.Replicas)
	switch ref.ScaleDown {
	case ScaleDownOnSuccess:
		current, _ := status["currentPodHash"].(string)
		if status["phase"] == "Healthy" && current != "" && status["stableRS"] == current && available >= want {
			target = 0
		}
	case ScaleDownProgressively:
		target = min(target, max(0, want-available))
	}
	if target >= int64(*dep.Spec.Replicas) {
		return nil
	}
	scale := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name, Namespace: dep.Namespace, ResourceVersion: dep.ResourceVersion},
		Spec:       autoscalingv1.ScaleSpec{Replicas: int32(target)},
	}
	_, err := w.cfg.Client.AppsV1().Deployments(dep.Namespace).UpdateScale(ctx, dep.Name, scale, metav1.UpdateOptions{FieldManager: "sluice"})
	if err == nil {
		w.log.Info("scaled down the Deployment the Rollout replaces", "rollout", u.GetNamespace()+"/"+u.GetName(),
			"deployment", dep.Name, "replicas", target, "scaleDown", ref.ScaleDown)
	}
	return err
}
