package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthFiles(t *testing.T) {
	t.Setenv("SLUICE_TEST_TOKEN", "env-token-0123456789")
	t.Setenv("SLUICE_TEST_OIDC_SECRET", "oidc-secret")
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	files = append(files, "../../../examples/gateway-auth.yaml")
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			f, err := LoadFile(path)
			if !strings.HasPrefix(name, "invalid-") {
				if err != nil {
					t.Fatalf("LoadFile: %v", err)
				}
				if f.Validate() != nil {
					t.Fatalf("a loaded file does not validate again: %v", f.Validate())
				}
				return
			}
			data, _ := os.ReadFile(path)
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s does not start with `# want: <field path>: <message>`", path)
			}
			if err == nil {
				t.Fatalf("LoadFile accepted it; want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
		})
	}
}

// Every problem is reported at once, so one edit fixes the file.
func TestAuthFileReportsEveryProblem(t *testing.T) {
	_, err := ParseFile([]byte(`
users: [{name: "", passwordHash: x}]
roles: [{role: owner, subjects: [], namespaces: ["*"]}]
sessionTTL: 1s
`), ".")
	for _, want := range []string{
		"users[0].name: required",
		"users[0].passwordHash: not a bcrypt hash",
		`roles[0].role: unknown role "owner"`,
		"roles[0].subjects: required",
		"sessionTTL: 1s: want at least 1m",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
}

func TestDefaultsOfTheFile(t *testing.T) {
	t.Setenv("SLUICE_TEST_TOKEN", "env-token-0123456789")
	f, err := LoadFile("testdata/valid-tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Tokens[1].Actor; got != "token:from-env" {
		t.Errorf("default actor = %q, want token:from-env", got)
	}
	if got := f.sessionTTL.String(); got != "12h0m0s" {
		t.Errorf("default sessionTTL = %s, want 12h", got)
	}
	t.Setenv("SLUICE_TEST_OIDC_SECRET", "s")
	f, err = LoadFile("testdata/valid-oidc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := f.OIDC
	if o.UsernameClaim != "email" || o.GroupsClaim != "roles" || strings.Join(o.Scopes, " ") != "openid email profile" || o.Name != "accounts.example.com" || o.secret != "s" {
		t.Errorf("OIDC defaults: %+v", o)
	}
}
