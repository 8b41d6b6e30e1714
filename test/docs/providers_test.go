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
			assertHoldsTestdata(t, "docs/providers/"+name+".md", "pkg/spec/testdata/valid-analysistemplate-"+name+".yaml")
		})
	}
}

// TestExperimentsDocHoldsItsTestedExample: the rollout, the standalone
// Experiment and the templates docs/experiments.md offers to copy are
// testdata files that pkg/spec validates.
func TestExperimentsDocHoldsItsTestedExample(t *testing.T) {
	assertHoldsTestdata(t, "docs/experiments.md", "pkg/spec/testdata/valid-rollout-experiment-example.yaml")
	assertHoldsTestdata(t, "docs/experiments.md", "pkg/spec/testdata/valid-experiment-example.yaml")
}

// TestJudgeDocHoldsItsTestedTemplate: docs/judge.md's template to copy is
// the judge's valid testdata, as for the providers.
func TestJudgeDocHoldsItsTestedTemplate(t *testing.T) {
	assertHoldsTestdata(t, "docs/judge.md", "pkg/spec/testdata/valid-analysistemplate-judge.yaml")
}

// assertHoldsTestdata checks that doc (a path from the repository's root)
// holds file as a yaml block, with or without the file's leading comment
// lines.
func assertHoldsTestdata(t *testing.T, doc, file string) {
	t.Helper()
	text, err := os.ReadFile("../../" + doc)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../" + file)
	if err != nil {
		t.Fatalf("%s has no tested file: %v", doc, err)
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
