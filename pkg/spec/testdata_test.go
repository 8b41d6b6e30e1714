package spec

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestdata lints every file under testdata/.
//
// valid-* files must produce no finding at all, and must stay valid after
// SetDefaults. invalid-* files start with comment lines that list what Lint
// must report: "# want: X" for each error and "# warning: X" for each
// warning, X being the finding's message or its whole line. Every finding
// must be wanted, and every wanted finding must be reported.
func TestTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d testdata files; the glob is probably wrong", len(files))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			wantErrs, wantWarns := expectations(data)
			report := Lint(data)
			switch {
			case strings.HasPrefix(name, "valid-"):
				if len(wantErrs)+len(wantWarns) > 0 {
					t.Fatal("a valid- file may not declare expected findings")
				}
				if len(report.Findings) > 0 {
					t.Fatalf("Lint:\n%s", report)
				}
				assertValidAfterDefaults(t, data)
			case strings.HasPrefix(name, "invalid-"):
				if len(wantErrs) == 0 {
					t.Fatal(`an invalid- file must declare at least one "# want:" line`)
				}
				var gotErrs, gotWarns []Finding
				for _, f := range report.Findings {
					if f.Severity == SeverityWarning {
						gotWarns = append(gotWarns, f)
					} else {
						gotErrs = append(gotErrs, f)
					}
				}
				matchFindings(t, "error", gotErrs, wantErrs)
				matchFindings(t, "warning", gotWarns, wantWarns)
			default:
				t.Fatal("testdata file names start with valid- or invalid-")
			}
		})
	}
}

// expectations reads the "# want:" and "# warning:" lines of the comment
// block that starts data.
func expectations(data []byte) (errs, warnings []string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		if w, ok := strings.CutPrefix(line, "# want: "); ok {
			errs = append(errs, w)
		}
		if w, ok := strings.CutPrefix(line, "# warning: "); ok {
			warnings = append(warnings, w)
		}
	}
	return errs, warnings
}

func matchFindings(t *testing.T, what string, got []Finding, want []string) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, f := range got {
			if !used[i] && (f.Message == w || f.String() == w) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing %s: %s", what, w)
		}
	}
	for i, f := range got {
		if !used[i] {
			t.Errorf("unexpected %s: %s", what, f)
		}
	}
}

// assertValidAfterDefaults checks the contract that SetDefaults keeps a
// valid object valid: defaults are only ever values Validate accepts.
func assertValidAfterDefaults(t *testing.T, data []byte) {
	t.Helper()
	docs, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		d.Object.SetDefaults()
		if errs := d.Object.Validate(); len(errs) > 0 {
			t.Errorf("%s after SetDefaults: %v", Describe(d.Object), errs)
		}
	}
}
