package kubetest

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluicehq/sluice/internal/rolloutobj"
)

// CreateRollout creates a minimal Rollout object named name in namespace
// (pods labelled app=name, one container web:v1), for tests that need it
// as the owner of what Sluice creates for a rollout. Argo's Rollout CRD
// must be installed (InstallCRDs).
func (cp *ControlPlane) CreateRollout(tb testing.TB, namespace, name string) *unstructured.Unstructured {
	tb.Helper()
	labels := map[string]any{"app": name}
	ro, err := cp.Dynamic.Resource(rolloutobj.Resource).Namespace(namespace).Create(context.Background(), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Rollout",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec":     map[string]any{"containers": []any{map[string]any{"name": "web", "image": "web:v1"}}},
			},
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create Rollout %s/%s: %v", namespace, name, err)
	}
	return ro
}

// CreateExperiment creates a minimal standalone Experiment object named
// name in namespace (one template "baseline", pods labelled app=name,
// container web:v1), for tests that need it as the owner of what Sluice
// creates for an experiment. Argo's Experiment CRD must be installed.
func (cp *ControlPlane) CreateExperiment(tb testing.TB, namespace, name string) *unstructured.Unstructured {
	tb.Helper()
	labels := map[string]any{"app": name}
	ex, err := cp.Dynamic.Resource(rolloutobj.ExperimentResource).Namespace(namespace).Create(context.Background(), &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Experiment",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"templates": []any{map[string]any{
				"name":     "baseline",
				"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec":     map[string]any{"containers": []any{map[string]any{"name": "web", "image": "web:v1"}}},
				},
			}},
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		tb.Fatalf("create Experiment %s/%s: %v", namespace, name, err)
	}
	return ex
}
