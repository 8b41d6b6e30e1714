package auth

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	// flowTTL bounds how long a person may take at the provider.
	flowTTL = 10 * time.Minute
	// providerTimeout bounds each call to the provider.
	providerTimeout = 15 * time.Second
)

// oidcClient signs people in with an OpenID Connect provider. It reads
// the provider's discovery document on first use, not at start, so that
// the gateway starts while the provider is unreachable.
type oidcClient struct {
	cfg OIDC

	mu       sync.Mutex
	provider *oidc.Provider
}

func newOIDCClient(cfg OIDC) *oidcClient { return &oidcClient{cfg: cfg} }

func (c *oidcClient) discover(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider == nil {
		ctx, cancel := context.WithTimeout(ctx, providerTimeout)
		defer cancel()
		p, err := oidc.NewProvider(ctx, c.cfg.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot read %s's discovery document: %w", c.cfg.Issuer, err)
		}
		c.provider = p
	}
	return c.provider, &oauth2.Config{
		ClientID:     c.cfg.ClientID,
		ClientSecret: c.cfg.secret,
		RedirectURL:  c.cfg.RedirectURL,
		Endpoint:     c.provider.Endpoint(),
		Scopes:       c.cfg.Scopes,
	}, nil
}

// oidcFlow is one sign-in in progress, kept in a signed cookie between
// the redirect to the provider and its answer.
type oidcFlow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"x"`
}

// startOIDC sends the browser to the provider: authorization code flow
// with PKCE (S256), a state bound to this browser and a nonce bound to
// the ID token.
func (a *Auth) startOIDC(w http.ResponseWriter, r *http.Request, next string) {
	_, oc, err := a.oidc.discover(r.Context())
	if err != nil {
		a.log.Warn("oidc discovery failed", "issuer", a.oidc.cfg.Issuer, "err", err)
		a.renderLogin(w, r, http.StatusBadGateway, next, "Cannot reach "+a.oidc.cfg.Name+" to sign in; try again later.")
		return
	}
	f := oidcFlow{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Next: next}
	expires := a.cfg.Now().Add(flowTTL)
	http.SetCookie(w, a.cookie(r, flowCookie, seal(a.keys, flowCookie, f, expires), expires, true))
	http.Redirect(w, r, oc.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusFound)
}

// callback takes the provider's answer: it checks the state, exchanges
// the code (with the PKCE verifier) for tokens, verifies the ID token's
// signature, issuer, audience, expiry and nonce, and starts a session as
// "user:<usernameClaim>" with the groups of groupsClaim.
func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	if a.oidc == nil {
		writeError(w, http.StatusNotFound, "this gateway has no OIDC sign-in")
		return
	}
	fail := func(status int, msg string, args ...any) {
		a.log.Info("oidc sign-in refused", append([]any{"remote", clientIP(r)}, args...)...)
		a.renderLogin(w, r, status, "/", msg)
	}
	c, err := r.Cookie(flowCookie)
	if err != nil {
		fail(http.StatusBadRequest, "The sign-in expired or was started in another browser. Please try again.")
		return
	}
	f, err := unseal[oidcFlow](a.keys, flowCookie, c.Value, a.cfg.Now())
	if err != nil {
		fail(http.StatusBadRequest, "The sign-in expired. Please try again.")
		return
	}
	clear := a.cookie(r, flowCookie, "", time.Unix(0, 0), true)
	clear.MaxAge = -1
	http.SetCookie(w, clear)
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		fail(http.StatusBadRequest, "The sign-in answer does not match this browser's sign-in. Please try again.")
		return
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, a.oidc.cfg.Name+" refused the sign-in: "+e+" "+q.Get("error_description"), "error", e)
		return
	}
	// The provider answers the exchange and the keys within this, or the
	// person is told to try again rather than left waiting.
	ctx, cancel := context.WithTimeout(r.Context(), providerTimeout)
	defer cancel()
	p, oc, err := a.oidc.discover(ctx)
	if err != nil {
		fail(http.StatusBadGateway, "Cannot reach "+a.oidc.cfg.Name+" to sign in; try again later.", "err", err)
		return
	}
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.Verifier))
	if err != nil {
		fail(http.StatusBadGateway, a.oidc.cfg.Name+" did not accept the sign-in code. Please try again.", "err", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusBadGateway, a.oidc.cfg.Name+" sent no ID token.")
		return
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: a.oidc.cfg.ClientID, Now: a.cfg.Now}).Verify(ctx, raw)
	if err != nil {
		fail(http.StatusUnauthorized, "The ID token from "+a.oidc.cfg.Name+" is not valid.", "err", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		fail(http.StatusUnauthorized, "The ID token from "+a.oidc.cfg.Name+" is not for this sign-in.", "reason", "nonce")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		fail(http.StatusBadGateway, "Cannot read the ID token's claims.", "err", err)
		return
	}
	name, _ := claims[a.oidc.cfg.UsernameClaim].(string)
	if name == "" {
		fail(http.StatusUnauthorized, "The ID token has no "+a.oidc.cfg.UsernameClaim+" claim to name you by.")
		return
	}
	if verified, ok := claims["email_verified"].(bool); ok && !verified && a.oidc.cfg.UsernameClaim == "email" {
		fail(http.StatusUnauthorized, "Your email address at "+a.oidc.cfg.Name+" is not verified.")
		return
	}
	a.startSession(w, r, "user:"+name, stringsOf(claims[a.oidc.cfg.GroupsClaim]))
	http.Redirect(w, r, safeNext(f.Next), http.StatusSeeOther)
}

// stringsOf reads a claim that is a list of strings or one string.
func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
