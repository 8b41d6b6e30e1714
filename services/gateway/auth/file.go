package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// File is the auth file: who may sign in or call with a token, and the
// roles each caller has per namespace. docs/gateway.md ("Who may do
// what") is its reference; examples/gateway-auth.yaml is an example.
type File struct {
	// Users are local users who sign in with a password (sluice dev, small
	// installations). Their actor is "user:<name>".
	Users []User `json:"users,omitempty"`
	// Tokens are bearer tokens for CI and scripts.
	Tokens []Token `json:"tokens,omitempty"`
	// OIDC, when set, lets people sign in with an OpenID Connect provider.
	OIDC *OIDC `json:"oidc,omitempty"`
	// Roles bind subjects to a role in namespaces.
	Roles Bindings `json:"roles,omitempty"`
	// SessionTTL is how long a sign-in lasts (a Go duration, default 12h).
	SessionTTL string `json:"sessionTTL,omitempty"`

	sessionTTL time.Duration
}

// User is a local user.
type User struct {
	Name string `json:"name"`
	// PasswordHash is the password's bcrypt hash (`sluice auth
	// hash-password`).
	PasswordHash string `json:"passwordHash"`
	// Groups are matched by role bindings as "group:<name>".
	Groups []string `json:"groups,omitempty"`
}

// Token is a bearer token. The file holds its SHA-256 digest, or says
// where to read the token from, never the token itself.
type Token struct {
	Name string `json:"name"`
	// Actor is who calls with the token; default "token:<name>".
	Actor string `json:"actor,omitempty"`
	// Hash is "sha256:<64 hex digits>" (`sluice auth hash-token`).
	Hash string `json:"hash,omitempty"`
	// ValueFrom reads the token itself from an environment variable or a
	// file (a mounted Secret), instead of Hash.
	ValueFrom *ValueFrom `json:"valueFrom,omitempty"`

	digest [sha256.Size]byte
}

// ValueFrom says where a secret is: exactly one of Env and File.
type ValueFrom struct {
	// Env is an environment variable's name.
	Env string `json:"env,omitempty"`
	// File is a file's path, relative to the auth file's directory; its
	// content without surrounding whitespace is the value.
	File string `json:"file,omitempty"`
}

// OIDC configures sign-in with an OpenID Connect provider
// (authorization-code flow with PKCE, state and nonce).
type OIDC struct {
	// Issuer is the provider's issuer URL (https, or http on loopback).
	Issuer string `json:"issuer"`
	// Name is shown as "Sign in with <name>"; default the issuer's host.
	Name     string `json:"name,omitempty"`
	ClientID string `json:"clientID"`
	// ClientSecret is "$ENV_NAME": the secret is read from that
	// environment variable, so the file holds no secret. Empty for a
	// public client.
	ClientSecret string `json:"clientSecret,omitempty"`
	// RedirectURL is this gateway's callback as the provider calls it,
	// ending in /auth/callback.
	RedirectURL string `json:"redirectURL"`
	// Scopes requested; default openid, email, profile. Must hold openid.
	Scopes []string `json:"scopes,omitempty"`
	// UsernameClaim names the caller: actor "user:<claim value>"; default
	// "email".
	UsernameClaim string `json:"usernameClaim,omitempty"`
	// GroupsClaim holds the caller's groups; default "groups".
	GroupsClaim string `json:"groupsClaim,omitempty"`

	secret string
}

// Binding gives Role to Subjects in Namespaces.
type Binding struct {
	// Role is viewer, operator or admin.
	Role string `json:"role"`
	// Subjects are actors ("user:alice", "ci:github/acme/shop",
	// "token:deploy"), groups ("group:devs") or "*" for every
	// authenticated caller.
	Subjects []string `json:"subjects"`
	// Namespaces are namespace names or "*" for all.
	Namespaces []string `json:"namespaces"`

	role Role
}

// Bindings give roles to subjects in namespaces: the auth file's roles,
// and whoever else maps callers to roles the same way (the notifier's chat
// commands, whose subjects are "slack:<user id>" or "teams:<id>").
type Bindings []Binding

