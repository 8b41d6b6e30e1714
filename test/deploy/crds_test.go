package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/kubetest"
)

// TestCRDsAreArgosVerbatim: deploy/crds is Argo Rollouts' CRDs byte for
// byte below the header scripts/argo-crds.sh writes, the same files
// scripts/kube-tools.sh collects from the Argo Rollouts module the tools
// pin, and kustomization.yaml lists each of them. A version bump that
// forgets to rerun scripts/argo-crds.sh fails here.
func TestCRDsAreArgosVerbatim(t *testing.T) {
	tools, err := kubetest.FindTools(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	argo := filepath.Join(tools, "crds", kubetest.CRDsArgoRollouts)
	want, err := filepath.Glob(filepath.Join(argo, "*.yaml"))
	if err != nil || len(want) == 0 {
		t.Fatalf("no Argo Rollouts CRDs in %s (%v): rebuild the tools with `make kube-tools`", argo, err)
	}
	dir := filepath.Join(repoRoot(t), "deploy", "crds")
	var listed []string
	for _, f := range crdFiles(t) {
		listed = append(listed, filepath.Base(f))
	}
	for _, path := range want {
		name := filepath.Base(path)
		if !slices.Contains(listed, name) {
			t.Errorf("deploy/crds/kustomization.yaml does not list %s", name)
		}
		upstream, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("deploy/crds lacks Argo's %s: run scripts/argo-crds.sh", name)
			continue
		}
		header, body := splitHeader(ours)
		if !strings.Contains(header, "Apache License 2.0") || !strings.Contains(header, "manifests/crds/"+name) {
			t.Errorf("deploy/crds/%s: the header does not name its source and license:\n%s", name, header)
		}
		if !bytes.Equal(body, upstream) {
			t.Errorf("deploy/crds/%s differs from Argo's (%s): run scripts/argo-crds.sh", name, path)
		}
	}
	if len(listed) != len(want) {
		t.Errorf("deploy/crds/kustomization.yaml lists %v; Argo ships %d CRD files", listed, len(want))
	}
	if _, err := os.Stat(filepath.Join(dir, "LICENSE.argo-rollouts")); err != nil {
		t.Errorf("Argo Rollouts' license is not beside its CRDs: %v", err)
	}
}

// splitHeader separates the leading comment lines from the rest.
func splitHeader(data []byte) (header string, body []byte) {
	var h strings.Builder
	for bytes.HasPrefix(data, []byte("#")) {
		line, rest, _ := bytes.Cut(data, []byte("\n"))
		h.Write(line)
		h.WriteByte('\n')
		data = rest
	}
	return h.String(), data
}
