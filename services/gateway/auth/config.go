package auth

// Config configures authentication and authorization.
type Config struct {
	// File is the auth file (--auth-config; sluice dev --dashboard-auth):
	// users, tokens, OIDC and role bindings (docs/gateway.md). Empty with
	// Anonymous set means no sign-in.
	File string
	// Anonymous, when not RoleNone, lets callers in without credentials
	// with that role in every namespace, as AnonymousActor: sluice dev
	// without --dashboard-auth on loopback, as Argo's
	// `kubectl argo rollouts dashboard` does.
	Anonymous      Role
	AnonymousActor string
	// ReadOnly refuses every command, whatever the caller's role.
	ReadOnly bool
	// RatePerSecond and Burst limit each caller's requests (defaults 20
	// and 40); a caller over the limit gets 429 with Retry-After.
	RatePerSecond float64
	Burst         int
}