// Validate reports every problem of the bindings, each a *FieldError at
// path[i].<field>, and keeps each valid binding's role for RoleOf: a
// binding that did not validate gives no role.
func (bs Bindings) Validate(path string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	for i, b := range bs {
		p := fmt.Sprintf("%s[%d]", path, i)
		bs[i].role = RoleNone
		if r, err := ParseRole(b.Role); err != nil || r == RoleNone {
			bad(p+".role", "unknown role %q (viewer, operator or admin)", b.Role)
		} else {
			bs[i].role = r
		}
		if len(b.Subjects) == 0 {
			bad(p+".subjects", `required: actors ("user:alice"), groups ("group:devs") or "*"`)
		}
		for k, s := range b.Subjects {
			if s != "*" && !actorShape.MatchString(s) {
				bad(fmt.Sprintf("%s.subjects[%d]", p, k), `%q: want "user:<name>", "group:<name>", another actor such as "ci:github/acme/shop", or "*"`, s)
			}
		}
		if len(b.Namespaces) == 0 {
			bad(p+".namespaces", `required: namespace names, or "*" for all`)
		}
		for k, ns := range b.Namespaces {
			if ns == "*" {
				continue
			}
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				bad(fmt.Sprintf("%s.namespaces[%d]", p, k), "%q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
			}
		}
	}
	return errors.Join(errs...)
}

// RoleOf returns the highest role of the bindings (as Validate left
// them) whose subjects name the caller (actor, "group:<g>" for one of
// groups, or "*") and whose namespaces hold ns or "*". The caller must
// have proved it is actor: "*" matches anyone.
func (bs Bindings) RoleOf(actor string, groups []string, ns string) Role {
	r := RoleNone
	for _, b := range bs {
		if b.role > r && b.names(actor, groups) &&
			(slices.Contains(b.Namespaces, ns) || slices.Contains(b.Namespaces, "*")) {
			r = b.role
		}
	}
	return r
}

// names reports whether one of b's subjects names the caller.
func (b Binding) names(actor string, groups []string) bool {
	return slices.ContainsFunc(b.Subjects, func(s string) bool { return matches(s, actor, groups) })
}

// FieldError is one problem of an auth file, at a field's path such as
// "roles[1].role". It wraps ErrInvalidConfig.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// Unwrap returns ErrInvalidConfig.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// LoadFile reads, checks and resolves the auth file at path: every
// problem is reported at once, each a *FieldError, joined and wrapped
// with the file's path. Tokens' valueFrom and OIDC's clientSecret are
// read here, from the environment and from files relative to path's
// directory.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: auth file: %w", ErrInvalidConfig, err)
	}
	f, err := ParseFile(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("auth file %s:\n%w", path, err)
	}
	return f, nil
}

// ParseFile decodes an auth file (YAML or JSON; an unknown field is an
// error), fills in its defaults, validates it and resolves its secrets,
// reading ValueFrom files relative to dir.
func ParseFile(data []byte, dir string) (*File, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: not YAML: %w", ErrInvalidConfig, err)
	}
	var f File
	strict, err := kjson.UnmarshalStrict(j, &f)
	if te := (*json.UnmarshalTypeError)(nil); errors.As(err, &te) && te.Field != "" {
		return nil, &FieldError{Field: te.Field, Detail: fmt.Sprintf("want %s, not %s", kindOf(te.Type), te.Value)}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	var errs []error
	for _, e := range strict {
		var fe kjson.FieldError
		if errors.As(e, &fe) {
			errs = append(errs, &FieldError{Field: fe.FieldPath(), Detail: "unknown field"})
		} else {
			errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, e))
		}
	}
	f.defaults()
	errs = append(errs, f.Validate())
	errs = append(errs, f.resolve(dir, os.LookupEnv))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &f, nil
}

// kindOf names t as a YAML author thinks of it.
func kindOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "a mapping"
	case reflect.String:
		return "a string"
	}
	return t.Kind().String()
}

func (f *File) defaults() {
	if f.SessionTTL == "" {
		f.SessionTTL = DefaultSessionTTL.String()
	}
	for i := range f.Tokens {
		if f.Tokens[i].Actor == "" && f.Tokens[i].Name != "" {
			f.Tokens[i].Actor = "token:" + f.Tokens[i].Name
		}
	}
	if o := f.OIDC; o != nil {
		if len(o.Scopes) == 0 {
			o.Scopes = []string{"openid", "email", "profile"}
		}
		if o.UsernameClaim == "" {
			o.UsernameClaim = "email"
		}
		if o.GroupsClaim == "" {
			o.GroupsClaim = "groups"
		}
		if o.Name == "" {
			if u, err := url.Parse(o.Issuer); err == nil {
				o.Name = u.Host
			}
		}
	}
}

