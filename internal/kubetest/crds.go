package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The CRD sets collected by scripts/kube-tools.sh, for CRDDir.
const (
	// CRDsGatewayAPI is the Gateway API standard channel (HTTPRoute,
	// Gateway, GatewayClass, GRPCRoute, ReferenceGrant, ...).
	CRDsGatewayAPI = "gateway-api"
	// CRDsIstio is Istio's VirtualService and DestinationRule.
	CRDsIstio = "istio"
	// CRDsSMI is SMI's TrafficSplit, versions v1alpha1 to v1alpha3.
	CRDsSMI = "smi"
	// CRDsArgoRollouts is Argo Rollouts' own CRDs as its release ships them
	// (Rollout, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate,
	// Experiment): the schemas a migrating cluster has, which prune every
	// status field Argo does not define. deploy/crds holds the same files.
	CRDsArgoRollouts = "argo-rollouts"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// CRDDir returns the directory of one of the cached CRD sets (CRDsGatewayAPI,
// CRDsIstio, CRDsSMI, CRDsArgoRollouts), to pass to InstallCRDs.
func (cp *ControlPlane) CRDDir(name string) string {
	return filepath.Join(cp.ToolsDir, "crds", name)
}

// InstallCRDs applies the CustomResourceDefinitions in the given YAML or
// JSON files, or in the .yaml/.yml/.json files of the given directories
// (not recursively), and returns once every one is Established and its
// served versions answer a list. It is idempotent (server-side apply), so
// tests sharing a control plane may each install what they need. A
// document that is not an apiextensions.k8s.io/v1 CustomResourceDefinition
// is an error, and nothing is applied.
func (cp *ControlPlane) InstallCRDs(ctx context.Context, paths ...string) error {
	var crds []*unstructured.Unstructured
	for _, path := range paths {
		files, err := manifestFiles(path)
		if err != nil {
			return fmt.Errorf("kubetest: install CRDs: %w", err)
		}
		for _, f := range files {
			objs, err := readCRDs(f)
			if err != nil {
				return fmt.Errorf("kubetest: install CRDs: %w", err)
			}
			crds = append(crds, objs...)
		}
	}
	if len(crds) == 0 {
		return fmt.Errorf("kubetest: install CRDs: no CustomResourceDefinition in %s", strings.Join(paths, ", "))
	}
	for _, crd := range crds {
		_, err := cp.Dynamic.Resource(crdResource).Apply(ctx, crd.GetName(), crd,
			metav1.ApplyOptions{FieldManager: "kubetest", Force: true})
		if err != nil {
			return fmt.Errorf("kubetest: apply CRD %s: %w", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		if err := cp.waitCRD(ctx, crd); err != nil {
			return err
		}
	}
	return nil
}

// waitCRD waits for crd to be Established and each served version to list.
func (cp *ControlPlane) waitCRD(ctx context.Context, crd *unstructured.Unstructured) error {
	name := crd.GetName()
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	var served []schema.GroupVersionResource
	for _, v := range versions {
		v, _ := v.(map[string]any)
		if s, _ := v["served"].(bool); s {
			served = append(served, schema.GroupVersionResource{Group: group, Version: fmt.Sprint(v["name"]), Resource: plural})
		}
	}
	check := func(ctx context.Context) error {
		got, err := cp.Dynamic.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !established(got) {
			return errors.New("not Established")
		}
		for _, gvr := range served {
			if _, err := cp.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
				return fmt.Errorf("list %s: %w", gvr, err)
			}
		}
		return nil
	}
	// Any error is retried: right after the apply, the new resource may not
	// be served yet. The cap keeps a caller without a deadline from waiting
	// forever on one that never will be.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		last := check(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: CRD %s not ready: %w (last: %v)", name, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		c, _ := c.(map[string]any)
		if c["type"] == "Established" && c["status"] == "True" {
			return true
		}
	}
	return false
}

// manifestFiles expands path: a file as is, a directory to its manifests.
func manifestFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", path)
	}
	return files, nil
}

// readCRDs decodes every document of a multi-document YAML or JSON file.
func readCRDs(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64*1024)
	var crds []*unstructured.Unstructured
	for i := 0; ; i++ {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return crds, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if len(obj) == 0 { // an empty document, e.g. after a leading ---
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetAPIVersion() != "apiextensions.k8s.io/v1" || u.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s: document %d is a %s %s, not an apiextensions.k8s.io/v1 CustomResourceDefinition",
				path, i+1, u.GetAPIVersion(), u.GetKind())
		}
		crds = append(crds, u)
	}
}
