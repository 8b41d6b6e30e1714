package argostatus_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/argostatus"
	"github.com/sluicehq/sluice/pkg/events"
)

// argoRolloutSchema is the openAPIV3Schema of Argo's own Rollout CRD, from
// the argo-rollouts module the tests require (the manifest a migrating
// cluster has installed).
func argoRolloutSchema(t *testing.T) *apiextensionsinternal.JSONSchemaProps {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-rollouts").Output()
	if err != nil {
		t.Fatalf("locating Argo's module: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "manifests", "crds", "rollout-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	var internal apiextensionsinternal.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(crd.Spec.Versions[0].Schema.OpenAPIV3Schema, &internal, nil); err != nil {
		t.Fatal(err)
	}
	return &internal
}

// TestStatusSurvivesArgosSchema: the API server keeps every field Status
// writes: its pruning by Argo's CRD schema removes nothing, at each stage.
// (The kube tier writes it to a real API server with that schema.)
func TestStatusSurvivesArgosSchema(t *testing.T) {
	schema := argoRolloutSchema(t)
	structural, err := structuralschema.NewStructural(schema)
	if err != nil {
		t.Fatal(err)
	}
	canary, bg := parse(t, canaryYAML), parse(t, blueGreenYAML)
	paused := canarySnap()
	paused.StepIndex, paused.CanaryWeight, paused.StableWeight = ptr(int32(1)), 20, 80
	paused.PauseConditions = []events.PauseCondition{{Reason: "CanaryPauseStep", StartTime: t0}}
	paused.Runs = []events.RunSummary{{Name: "web-new-2", Purpose: "background", Phase: "Running", Message: "2 measurements"}}
	aborted := canarySnap()
	aborted.Aborted, aborted.AbortedAt, aborted.StepIndex = true, t0, ptr(int32(3))
	aborted.Phase, aborted.Message = events.PhaseDegraded, "RolloutAborted: Rollout aborted update to revision 2"
	preview := bgSnap()
	preview.ActivePodHash, preview.PreviewPodHash, preview.PromoteFull, preview.RestartedAt = "blue1", "blue2", true, t0
	preview.Runs = []events.RunSummary{{Name: "shop-blue2-2-pre", Purpose: "prePromotion", Phase: "Successful"}}
	for _, tc := range []struct {
		name string
		obj  object
		data events.StatusData
	}{
		{"canary paused", canary, events.StatusData{Status: paused}},
		{"canary aborted", canary, events.StatusData{Status: aborted}},
		{"rejected", canary, events.StatusData{Status: paused, Errors: []string{"spec.replicas: must be at least 0"}}},
		{"blue/green preview", bg, events.StatusData{Status: preview}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := []argostatus.ReplicaSet{{Hash: "old", Replicas: 4, Ready: 4, Available: 4}, {Hash: "blue1", Replicas: 2, Ready: 2, Available: 2}}
			st := argostatus.Status(tc.data, argostatus.Rollout{Generation: 2, Spec: tc.obj.sluice, ReplicaSets: rs,
				Status: map[string]any{"collisionCount": int64(1)}}, t0.Add(time.Minute))
			obj := map[string]any{
				"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
				"metadata": map[string]any{"name": "web", "namespace": "shop"},
				"spec":     map[string]any{"template": map[string]any{}},
				"status":   st,
			}
			pruned := pruning.PruneWithOptions(obj, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
			if len(pruned) > 0 {
				t.Errorf("Argo's schema prunes %v", pruned)
			}
		})
	}
}
