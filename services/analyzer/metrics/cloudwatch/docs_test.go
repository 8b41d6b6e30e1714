package cloudwatch_test

import (
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/spec"
)

// TestDocTemplate keeps the template in docs/providers/cloudwatch.md the
// same as pkg/spec/testdata/valid-analysistemplate-cloudwatch.yaml (which
// spec's testdata test validates) and lints it here too.
func TestDocTemplate(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/providers/cloudwatch.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "## Template\n\n```yaml\n")
	if !ok {
		t.Fatal("docs/providers/cloudwatch.md has no ## Template yaml block")
	}
	block, _, ok := strings.Cut(after, "```")
	if !ok {
		t.Fatal("the template block is not closed")
	}
	data, err := os.ReadFile("../../../../pkg/spec/testdata/valid-analysistemplate-cloudwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var body []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if len(body) == 0 && strings.HasPrefix(line, "#") {
			continue
		}
		body = append(body, line)
	}
	if got := strings.Join(body, ""); got != block {
		t.Errorf("the documented template differs from the testdata file:\n--- doc\n%s\n--- testdata\n%s", block, got)
	}
	if r := spec.Lint([]byte(block)); len(r.Findings) > 0 {
		t.Errorf("the documented template does not lint:\n%s", r)
	}
}
