// Package transport builds the HTTP clients of the HTTP-based metric
// providers (prometheus, web): TLS options, credentials and custom headers
// as a metric's provider block describes them, and error messages that
// never carry a credential.
//
// Credentials are applied to every request in this order, later ones
// replacing earlier ones: the analyzer's fallback credentials (a bearer
// token or basic auth from its environment, which a provider passes only
// for the backend they belong to), the metric's authentication.basicAuth,
// its authentication.oauth2 (client credentials grant, a token per
// request), then the metric's headers, so an explicit Authorization header
// wins.
//
// Supported: insecure (skip certificate verification), caCert (a PEM bundle
// that replaces the system roots for that backend), proxies from
// HTTPS_PROXY and NO_PROXY. Not supported:
// authentication.sigv4 (Amazon Managed Prometheus); Check reports it.
package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/pkg/spec"
)

// Credentials are the analyzer's own credentials for a backend, used when
// the metric brings none of its own.
type Credentials struct {
	BearerToken string
	Username    string
	Password    string
}

// Settings is how to reach one endpoint, taken from a metric's provider
// block.
type Settings struct {
	Insecure bool
	// CACert is a PEM bundle of the CAs to trust.
	CACert  string
	Headers []spec.WebMetricHeader
	Auth    *spec.Authentication
	// Fallback is applied before the metric's own credentials.
	Fallback Credentials
}

// Check returns why s can never work, or nil: an unsupported
// authentication method or a caCert with no certificate.
func Check(s Settings) error {
	if s.Auth != nil && s.Auth.Sigv4 != nil {
		return errors.New("authentication.sigv4 is not supported")
	}
	if s.CACert != "" && !strings.Contains(s.CACert, "{{") {
		if _, err := certPool(s.CACert); err != nil {
			return err
		}
	}
	return nil
}

// Secrets lists the credential values in s, for redaction: passwords,
// tokens, client secrets, and the values of headers whose name suggests a
// credential (Authorization, *token*, *key*, *secret*, *password*, cookies),
// with the credential part of "Scheme credential" values on its own, and
// the encoded form basic authentication sends.
func (s Settings) Secrets() []string {
	out := []string{s.Fallback.BearerToken, s.Fallback.Password}
	if s.Fallback.Password != "" {
		out = append(out, basic(s.Fallback.Username, s.Fallback.Password))
	}
	if a := s.Auth; a != nil {
		if b := a.BasicAuth; b != nil && b.Password != "" {
			out = append(out, b.Password, basic(b.Username, b.Password))
		}
		if a.OAuth2 != nil {
			out = append(out, a.OAuth2.ClientSecret)
		}
	}
	for _, h := range s.Headers {
		if !sensitiveHeader(h.Key) {
			continue
		}
		out = append(out, h.Value)
		if _, cred, ok := strings.Cut(strings.TrimSpace(h.Value), " "); ok {
			out = append(out, strings.TrimSpace(cred))
		}
	}
	kept := out[:0]
	for _, v := range out {
		if strings.TrimSpace(v) != "" {
			kept = append(kept, v)
		}
	}
	return kept
}

// basic is the encoded credential of an Authorization: Basic header.
func basic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

func sensitiveHeader(key string) bool {
	k := strings.ToLower(key)
	for _, w := range []string{"auth", "token", "key", "secret", "password", "cookie"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// Pool hands out clients that share connections per TLS setting. The zero
// value is ready to use and safe for concurrent use.
type Pool struct {
	mu         sync.Mutex
	transports map[tlsKey]*http.Transport
}

type tlsKey struct {
	insecure bool
	caCert   string
}

// Client returns a client that applies s's credentials and headers to
// every request. It has no timeout of its own: callers bound requests with
// their context. It returns an error for a caCert with no certificate and
// for sigv4 authentication.
func (p *Pool) Client(s Settings) (*http.Client, error) {
	if err := Check(s); err != nil {
		return nil, err
	}
	base, err := p.transport(tlsKey{insecure: s.Insecure, caCert: s.CACert})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &credentialed{base: base, s: s}}, nil
}

func (p *Pool) transport(k tlsKey) (*http.Transport, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.transports[k]; ok {
		return t, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: k.insecure} //nolint:gosec // the metric asked for it (insecure: true)
	if k.caCert != "" {
		pool, err := certPool(k.caCert)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		TLSClientConfig:       cfg,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if p.transports == nil {
		p.transports = make(map[tlsKey]*http.Transport)
	}
	p.transports[k] = t
	return t, nil
}

func certPool(pem string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pem)) {
		return nil, errors.New("caCert holds no PEM certificate")
	}
	return pool, nil
}

// credentialed adds credentials and headers to each request.
type credentialed struct {
	base http.RoundTripper
	s    Settings
}

func (c *credentialed) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	f := c.s.Fallback
	switch {
	case f.BearerToken != "":
		r.Header.Set("Authorization", "Bearer "+f.BearerToken)
	case f.Username != "" || f.Password != "":
		r.SetBasicAuth(f.Username, f.Password)
	}
	if a := c.s.Auth; a != nil {
		if b := a.BasicAuth; b != nil {
			r.SetBasicAuth(b.Username, b.Password)
		}
		if o := a.OAuth2; o != nil {
			token, err := clientCredentials(r.Context(), c.base, o)
			if err != nil {
				closeBody(req)
				return nil, err
			}
			r.Header.Set("Authorization", "Bearer "+token)
		}
	}
	for _, h := range c.s.Headers {
		if strings.EqualFold(h.Key, "Host") {
			r.Host = h.Value
			continue
		}
		r.Header.Set(h.Key, h.Value)
	}
	return c.base.RoundTrip(r)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// clientCredentials gets an access token with the OAuth 2.0 client
// credentials grant (RFC 6749 section 4.4), the client authenticating with
// HTTP basic auth.
func clientCredentials(ctx context.Context, rt http.RoundTripper, o *spec.OAuth2Config) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(o.Scopes) > 0 {
		form.Set("scope", strings.Join(o.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("oauth2 tokenUrl: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret))
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return "", fmt.Errorf("oauth2 token: %s", Describe(err))
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("oauth2 token from %s: %w", SafeURL(req.URL), err)
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("oauth2 token from %s: status %s", SafeURL(req.URL), resp.Status)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("oauth2 token from %s: response has no access_token", SafeURL(req.URL))
	}
	return tok.AccessToken, nil
}

// SafeURL renders u without user info, query or fragment: what is safe to
// put in a message when the query string may hold a token.
func SafeURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return v.String()
}

// Describe renders an error of an HTTP client call without the request's
// user info and query string, which may hold credentials:
// "GET http://host:9090/api/v1/query: dial tcp ...: connection refused".
func Describe(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	target := "request"
	if u, perr := url.Parse(ue.URL); perr == nil {
		target = SafeURL(u)
	}
	return fmt.Sprintf("%s %s: %v", strings.ToUpper(ue.Op), target, ue.Err)
}
