// Package auth decides who calls the gateway and what they may do: bearer
// tokens for CI and scripts, sign-in for people (a local user file, or
// OIDC with any standard provider) with a session cookie, roles per
// namespace (viewer, operator, admin), CSRF and clickjacking protection for
// the dashboard, rate limits per caller and a read-only mode.
package auth

import (
	"context"
	"log/slog"
	"net/http"
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
	cfg Config
}

// New returns the Auth cfg describes; it fails, saying what to fix, when
// the auth file cannot be read or is invalid.
func New(cfg Config, log *slog.Logger) (*Auth, error) {
	return &Auth{cfg: cfg}, nil
}

// Middleware authenticates each request and puts its Principal in the
// request's context (PrincipalFrom); a request without valid credentials
// goes on without one, and the handler answers 401 where it needs one.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Anonymous != RoleNone {
			r = r.WithContext(WithPrincipal(r.Context(), Principal{Actor: a.cfg.AnonymousActor, Via: "anonymous"}))
		}
		next.ServeHTTP(w, r)
	})
}

// Routes serves /auth/login, /auth/callback and /auth/logout.
func (a *Auth) Routes() http.Handler { return http.NotFoundHandler() }

// Allow reports whether p may act with role need in namespace. In
// read-only mode no one has more than RoleViewer.
func (a *Auth) Allow(p Principal, namespace string, need Role) bool {
	return a.RoleOf(p, namespace) >= need
}

// RoleOf returns p's role in namespace.
func (a *Auth) RoleOf(p Principal, namespace string) Role {
	r := RoleNone
	if p.Via == "anonymous" {
		r = a.cfg.Anonymous
	}
	if a.cfg.ReadOnly {
		r = min(r, RoleViewer)
	}
	return r
}

// ReadOnly reports whether every command is refused.
func (a *Auth) ReadOnly() bool { return a.cfg.ReadOnly }
