package testbin_test

import (
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testbin"
)

// TestEveryBinaryIsBuilt: every main package of the module (but the
// builder itself) is among the binaries, so a new one is not forgotten.
func TestEveryBinaryIsBuilt(t *testing.T) {
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`, "./...")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	mains := strings.Fields(string(out))
	if len(mains) < 5 {
		t.Fatalf("go list found %d main packages: %q", len(mains), mains)
	}
	for _, pkg := range mains {
		if strings.HasSuffix(pkg, "/internal/testbin/build") {
			continue
		}
		testbin.Path(t, path.Base(pkg))
	}
}
