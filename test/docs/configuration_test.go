// Package docs checks the documentation against the binaries it documents.
package docs

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testbin"
)

// serviceBinaries are built on internal/daemon; the flags all of them share
// are documented once, under the heading key sharedKey.
var serviceBinaries = []string{"sluice-orchestrator", "sluice-analyzer", "sluice-replicas", "sluice-traffic", "sluice-gateway", "sluice-notifier"}

const sharedKey = "sluice-*"

// cobraBuiltins are sluice subcommands cobra adds; they are not documented.
var cobraBuiltins = map[string]bool{"help": true, "completion": true}

var (
	flagLine = regexp.MustCompile(`^\s+(?:-[A-Za-z], )?--([a-z0-9-]+)`)
	envRef   = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)\)`)
	heading  = regexp.MustCompile("^#{2,3} .*?`([^`]+)`")
	docRow   = regexp.MustCompile("^\\|\\s*`--([a-z0-9-]+)`")
	docEnv   = regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
)

// flags maps a flag name to the environment variables its help names.
type flags map[string][]string

// TestConfigurationDocumentsEveryFlag builds every binary, reads the flags
// from its --help, and fails when docs/configuration.md misses a flag or an
// environment variable, or documents one that does not exist.
func TestConfigurationDocumentsEveryFlag(t *testing.T) {
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	checkBinaries(t, root)
	actual := actualFlags(t)
	documented := documentedFlags(t, filepath.Join(root, "docs", "configuration.md"))

	keys := map[string]bool{}
	for k := range actual {
		keys[k] = true
	}
	for k := range documented {
		keys[k] = true
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	}) {
		have, ok := actual[k]
		if !ok {
			t.Errorf("docs/configuration.md documents `%s`, which is not a binary or subcommand", k)
			continue
		}
		doc, ok := documented[k]
		if !ok {
			t.Errorf("docs/configuration.md has no section for `%s` (flags %v)", k, names(have))
			continue
		}
		for f, env := range have {
			denv, ok := doc[f]
			switch {
			case !ok:
				t.Errorf("`%s`: flag --%s is not documented", k, f)
			case !slices.Equal(sorted(env), sorted(denv)):
				t.Errorf("`%s`: flag --%s documents environment %v, the binary reads %v", k, f, denv, env)
			}
		}
		for f := range doc {
			if _, ok := have[f]; !ok {
				t.Errorf("`%s`: documented flag --%s does not exist", k, f)
			}
		}
	}
}

// checkBinaries fails when cmd/ holds a binary this test does not read
// (its flags would go unchecked), or when serviceBinaries names one that
// is gone.
func checkBinaries(t *testing.T, root string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, "cmd", e.Name(), "main.go")); !e.IsDir() || err != nil {
			continue
		}
		found[e.Name()] = true
		if e.Name() != "sluice" && !slices.Contains(serviceBinaries, e.Name()) {
			t.Errorf("cmd/%s is a binary this test does not check: add it to serviceBinaries (or teach the test its flags) and document it in docs/configuration.md", e.Name())
		}
	}
	for _, b := range append([]string{"sluice"}, serviceBinaries...) {
		if !found[b] {
			t.Errorf("there is no cmd/%s/main.go", b)
		}
	}
}

// actualFlags returns the flags of every binary and sluice subcommand, by
// documentation key: the command path, and sharedKey for the flags every
// service binary has (then left out of each binary's own set).
func actualFlags(t *testing.T) map[string]flags {
	out := map[string]flags{}
	for _, b := range serviceBinaries {
		out[b] = parseFlags(help(t, b), "")
	}
	shared := flags{}
	for f, env := range out[serviceBinaries[0]] {
		all := true
		for _, b := range serviceBinaries[1:] {
			_, ok := out[b][f]
			all = all && ok
		}
		if all {
			shared[f] = env
		}
	}
	for _, b := range serviceBinaries {
		for f := range shared {
			delete(out[b], f)
		}
	}
	out[sharedKey] = shared

	commands(t, nil, out)
	return out
}

// commands adds the flags of sluice's command path and of every
// subcommand below it, at any depth, by command path ("sluice dev").
func commands(t *testing.T, path []string, out map[string]flags) {
	text := help(t, "sluice", path...)
	out[strings.Join(append([]string{"sluice"}, path...), " ")] = parseFlags(text, "Flags:")
	for _, sub := range subcommands(text) {
		commands(t, append(slices.Clone(path), sub), out)
	}
}

func help(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testbin.Path(t, name), append(args, "--help")...)
	// Flag defaults come from the environment: keep it out of the way.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v --help: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// parseFlags reads the flag lines of a help text; with section set, only
// those of that section (cobra's "Flags:", not its "Global Flags:").
func parseFlags(text, section string) flags {
	out := flags{}
	in := section == ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if section != "" && strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			in = line == section
			continue
		}
		m := flagLine.FindStringSubmatch(line)
		if !in || m == nil || m[1] == "help" {
			continue
		}
		env := []string{}
		for _, e := range envRef.FindAllStringSubmatch(line, -1) {
			env = append(env, e[1])
		}
		out[m[1]] = env
	}
	return out
}

// subcommands lists the "Available Commands:" of a cobra help text.
func subcommands(text string) []string {
	var out []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case line == "Available Commands:":
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in:
			name := strings.Fields(line)[0]
			if !cobraBuiltins[name] {
				out = append(out, name)
			}
		}
	}
	return out
}

// documentedFlags reads docs/configuration.md: each heading (## or ###)
// whose first code span is a command path starts that command's section;
// each table row that starts with a `--flag` code span documents the flag,
// and the upper-case code spans in the row are its environment variables.
func documentedFlags(t *testing.T, path string) map[string]flags {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]flags{}
	var cur flags
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#") {
			cur = nil
			if m := heading.FindStringSubmatch(line); m != nil && strings.HasPrefix(m[1], "sluice") {
				if _, dup := out[m[1]]; dup {
					t.Errorf("docs/configuration.md: two sections for `%s`", m[1])
				}
				cur = flags{}
				out[m[1]] = cur
			}
			continue
		}
		m := docRow.FindStringSubmatch(line)
		if m == nil || cur == nil {
			continue
		}
		env := []string{}
		for _, e := range docEnv.FindAllStringSubmatch(line, -1) {
			env = append(env, e[1])
		}
		cur[m[1]] = env
	}
	return out
}

func names(f flags) []string {
	var out []string
	for k := range f {
		out = append(out, k)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
