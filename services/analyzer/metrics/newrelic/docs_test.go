package newrelic

import (
	"os"
	"strings"
	"testing"
)

// TestDocsExample: the template docs/providers/newrelic.md offers to copy
// is the one pkg/spec's testdata validates (graphite's docs_test does the
// same for its doc).
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/providers/newrelic.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../../../pkg/spec/testdata/valid-analysistemplate-newrelic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(want)+"```\n") {
		t.Error("docs/providers/newrelic.md's example differs from pkg/spec/testdata/valid-analysistemplate-newrelic.yaml; copy the file into the doc")
	}
}
