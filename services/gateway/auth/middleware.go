package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ContentSecurityPolicy is sent with every response. The dashboard loads
// scripts, styles and images from the gateway only, runs no inline script
// and may use inline styles; no page may frame the gateway's.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Middleware authenticates each request and puts its Principal in the
// request's context (PrincipalFrom); a request without credentials goes
// on without one (or as the anonymous caller when Config.Anonymous is
// set), and the handler answers 401 where it needs one.
//
// Around that it sets the hardening headers on every response, answers
// 401 itself for a bearer token it does not know (a wrong token is a
// mistake to report, not a reason to fall back to anonymous), 403 for an
// unsafe request from a session without the CSRF header or from another
// site, and 429 with Retry-After for a caller over its rate.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")

		p, sess, authErr := a.authenticate(r)
		// A caller is limited by who it is, or by address when it is no
		// one in particular; a long-lived request (SSE) counts once, here.
		key := "ip:" + clientIP(r)
		if p.Via == ViaToken || p.Via == ViaSession {
			key = p.Actor
		}
		if ok, wait := a.limits.take(key, a.cfg.Now()); !ok {
			h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
			writeError(w, http.StatusTooManyRequests, "too many requests: slow down and retry after "+h.Get("Retry-After")+" s")
			return
		}
		if authErr != "" {
			a.log.Info("refused credentials", "reason", authErr, "remote", clientIP(r), "path", r.URL.Path)
			h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, authErr)
			return
		}
		if !isSafe(r.Method) && p.Via != ViaToken {
			if msg := a.checkCSRF(r, sess); msg != "" {
				a.log.Info("refused an unsafe request", "reason", msg, "actor", p.Actor, "remote", clientIP(r), "path", r.URL.Path)
				writeError(w, http.StatusForbidden, msg)
				return
			}
		}
		if p.Via != "" {
			r = r.WithContext(WithPrincipal(r.Context(), p))
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate returns the request's caller (Via empty when none), its
// session when it came with one, and why its credentials were refused.
func (a *Auth) authenticate(r *http.Request) (Principal, *session, string) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return Principal{}, nil, "unsupported Authorization scheme: send Authorization: Bearer <token>"
		}
		if actor, ok := a.tokenActor(strings.TrimSpace(tok)); ok {
			return Principal{Actor: actor, Via: ViaToken}, nil, ""
		}
		return Principal{}, nil, "invalid token"
	}
	if s, ok := a.sessionOf(r); ok {
		return Principal{Actor: s.Actor, Groups: s.Groups, Via: ViaSession}, &s, ""
	}
	if a.cfg.Anonymous != RoleNone {
		return Principal{Actor: a.cfg.AnonymousActor, Via: ViaAnonymous}, nil, ""
	}
	return Principal{}, nil, ""
}

// tokenActor returns the actor of the token tok. It compares digests in
// constant time and looks at every token, so the time it takes says
// nothing about which one nearly matched.
func (a *Auth) tokenActor(tok string) (string, bool) {
	if a.file == nil || tok == "" {
		return "", false
	}
	d := sha256.Sum256([]byte(tok))
	actor, found := "", false
	for _, t := range a.file.Tokens {
		if subtle.ConstantTimeCompare(d[:], t.digest[:]) == 1 {
			actor, found = t.Actor, true
		}
	}
	return actor, found
}

// checkCSRF returns why an unsafe request that came without a bearer
// token is refused, or "". Any such request from a browser must come from
// the gateway's own pages (Origin, or Referer without it, of the same
// host); a session's must also carry the session's CSRF token in
// CSRFHeader (the dashboard copies it from CSRFCookie). POST /auth/logout
// may carry it as the form field "csrf" instead, so that a plain form can
// sign out.
func (a *Auth) checkCSRF(r *http.Request, s *session) string {
	if origin := r.Header.Get("Origin"); origin != "" {
		if !sameHost(r, origin) {
			return "cross-site request refused: Origin " + origin + " is not this gateway"
		}
	} else if ref := r.Header.Get("Referer"); ref != "" && !sameHost(r, ref) {
		return "cross-site request refused: Referer is not this gateway"
	}
	if s == nil || r.URL.Path == loginPath {
		return "" // no session to ride on; the login form checks its own token
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" && r.URL.Path == logoutPath {
		got = r.PostFormValue("csrf")
	}
	if got == "" {
		return "missing " + CSRFHeader + " header: send the value of the " + CSRFCookie + " cookie"
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) != 1 {
		return "wrong " + CSRFHeader + " header: send the value of the " + CSRFCookie + " cookie (sign in again if it changed)"
	}
	return ""
}

// sameHost reports whether the URL u (an Origin or a Referer) names the
// host the request was sent to, or the host a proxy in front says it was.
func sameHost(r *http.Request, u string) bool {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		return false
	}
	if strings.EqualFold(parsed.Host, r.Host) {
		return true
	}
	fwd := r.Header.Get("X-Forwarded-Host")
	return fwd != "" && strings.EqualFold(parsed.Host, fwd)
}

func isSafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// clientIP is the request's remote address without its port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeError answers status with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
