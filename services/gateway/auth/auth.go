// Package auth decides who calls the gateway and what they may do: bearer
// tokens for CI and scripts, sign-in for people (a local user file, or
// OIDC with any standard provider) with a session cookie, roles per
// namespace (viewer, operator, admin), CSRF and clickjacking protection for
// the dashboard, rate limits per caller and a read-only mode.
//
// The gateway wraps its whole mux with (*Auth).Middleware and serves
// (*Auth).Routes under /auth/; its handlers read the caller with
// PrincipalFrom and decide with Allow or RoleOf.
package auth

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Role is what a caller may do in a namespace; each role includes the ones
// before it.
type Role int

const (
	// RoleNone may do nothing.
	RoleNone Role = iota
	// RoleViewer reads rollouts, their history and status events.
	RoleViewer
	// RoleOperator also sends commands: promote, abort, retry, pause,
	// resume, undo, restart, and rollout.requested and
	// analysistemplate.applied for its namespaces.
	RoleOperator
	// RoleAdmin also deletes rollouts and applies ClusterAnalysisTemplates.
	RoleAdmin
)

var roleNames = [...]string{RoleNone: "none", RoleViewer: "viewer", RoleOperator: "operator", RoleAdmin: "admin"}

// String returns "none", "viewer", "operator" or "admin".
func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("Role(%d)", int(r))
	}
	return roleNames[r]
}

// MarshalText writes the role's name, so JSON shows "viewer", not 1.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a role's name; see ParseRole.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRole returns the role named name: "viewer", "operator" or "admin"
// (or "none").
func ParseRole(name string) (Role, error) {
	for i, n := range roleNames {
		if n == name {
			return Role(i), nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q (viewer, operator or admin)", name)
}

// Principal is an authenticated caller.
type Principal struct {
	// Actor is who the caller is in the contract's actor extension:
	// "user:alice", "ci:github/acme/shop", "token:deploy-bot".
	Actor string `json:"actor"`
	// Groups are the caller's groups (OIDC's groups claim), matched by
	// role bindings as "group:<name>".
	Groups []string `json:"groups,omitempty"`
	// Via is how the caller authenticated: "token", "session" or
	// "anonymous" (sluice dev without --dashboard-auth).
	Via string `json:"via"`
}

// How a Principal authenticated (Principal.Via).
const (
	ViaToken     = "token"
	ViaSession   = "session"
	ViaAnonymous = "anonymous"
)

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller the middleware authenticated, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Auth authenticates callers and authorizes what they do.
type Auth struct {
	cfg    Config
	file   *File // nil without an auth file
	log    *slog.Logger
	keys   sealer
	limits *limiters
	oidc   *oidcClient // nil without OIDC

	mu      sync.Mutex
	revoked map[string]time.Time // signed-out session ids, until they expire
}

// New returns the Auth cfg describes; it fails, saying what to fix, when
// the auth file cannot be read or is invalid (the error wraps
// ErrInvalidConfig).
func New(cfg Config, log *slog.Logger) (*Auth, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Auth{cfg: cfg, log: log, revoked: map[string]time.Time{}}
	if cfg.File != "" {
		f, err := LoadFile(cfg.File)
		if err != nil {
			return nil, err
		}
		a.file = f
		if f.OIDC != nil {
			a.oidc = newOIDCClient(*f.OIDC)
		}
	}
	key := cfg.SessionKey
	if len(key) == 0 {
		key = randomBytes(32)
	}
	a.keys = sealer{key: key}
	a.limits = newLimiters(cfg.RatePerSecond, cfg.Burst)
	return a, nil
}

// Allow reports whether p may act with role need in namespace. In
// read-only mode no one has more than RoleViewer.
func (a *Auth) Allow(p Principal, namespace string, need Role) bool {
	return a.RoleOf(p, namespace) >= need
}

// RoleOf returns p's role in namespace: for an anonymous caller the
// configured Anonymous role, otherwise the highest role of the auth
// file's bindings whose subjects match p (its actor, "group:<g>" for one
// of its groups, or "*") and whose namespaces hold namespace or "*".
func (a *Auth) RoleOf(p Principal, namespace string) Role {
	r := RoleNone
	switch {
	case p.Via == ViaAnonymous:
		r = a.cfg.Anonymous
	case a.file != nil && authenticated(p):
		r = a.file.roleOf(p, namespace)
	}
	if a.cfg.ReadOnly {
		r = min(r, RoleViewer)
	}
	return r
}

// Roles returns p's roles by namespace, "*" standing for every namespace
// no other key names, as whoami shows them. A namespace is listed only
// where its role is higher than the one "*" gives.
func (a *Auth) Roles(p Principal) map[string]Role {
	out := map[string]Role{}
	switch {
	case p.Via == ViaAnonymous:
		out["*"] = a.cfg.Anonymous
	case a.file != nil && authenticated(p):
		out = a.file.roles(p)
	}
	if a.cfg.ReadOnly {
		for ns, r := range out {
			out[ns] = min(r, RoleViewer)
		}
	}
	all := out["*"]
	for ns, r := range out {
		if ns != "*" && r <= all {
			delete(out, ns)
		}
	}
	if all == RoleNone {
		delete(out, "*")
	}
	return out
}

// ReadOnly reports whether every command is refused.
func (a *Auth) ReadOnly() bool { return a.cfg.ReadOnly }

// authenticated reports whether p proved who it is: only then do the
// file's bindings, "*" among them, apply. A zero Principal (no caller) has
// no role.
func authenticated(p Principal) bool {
	return (p.Via == ViaToken || p.Via == ViaSession) && p.Actor != ""
}

// matches reports whether subject ("user:alice", "group:devs", "*")
// names the caller actor with groups.
func matches(subject, actor string, groups []string) bool {
	if g, ok := strings.CutPrefix(subject, "group:"); ok {
		return slices.Contains(groups, g)
	}
	return subject == "*" || subject == actor
}
