// Package auth decides who calls the gateway and what they may do: bearer
// tokens for CI and scripts, sign-in for people (a local user file, or
// OIDC with any standard provider) with a session cookie, roles per
// namespace (viewer, operator, admin), CSRF and clickjacking protection for
// the dashboard, rate limits per caller and a read-only mode.
package auth

import "context"

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
