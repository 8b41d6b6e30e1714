package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sluicehq/sluice/services/gateway/auth"
)

// runIn runs the CLI with stdin and returns its exit code and output.
func runIn(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	code := exitOK
	if err := root.ExecuteContext(context.Background()); err != nil {
		code = exitFail
		if _, ok := err.(usageError); ok {
			code = exitUsage
		}
		errb.WriteString(err.Error())
	}
	return code, out.String(), errb.String()
}

func TestAuthHashPassword(t *testing.T) {
	code, out, _ := runIn(t, "correct horse\n", "auth", "hash-password")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	h := strings.TrimSpace(out)
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")) != nil {
		t.Errorf("%q is not the bcrypt hash of the line read (without its newline)", h)
	}
	if code, _, msg := runIn(t, "", "auth", "hash-password"); code != exitUsage || !strings.Contains(msg, "nothing on standard input") {
		t.Errorf("empty input: exit %d, %q", code, msg)
	}
}

func TestAuthHashToken(t *testing.T) {
	_, out, _ := runIn(t, "ci-token-0123456789", "auth", "hash-token")
	if got := strings.TrimSpace(out); got != "sha256:fa8989317fb3e56b1fa9fc2f0608c179cf5672309f94ead4aeaec0a7abd50aca" {
		t.Errorf("digest %q", got)
	}
	_, out, _ = runIn(t, "", "auth", "hash-token", "--generate")
	m := regexp.MustCompile(`(?m)^token: (sluice_\S{43})\nhash:  (sha256:[0-9a-f]{64})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("--generate printed %q", out)
	}
	if auth.HashToken(m[1]) != m[2] {
		t.Errorf("the printed hash is not the token's")
	}
	// The digest goes into an auth file, and the gateway takes the token.
	path := filepath.Join(t.TempDir(), "auth.yaml")
	file := "tokens: [{name: ci, hash: " + m[2] + "}]\nroles: [{role: viewer, subjects: [\"*\"], namespaces: [\"*\"]}]\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{File: path}, nil)
	if err != nil {
		t.Fatalf("the digest does not make a valid auth file: %v", err)
	}
	srv := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.PrincipalFrom(r.Context())
		io.WriteString(w, p.Actor)
	})))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Authorization", "Bearer "+m[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "token:ci" {
		t.Errorf("the gateway took the generated token as %q (status %d), want token:ci", b, resp.StatusCode)
	}
	if got := run(context.Background(), []string{"auth", "hash-token", "extra"}, io.Discard, io.Discard); got != exitUsage {
		t.Errorf("extra argument: exit %d, want %d", got, exitUsage)
	}
}
