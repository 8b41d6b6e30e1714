package docs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProviderDocsHoldTheirTestedTemplate: the template each
// docs/providers/<name>.md offers to copy is the file
// pkg/spec/testdata/valid-analysistemplate-<name>.yaml (with or without its
// leading comment lines), which pkg/spec's testdata test validates; so a template
// in the docs cannot drift into one Sluice refuses.
func TestProviderDocsHoldTheirTestedTemplate(t *testing.T) {
	docs, err := filepath.Glob("../../docs/providers/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/providers/*.md (%v)", err)
	}
	for _, doc := range docs {
		name := strings.TrimSuffix(filepath.Base(doc), ".md")
		t.Run(name, func(t *testing.T) {
			holdsTemplate(t, doc, "pkg/spec/testdata/valid-analysistemplate-"+name+".yaml")
		})
	}
}

// TestJudgeDocHoldsItsTestedTemplate: docs/judge.md's template to copy is
// the judge's valid testdata, as for the providers.
func TestJudgeDocHoldsItsTestedTemplate(t *testing.T) {
	holdsTemplate(t, "../../docs/judge.md", "pkg/spec/testdata/valid-analysistemplate-judge.yaml")
}

// holdsTemplate checks that doc holds file (a path from the repository's
// root), with or without its leading comment lines, as a yaml block.
func holdsTemplate(t *testing.T, doc, file string) {
	t.Helper()
	text, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../" + file)
	if err != nil {
		t.Fatalf("%s has no tested template: %v", doc, err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
		lines = lines[1:]
	}
	holds := func(block string) bool { return strings.Contains(string(text), "```yaml\n"+block+"```\n") }
	if !holds(string(data)) && !holds(strings.Join(lines, "")) {
		t.Errorf("%s does not hold %s as a yaml block; copy the file into the doc", doc, file)
	}
}
