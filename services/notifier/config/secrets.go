package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Secrets looks up the values that configuration options reference as
// $name. Lookup returns false when the source has no such key; it never
// logs or returns anything but the value.
type Secrets interface {
	Lookup(key string) (string, bool)
}

// where describes, for an error, where a source looked for a key: never
// a value.
type where interface {
	Where(key string) string
}

// Map is a Secret's data already read (a Secret manifest in the
// configuration file, or the cluster's argo-rollouts-notification-secret).
type Map map[string]string

// Lookup implements Secrets.
func (m Map) Lookup(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

// Where names the source in errors.
func (Map) Where(string) string { return "the Secret" }

// Dir is a directory holding one file per key, as a mounted Secret does.
// One trailing newline (\n or \r\n) is trimmed from a file's content, as
// `echo token > file` leaves one; any other whitespace is kept.
type Dir string

// Lookup implements Secrets. A file that exists but cannot be read is
// treated as absent, and the error then says where it was looked for.
func (d Dir) Lookup(key string) (string, bool) {
	if d == "" || key == "" || strings.ContainsAny(key, `/\`) || key == "." || key == ".." {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(string(d), key))
	if err != nil {
		return "", false
	}
	s := string(b)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else {
		s = strings.TrimSuffix(s, "\n")
	}
	return s, true
}

// Where names the source in errors.
func (d Dir) Where(key string) string { return "file " + filepath.Join(string(d), key) }

// Env reads SLUICE_SECRET_<KEY> with getenv (os.Getenv, or a test's map),
// the key upper-cased and every character other than a letter or digit
// made '_': $slack-token is SLUICE_SECRET_SLACK_TOKEN.
type Env func(string) string

// EnvName is the environment variable Env reads for key.
func EnvName(key string) string {
	var b strings.Builder
	b.WriteString("SLUICE_SECRET_")
	for _, r := range strings.ToUpper(key) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Lookup implements Secrets. An empty variable is absent.
func (e Env) Lookup(key string) (string, bool) {
	if e == nil {
		return "", false
	}
	v := e(EnvName(key))
	return v, v != ""
}

// Where names the source in errors.
func (Env) Where(key string) string { return "env " + EnvName(key) }

// Chain looks a key up in each source in turn; the first that has it
// wins. Nil sources are skipped.
func Chain(sources ...Secrets) Secrets { return chain(sources) }

type chain []Secrets

func (c chain) Lookup(key string) (string, bool) {
	for _, s := range c {
		if s == nil {
			continue
		}
		if v, ok := s.Lookup(key); ok {
			return v, true
		}
	}
	return "", false
}

func (c chain) Where(key string) string {
	var ws []string
	for _, s := range c {
		if s == nil {
			continue
		}
		ws = append(ws, whereOf(s, key))
	}
	if len(ws) == 0 {
		return "no secret source"
	}
	return strings.Join(ws, ", ")
}

func whereOf(s Secrets, key string) string {
	if w, ok := s.(where); ok {
		return w.Where(key)
	}
	return "the secret source"
}

// secretRef is notifications-engine's reference syntax: $ and the key,
// anywhere inside a string value.
var secretRef = regexp.MustCompile(`\$[A-Za-z0-9_.-]+`)

// ErrSecretNotFound is wrapped (with ErrInvalid) by the error for a $name
// no secret source has.
var ErrSecretNotFound = errors.New("secret not found")

// resolve replaces every $name in s. It returns the keys no source has;
// the caller reports them with the option's path.
func resolve(s string, secrets Secrets) (string, []string) {
	var missing []string
	out := secretRef.ReplaceAllStringFunc(s, func(ref string) string {
		key := ref[1:]
		if secrets != nil {
			if v, ok := secrets.Lookup(key); ok {
				return v
			}
		}
		missing = append(missing, key)
		return ref
	})
	return out, missing
}
