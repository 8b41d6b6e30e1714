package kubetest_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/kubetest"
)

// Argo CD's own test cases for its Rollout scripts, shipped beside them.
type argoCDHealthCases struct {
	Tests []struct {
		InputPath    string `json:"inputPath"`
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
	} `json:"tests"`
}

type argoCDActionCases struct {
	DiscoveryTests []struct {
		InputPath string `json:"inputPath"`
		Result    []struct {
			Name        string `json:"name"`
			Disabled    bool   `json:"disabled"`
			DisplayName string `json:"displayName"`
		} `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

func argoCDDir(t *testing.T) string {
	t.Helper()
	dir, err := kubetest.ArgoCDScriptsDir("Rollout")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	obj := map[string]any{}
	readYAML(t, path, &obj)
	return &unstructured.Unstructured{Object: obj}
}

func TestArgoCDHealthMatchesArgoCDsOwnCases(t *testing.T) {
	dir := argoCDDir(t)
	var cases argoCDHealthCases
	readYAML(t, filepath.Join(dir, "health_test.yaml"), &cases)
	if len(cases.Tests) < 10 {
		t.Fatalf("health_test.yaml has %d cases; expected Argo CD's full set", len(cases.Tests))
	}
	seen := map[string]bool{}
	for _, c := range cases.Tests {
		t.Run(c.InputPath, func(t *testing.T) {
			status, message, err := kubetest.ArgoCDHealth(readObject(t, filepath.Join(dir, c.InputPath)))
			if err != nil {
				t.Fatal(err)
			}
			if status != c.HealthStatus.Status || message != c.HealthStatus.Message {
				t.Errorf("health = %q %q, Argo CD expects %q %q", status, message, c.HealthStatus.Status, c.HealthStatus.Message)
			}
		})
		seen[c.HealthStatus.Status] = true
	}
	for _, s := range []string{kubetest.ArgoCDHealthy, kubetest.ArgoCDProgressing, kubetest.ArgoCDSuspended, kubetest.ArgoCDDegraded} {
		if !seen[s] {
			t.Errorf("no case of Argo CD's expects %s", s)
		}
	}
}

func TestArgoCDActionsMatchArgoCDsOwnCases(t *testing.T) {
	dir := argoCDDir(t)
	var cases argoCDActionCases
	readYAML(t, filepath.Join(dir, "actions", "action_test.yaml"), &cases)
	if len(cases.DiscoveryTests) == 0 || len(cases.ActionTests) < 8 {
		t.Fatalf("action_test.yaml has %d discovery and %d action cases; expected Argo CD's full set",
			len(cases.DiscoveryTests), len(cases.ActionTests))
	}
	for _, c := range cases.DiscoveryTests {
		t.Run("discovery/"+c.InputPath, func(t *testing.T) {
			got, err := kubetest.ArgoCDActions(readObject(t, filepath.Join(dir, "actions", c.InputPath)))
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]kubetest.ArgoCDActionInfo{}
			for _, a := range got {
				byName[a.Name] = a
			}
			if len(got) != len(c.Result) {
				t.Errorf("got %d actions %v, Argo CD expects %d", len(got), got, len(c.Result))
			}
			for _, want := range c.Result {
				a, ok := byName[want.Name]
				if !ok || a.Disabled != want.Disabled || a.DisplayName != want.DisplayName {
					t.Errorf("action %s = %+v (found %v), Argo CD expects disabled=%v displayName=%q",
						want.Name, a, ok, want.Disabled, want.DisplayName)
				}
			}
		})
	}
	for _, c := range cases.ActionTests {
		t.Run(c.Action+"/"+c.InputPath, func(t *testing.T) {
			in := readObject(t, filepath.Join(dir, "actions", c.InputPath))
			before := in.DeepCopy()
			got, err := kubetest.ArgoCDAction(in, c.Action)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(in.Object, before.Object) {
				t.Error("the action changed its input object")
			}
			want := readObject(t, filepath.Join(dir, "actions", c.ExpectedOutputPath))
			if c.Action == "restart" {
				// Argo CD's own test drops the time the script stamps.
				at, _, _ := unstructured.NestedString(got.Object, "spec", "restartAt")
				when, err := time.Parse(time.RFC3339, at)
				if err != nil || time.Since(when) > time.Minute || time.Until(when) > time.Minute {
					t.Errorf("spec.restartAt = %q, want the current time in RFC 3339", at)
				}
				unstructured.RemoveNestedField(got.Object, "spec", "restartAt")
				unstructured.RemoveNestedField(want.Object, "spec", "restartAt")
			}
			// A field the script sets to nil is gone; Argo CD's expected
			// outputs write some of them as null.
			if g, w := jsonNormal(t, got.Object), dropNulls(jsonNormal(t, want.Object)); !reflect.DeepEqual(g, w) {
				gy, _ := yaml.Marshal(g)
				wy, _ := yaml.Marshal(w)
				t.Errorf("action result differs from Argo CD's expected output\ngot:\n%s\nwant:\n%s", gy, wy)
			}
		})
	}
}

func TestArgoCDActionUnknownNamesTheKnownOnes(t *testing.T) {
	obj := mustUnstructured(t, `
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: r, namespace: ns}
spec: {}
`)
	_, err := kubetest.ArgoCDAction(obj, "promote-half")
	if err == nil || !strings.Contains(err.Error(), `"promote-half"`) || !strings.Contains(err.Error(), "promote-full") {
		t.Fatalf("err = %v, want one naming the unknown action and the known ones", err)
	}
}

func TestArgoCDScriptsOnlyForArgoKinds(t *testing.T) {
	obj := mustUnstructured(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: ns}
`)
	if _, _, err := kubetest.ArgoCDHealth(obj); err == nil || !strings.Contains(err.Error(), "apps/v1") {
		t.Fatalf("err = %v, want one naming the kind that has no script here", err)
	}
}

// dropNulls removes object members whose value is null.
func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil {
				delete(v, k)
				continue
			}
			v[k] = dropNulls(x)
		}
	case []any:
		for i, x := range v {
			v[i] = dropNulls(x)
		}
	}
	return v
}
