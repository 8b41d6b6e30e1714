package localcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"PORT": "8080", "NAME": "web", "EMPTY": "", "DOLLAR": "$(PORT)"}
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "serve", "serve"},
		{"whole", "$(PORT)", "8080"},
		{"inside", "--listen=:$(PORT)", "--listen=:8080"},
		{"two", "$(NAME):$(PORT)", "web:8080"},
		{"adjacent", "$(NAME)$(NAME)", "webweb"},
		{"empty value", "[$(EMPTY)]", "[]"},
		{"unknown kept", "$(NOPE)", "$(NOPE)"},
		{"unknown and known", "$(NOPE)-$(NAME)", "$(NOPE)-web"},
		{"escaped", "$$(PORT)", "$(PORT)"},
		{"escaped then reference", "$$$(PORT)", "$8080"},
		{"double escape", "$$$$", "$$"},
		{"lone dollar", "$", "$"},
		{"trailing dollar", "cost$", "cost$"},
		{"dollar and letter", "$PORT", "$PORT"},
		{"shell style braces", "${PORT}", "${PORT}"},
		{"unterminated", "$(PORT", "$(PORT"},
		{"unterminated then reference", "$($(PORT)", "$($(PORT)"},
		{"empty name", "$()", "$()"},
		{"value not expanded again", "$(DOLLAR)", "$(PORT)"},
		{"utf-8 kept", "héllo $(NAME) ✓", "héllo web ✓"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Expand(tc.in, vars); got != tc.want {
				t.Errorf("Expand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "app"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/nonexistent", "PATH=" + bin}
	if got, err := LookPath("app", env, ""); err != nil || got != filepath.Join(bin, "app") {
		t.Errorf("in PATH: %q, %v", got, err)
	}
	if got, err := LookPath("./bin/app", nil, dir); err != nil || got != filepath.Join(bin, "app") {
		t.Errorf("relative to the working directory: %q, %v", got, err)
	}
	if _, err := LookPath("data", env, ""); err == nil {
		t.Error("found a file that is not executable")
	}
	if _, err := LookPath("nope", env, ""); err == nil || !strings.Contains(err.Error(), `"nope": executable file not found in PATH`) {
		t.Errorf("missing: %v", err)
	}
}