var (
	userName   = regexp.MustCompile(`^[A-Za-z0-9._@+-]+$`)
	tokenHash  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	actorShape = regexp.MustCompile(`^[a-z][a-z0-9-]*:\S+$`)
)

// Validate reports every problem of f's shape at once, each a
// *FieldError with its path, and keeps what it parsed (the bindings'
// roles, the session TTL) for the checks that use them; a binding that did
// not validate gives no role. It does not read secrets (LoadFile does).
func (f *File) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	if len(f.Users) == 0 && len(f.Tokens) == 0 && f.OIDC == nil {
		bad("users", "no users, tokens or oidc: no one could sign in")
	}
	if len(f.Roles) == 0 {
		bad("roles", "no role bindings: every caller would be refused")
	}
	users := map[string]int{}
	for i, u := range f.Users {
		p := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			bad(p+".name", "required")
		case !userName.MatchString(u.Name):
			bad(p+".name", "%q: use letters, digits and . _ @ + - only", u.Name)
		}
		if j, dup := users[u.Name]; dup && u.Name != "" {
			bad(p+".name", "%q is also users[%d]", u.Name, j)
		}
		users[u.Name] = i
		if u.PasswordHash == "" {
			bad(p+".passwordHash", "required: a bcrypt hash from `sluice auth hash-password`")
		} else if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			bad(p+".passwordHash", "not a bcrypt hash (make one with `sluice auth hash-password`)")
		}
		for k, g := range u.Groups {
			if g == "" {
				bad(fmt.Sprintf("%s.groups[%d]", p, k), "empty group")
			}
		}
	}
	tokens := map[string]int{}
	for i, t := range f.Tokens {
		p := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			bad(p+".name", "required")
		}
		if j, dup := tokens[t.Name]; dup && t.Name != "" {
			bad(p+".name", "%q is also tokens[%d]", t.Name, j)
		}
		tokens[t.Name] = i
		if t.Actor != "" && !actorShape.MatchString(t.Actor) {
			bad(p+".actor", "%q: want kind:name, such as ci:github/acme/shop", t.Actor)
		} else if strings.HasPrefix(t.Actor, "group:") {
			bad(p+".actor", "%q: an actor is not a group", t.Actor)
		}
		switch {
		case t.Hash != "" && t.ValueFrom != nil:
			bad(p, "set hash or valueFrom, not both")
		case t.Hash == "" && t.ValueFrom == nil:
			bad(p+".hash", "required (sha256:<hex> from `sluice auth hash-token`), or valueFrom")
		case t.Hash != "" && !tokenHash.MatchString(t.Hash):
			bad(p+".hash", "want sha256:<64 lowercase hex digits> (from `sluice auth hash-token`)")
		case t.ValueFrom != nil:
			errs = append(errs, t.ValueFrom.validate(p+".valueFrom"))
		}
	}
	if o := f.OIDC; o != nil {
		errs = append(errs, o.validate("oidc"))
	}
	errs = append(errs, f.Roles.Validate("roles"))
	if d, err := time.ParseDuration(f.SessionTTL); err != nil {
		bad("sessionTTL", "%q: want a duration such as 12h or 30m", f.SessionTTL)
	} else if d < time.Minute {
		bad("sessionTTL", "%s: want at least 1m", d)
	} else {
		f.sessionTTL = d
	}
	return errors.Join(errs...)
}

func (v *ValueFrom) validate(path string) error {
	switch {
	case v.Env != "" && v.File != "":
		return &FieldError{Field: path, Detail: "set env or file, not both"}
	case v.Env == "" && v.File == "":
		return &FieldError{Field: path, Detail: "set env (a variable's name) or file (a path)"}
	case v.Env != "" && !envName.MatchString(v.Env):
		return &FieldError{Field: path + ".env", Detail: fmt.Sprintf("%q is not an environment variable's name", v.Env)}
	}
	return nil
}

