package kubetest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
)

var rolloutsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// The tools work together as on a cluster that runs Argo Rollouts: Argo's
// CRDs, its controller, its plugin, and Argo CD's health and actions applied
// the way Argo CD applies them.
func TestArgoToolsDriveARolloutWithArgosController(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := cp.InstallCRDs(ctx, cp.CRDDir(kubetest.CRDsArgoRollouts)); err != nil {
		t.Fatalf("install Argo Rollouts' CRDs: %v", err)
	}
	for _, bin := range []string{cp.ArgoPlugin(), cp.ArgoController()} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatal(err)
		}
	}
	ctrl := cp.StartArgoController(t, ns)

	ro := mustUnstructured(t, `
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: "registry.example/web:v1"}]
  strategy:
    canary:
      steps: [{setWeight: 50}, {pause: {}}]
`)
	rollouts := cp.Dynamic.Resource(rolloutsGVR).Namespace(ns)
	if _, err := rollouts.Create(ctx, ro, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	get := func() *unstructured.Unstructured {
		t.Helper()
		obj, err := rollouts.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	// waitHealth waits for Argo's controller to bring the Rollout to
	// phase, and for Argo CD to judge it health.
	waitHealth := func(phase, health string) *unstructured.Unstructured {
		t.Helper()
		var obj *unstructured.Unstructured
		poll.Until(t, fmt.Sprintf("Rollout phase %s, Argo CD health %s (controller log %s)", phase, health, ctrl.Log), func() error {
			obj = get()
			got, _, _ := unstructured.NestedString(obj.Object, "status", "phase")
			status, message, err := kubetest.ArgoCDHealth(obj)
			if err != nil {
				return err
			}
			if got != phase || status != health {
				return fmt.Errorf("phase %q, health %q %q", got, status, message)
			}
			return nil
		}, poll.Context(ctx), poll.Timeout(2*time.Minute))
		return obj
	}
	waitHealth("Healthy", kubetest.ArgoCDHealthy)

	plugin := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		cmd := cp.ArgoPluginCmd(ctx, append(args, "-n", ns)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl-argo-rollouts %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	if out := plugin("get", "rollout", "web"); !strings.Contains(out, "Healthy") || !strings.Contains(out, "registry.example/web:v1") {
		t.Errorf("get rollout shows no healthy v1:\n%s", out)
	}

	// An update stops at the pause; Argo CD's resume (a status patch)
	// lets Argo's controller finish it.
	plugin("set", "image", "web", "app=registry.example/web:v2")
	waitHealth("Paused", kubetest.ArgoCDSuspended)
	if _, err := cp.RunArgoCDAction(ctx, ns, "web", "resume"); err != nil {
		t.Fatal(err)
	}
	waitHealth("Healthy", kubetest.ArgoCDHealthy)

	// Argo CD's abort writes status.abort through the status subresource,
	// as argocd-server; its restart writes spec.restartAt.
	plugin("set", "image", "web", "app=registry.example/web:v3")
	waitHealth("Paused", kubetest.ArgoCDSuspended)
	if _, err := cp.RunArgoCDAction(ctx, ns, "web", "abort"); err != nil {
		t.Fatal(err)
	}
	obj := waitHealth("Degraded", kubetest.ArgoCDDegraded)
	if !managedBy(obj, kubetest.ArgoCDManager, "status", "f:status", "f:abort") {
		t.Errorf("status.abort is not managed by %s through the status subresource: %v", kubetest.ArgoCDManager, obj.GetManagedFields())
	}
	after, err := cp.RunArgoCDAction(ctx, ns, "web", "restart")
	if err != nil {
		t.Fatal(err)
	}
	if at, _, _ := unstructured.NestedString(after.Object, "spec", "restartAt"); at == "" {
		t.Error("restart set no spec.restartAt")
	}
	if !managedBy(after, kubetest.ArgoCDManager, "", "f:spec", "f:restartAt") {
		t.Errorf("spec.restartAt is not managed by %s: %v", kubetest.ArgoCDManager, after.GetManagedFields())
	}

	ctrl.Stop()
	ctrl.Stop() // idempotent
}

// managedBy reports whether manager owns the field path (as in fieldsV1)
// through subresource ("" for the object itself).
func managedBy(obj *unstructured.Unstructured, manager, subresource string, path ...string) bool {
	for _, m := range obj.GetManagedFields() {
		if m.Manager != manager || m.Subresource != subresource || m.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(m.FieldsV1.Raw, &fields); err != nil {
			continue
		}
		if _, ok, _ := unstructured.NestedFieldNoCopy(fields, path...); ok {
			return true
		}
	}
	return false
}

func TestArgoCDActionOnAMissingRolloutFails(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := cp.InstallCRDs(ctx, cp.CRDDir(kubetest.CRDsArgoRollouts)); err != nil {
		t.Fatal(err)
	}
	_, err := cp.RunArgoCDAction(ctx, ns, "nothing", "abort")
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("err = %v, want not found", err)
	}
}
