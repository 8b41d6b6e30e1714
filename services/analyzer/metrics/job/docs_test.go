package job

import (
	"os"
	"strings"
	"testing"
)

// TestDocsExample: the template docs/providers/job.md offers to copy is
// the one pkg/spec's testdata validates (less that file's comment lines).
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/providers/job.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../../../pkg/spec/testdata/valid-analysistemplate-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	if !strings.Contains(string(doc), "```yaml\n"+strings.Join(want, "")+"```\n") {
		t.Error("docs/providers/job.md's template differs from pkg/spec/testdata/valid-analysistemplate-job.yaml; copy the file into the doc")
	}
}
