package influxdb

import (
	"os"
	"strings"
	"testing"
)

// TestDocsExample: the template docs/providers/influxdb.md offers to copy
// is the one pkg/spec's testdata validates.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/providers/influxdb.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../../../pkg/spec/testdata/valid-analysistemplate-influxdb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+string(want)+"```\n") {
		t.Error("docs/providers/influxdb.md's example differs from pkg/spec/testdata/valid-analysistemplate-influxdb.yaml; copy the file into the doc")
	}
}
