package kubetest

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/internal/rolloutobj"
)

// CreateRollout creates a minimal Rollout object named name in namespace
// (pods labelled app=name, one container web:v1), for tests that need it
// as the owner of what Sluice creates for a rollout. Argo's Rollout CRD
// must be installed (InstallCRDs).
func (cp *ControlPlane) CreateRollout(tb testing.TB, namespace, name string) *unstructured.Unstructured {
	tb.Helper()
	pods := podsOf(name)
	return cp.createArgo(tb, rolloutobj.Resource, "Rollout", namespace, name, map[string]any{"selector": pods["selector"], "template": pods["template"]})
}

// CreateExperiment creates a minimal standalone Experiment object named
// name in namespace (one template "baseline" of CreateRollout's pods), for
// tests that need it as the owner of what Sluice creates for an
// experiment. Argo's Experiment CRD must be installed.
func (cp *ControlPlane) CreateExperiment(tb testing.TB, namespace, name string) *unstructured.Unstructured {
	tb.Helper()
	baseline := podsOf(name)
	baseline["name"] = "baseline"
	return cp.createArgo(tb, rolloutobj.ExperimentResource, "Experiment", namespace, name, map[string]any{"templates": []any{baseline}})
}

// podsOf is a selector and pod template: pods labelled app=name, one
// container web:v1.
func podsOf(name string) map[string]any {
	labels := map[string]any{"app": name}
	return map[string]any{
		"selector": map[string]any{"matchLabels": labels},
		"template": map[string]any{
			"metadata": map[string]any{"labels": labels},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "web", "image": "web:v1"}}},
		},
	}
}

// createArgo creates an argoproj.io/v1alpha1 object of kind with spec.
func (cp *ControlPlane) createArgo(tb testing.TB, res schema.GroupVersionResource, kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	tb.Helper()
	u, err := cp.Dynamic.Resource(res).Namespace(namespace).Create(context.Background(), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       kind,
		"metadata":   map[string]any{"name": name},
		"spec":       spec,
	}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create %s %s/%s: %v", kind, namespace, name, err)
	}
	return u
}