func (o *OIDC) validate(p string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: p + "." + field, Detail: fmt.Sprintf(format, args...)})
	}
	if o.Issuer == "" {
		bad("issuer", "required: the provider's issuer URL")
	} else if err := secureURL(o.Issuer); err != nil {
		bad("issuer", "%v", err)
	}
	if o.ClientID == "" {
		bad("clientID", "required")
	}
	if o.ClientSecret != "" {
		if name, ok := strings.CutPrefix(o.ClientSecret, "$"); !ok || !envName.MatchString(name) {
			bad("clientSecret", "write $ENV_NAME and put the secret in that environment variable, so the file holds no secret")
		}
	}
	if o.RedirectURL == "" {
		bad("redirectURL", "required: this gateway's https://<host>/auth/callback")
	} else if err := secureURL(o.RedirectURL); err != nil {
		bad("redirectURL", "%v", err)
	} else if u, _ := url.Parse(o.RedirectURL); !strings.HasSuffix(u.Path, "/auth/callback") {
		bad("redirectURL", "%q: want a URL ending in /auth/callback, where the gateway takes the answer", o.RedirectURL)
	}
	if !slices.Contains(o.Scopes, "openid") {
		bad("scopes", "must include openid")
	}
	return errors.Join(errs...)
}

// secureURL accepts an absolute https URL, or http on a loopback host.
func secureURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("%q: want https (http only on loopback)", s)
}

// resolve reads the secrets f refers to: tokens' valueFrom and OIDC's
// clientSecret.
func (f *File) resolve(dir string, env func(string) (string, bool)) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	for i := range f.Tokens {
		t := &f.Tokens[i]
		p := fmt.Sprintf("tokens[%d]", i)
		switch {
		case t.Hash != "" && tokenHash.MatchString(t.Hash):
			hex.Decode(t.digest[:], []byte(t.Hash[len("sha256:"):]))
		case t.ValueFrom != nil && t.ValueFrom.Env != "":
			v, ok := env(t.ValueFrom.Env)
			if v = strings.TrimSpace(v); !ok || v == "" {
				bad(p+".valueFrom.env", "environment variable %s is not set", t.ValueFrom.Env)
				continue
			}
			t.digest = sha256.Sum256([]byte(v))
		case t.ValueFrom != nil && t.ValueFrom.File != "":
			path := t.ValueFrom.File
			if !filepath.IsAbs(path) {
				path = filepath.Join(dir, path)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				bad(p+".valueFrom.file", "%v", err)
				continue
			}
			v := strings.TrimSpace(string(b))
			if v == "" {
				bad(p+".valueFrom.file", "%s is empty", path)
				continue
			}
			t.digest = sha256.Sum256([]byte(v))
		}
	}
	seen := map[[sha256.Size]byte]int{}
	for i, t := range f.Tokens {
		if t.digest == ([sha256.Size]byte{}) {
			continue
		}
		if j, dup := seen[t.digest]; dup {
			bad(fmt.Sprintf("tokens[%d]", i), "the same token as tokens[%d]: give each caller its own", j)
		}
		seen[t.digest] = i
	}
	if o := f.OIDC; o != nil && o.ClientSecret != "" {
		if name, ok := strings.CutPrefix(o.ClientSecret, "$"); ok && envName.MatchString(name) {
			v, ok := env(name)
			if !ok || v == "" {
				bad("oidc.clientSecret", "environment variable %s is not set", name)
			}
			o.secret = v
		}
	}
	return errors.Join(errs...)
}

// roleOf is the highest role a binding gives p in ns.
func (f *File) roleOf(p Principal, ns string) Role {
	return f.Roles.RoleOf(p.Actor, p.Groups, ns)
}

// roles is the highest role bindings give p in each namespace they name.
func (f *File) roles(p Principal) map[string]Role {
	out := map[string]Role{}
	for _, b := range f.Roles {
		if !b.names(p.Actor, p.Groups) {
			continue
		}
		for _, ns := range b.Namespaces {
			out[ns] = max(out[ns], b.role)
		}
	}
	return out
}

// boundGroups is the groups some binding names, the only ones a session
// needs to keep.
func (f *File) boundGroups() map[string]bool {
	out := map[string]bool{}
	for _, b := range f.Roles {
		for _, s := range b.Subjects {
			if g, ok := strings.CutPrefix(s, "group:"); ok {
				out[g] = true
			}
		}
	}
	return out
}
