package graphite

import (
	"os"
	"strings"
	"testing"
)

// TestDocsExample: the template docs/providers/graphite.md offers to copy
// is the one pkg/spec's testdata validates.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/providers/graphite.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../../../pkg/spec/testdata/valid-analysistemplate-graphite.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(want)+"```\n") {
		t.Error("docs/providers/graphite.md's example differs from pkg/spec/testdata/valid-analysistemplate-graphite.yaml; copy the file into the doc")
	}
}
