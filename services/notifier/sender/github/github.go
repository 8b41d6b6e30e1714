// Package github is the notifier's GitHub service (service.github): it
// sets a commit status (Repositories.CreateStatus through go-github) on
// the repository and commit a template's github part names, as a token
// or as a GitHub App installation.
package github

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	gh "github.com/google/go-github/v74/github"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Type is the service type: service.github.
const Type = "github"

// maxDescription is the longest description GitHub keeps on a status.
const maxDescription = 140

// Options are the service's options: notifications-engine's (appID,
// installationID, privateKey, enterpriseBaseURL, insecureSkipVerify) and
// Sluice's token, for a personal or fine-grained access token with the
// "Commit statuses: write" permission.
type Options struct {
	Token string `json:"token,omitempty"`
	// AppID and InstallationID are numbers (or strings of digits, as
	// Argo accepts them).
	AppID          any    `json:"appID,omitempty"`
	InstallationID any    `json:"installationID,omitempty"`
	PrivateKey     string `json:"privateKey,omitempty"`
	// EnterpriseBaseURL is a GitHub Enterprise Server's URL
	// (https://github.example.com, /api/v3/ is added when missing).
	EnterpriseBaseURL string `json:"enterpriseBaseURL,omitempty"`
	notify.HTTPOptions
	notify.IgnoredOptions

	appID, installationID int64
	key                   *rsa.PrivateKey
}

// Validate checks o: a token, or an App's id, installation id and key.
// Its errors never quote the token or the key.
func (o *Options) Validate() error {
	app := o.AppID != nil || o.InstallationID != nil || o.PrivateKey != ""
	switch {
	case o.Token != "" && app:
		return fmt.Errorf(`set either option "token" or the GitHub App's "appID", "installationID" and "privateKey", not both`)
	case o.Token == "" && !app:
		return fmt.Errorf(`option "token" or the GitHub App's "appID", "installationID" and "privateKey" are required`)
	}
	if app {
		var err error
		if o.appID, err = positiveInt("appID", o.AppID); err != nil {
			return err
		}
		if o.installationID, err = positiveInt("installationID", o.InstallationID); err != nil {
			return err
		}
		if o.PrivateKey == "" {
			return fmt.Errorf(`option "privateKey" is required with appID`)
		}
		if o.key, err = jwt.ParseRSAPrivateKeyFromPEM([]byte(o.PrivateKey)); err != nil {
			return fmt.Errorf(`option "privateKey": want the App's RSA private key in PEM, as GitHub gives it`)
		}
	}
	if o.EnterpriseBaseURL != "" {
		if _, err := notify.ParseHTTPURL("enterpriseBaseURL", o.EnterpriseBaseURL); err != nil {
			return err
		}
	}
	return nil
}

func positiveInt(option string, v any) (int64, error) {
	var n int64
	switch v := v.(type) {
	case float64:
		n = int64(v)
		if float64(n) != v {
			n = 0
		}
	case string:
		n, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	}
	if n <= 0 {
		return 0, fmt.Errorf("option %q: want a positive whole number", option)
	}
	return n, nil
}

// Sender sends a service's notifications.
type Sender struct {
	name   string
	client *gh.Client
}

var _ notify.Sender = (*Sender)(nil)

// New builds the sender of one service.github (a notify.Factory).
func New(cfg notify.ServiceConfig) (notify.Sender, error) {
	var o Options
	httpClient, err := notify.DecodeHTTPOptions(cfg, &o)
	if err != nil {
		return nil, err
	}
	newClient := func(c *http.Client) (*gh.Client, error) {
		client := gh.NewClient(c)
		if o.EnterpriseBaseURL == "" {
			return client, nil
		}
		client, err := client.WithEnterpriseURLs(o.EnterpriseBaseURL, o.EnterpriseBaseURL)
		if err != nil {
			return nil, fmt.Errorf(`%w: option "enterpriseBaseURL": want a base URL`, notify.ErrInvalidOptions)
		}
		return client, nil
	}
	transport := httpClient.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	var client *gh.Client
	if o.Token != "" {
		if client, err = newClient(httpClient); err != nil {
			return nil, err
		}
		client = client.WithAuthToken(o.Token)
	} else {
		// The App authenticates with a JWT to get an installation token,
		// which sets the statuses; both are minted as they are needed.
		appHTTP := *httpClient
		appHTTP.Transport = bearer{transport, func(context.Context) (string, error) { return appJWT(o.appID, o.key, time.Now()) }}
		apps, err := newClient(&appHTTP)
		if err != nil {
			return nil, err
		}
		inst := &installation{apps: apps.Apps, id: o.installationID, now: time.Now}
		instHTTP := *httpClient
		instHTTP.Transport = bearer{transport, inst.token}
		if client, err = newClient(&instHTTP); err != nil {
			return nil, err
		}
	}
	return &Sender{name: cfg.Name, client: client}, nil
}

// Send sets the commit status of m's github part on its repository and
// commit; the description is m's plain message (cut to 140 characters).
// The recipient is not used.
func (s *Sender) Send(ctx context.Context, m notify.Message) (notify.Receipt, error) {
	service := "github " + s.name
	g := m.Notification.GitHub
	if g == nil || g.Status == nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: template %s has no github.status to send", service, strings.Join(m.Templates, ", ")))
	}
	owner, repo, err := RepoFromURL(g.RepoURLPath)
	if err != nil {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: github.repoURLPath: %w", service, err))
	}
	sha := strings.TrimSpace(g.RevisionPath)
	if sha == "" || strings.ContainsAny(sha, " \t\n/") {
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: github.revisionPath rendered %q, want a commit sha", service, sha))
	}
	state := strings.TrimSpace(g.Status.State)
	switch state {
	case "error", "failure", "pending", "success":
	default:
		return notify.Receipt{}, notify.Permanent(fmt.Errorf("%s: github.status.state is %q, want error, failure, pending or success", service, state))
	}
	status := &gh.RepoStatus{State: &state}
	if d := truncate(strings.TrimSpace(m.Notification.Message), maxDescription); d != "" {
		status.Description = &d
	}
	if g.Status.Label != "" {
		status.Context = &g.Status.Label
	}
	if g.Status.TargetURL != "" {
		status.TargetURL = &g.Status.TargetURL
	}
	ctx, cancel := context.WithTimeout(ctx, notify.SendTimeout)
	defer cancel()
	_, _, err = s.client.Repositories.CreateStatus(ctx, owner, repo, sha, status)
	if err != nil {
		return notify.Receipt{}, classify(fmt.Sprintf("%s: %s/%s@%s", service, owner, repo, sha), err)
	}
	return notify.Receipt{}, nil
}

// classify maps go-github's errors onto delivery: rate limits are
// retried when GitHub says, 408/5xx and network errors with backoff,
// every other answer is final.
func classify(what string, err error) error {
	var (
		rate  *gh.RateLimitError
		abuse *gh.AbuseRateLimitError
		resp  *gh.ErrorResponse
	)
	wrapped := fmt.Errorf("%s: %w", what, err)
	switch {
	case notify.IsPermanent(err):
		return notify.Permanent(wrapped)
	case errors.As(err, &rate):
		return notify.RetryAfter(wrapped, max(time.Until(rate.Rate.Reset.Time), 0))
	case errors.As(err, &abuse):
		if abuse.RetryAfter != nil {
			return notify.RetryAfter(wrapped, max(*abuse.RetryAfter, 0))
		}
		return wrapped
	case errors.As(err, &resp) && resp.Response != nil:
		code := resp.Response.StatusCode
		switch {
		case code == http.StatusTooManyRequests:
			if d, ok := retryAfter(resp.Response); ok {
				return notify.RetryAfter(wrapped, d)
			}
			return wrapped
		case code == http.StatusRequestTimeout || code >= 500:
			return wrapped
		case code == http.StatusNotFound:
			return notify.Permanent(fmt.Errorf("%w (no such repository or commit, or the credentials cannot see it)", wrapped))
		case code == http.StatusUnauthorized:
			return notify.Permanent(fmt.Errorf("%w (the token or App key is not accepted)", wrapped))
		case code == http.StatusUnprocessableEntity:
			return notify.Permanent(fmt.Errorf("%w (a commit takes at most 1000 statuses per context)", wrapped))
		default:
			return notify.Permanent(wrapped)
		}
	default:
		return wrapped
	}
}

func retryAfter(r *http.Response) (time.Duration, bool) {
	if d, ok := notify.ParseRetryAfter(r.Header.Get("Retry-After"), time.Now()); ok {
		return d, true
	}
	if s, err := strconv.ParseInt(r.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
		return max(time.Until(time.Unix(s, 0)), 0), true
	}
	return 0, false
}

var (
	scpLike  = regexp.MustCompile(`^[\w.-]+@([\w.-]+):(.+)$`)
	nameLike = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// RepoFromURL reads the owner and repository from a repository URL:
// https://github.com/acme/shop(.git), git@github.com:acme/shop.git,
// ssh://git@github.com/acme/shop, or acme/shop.
func RepoFromURL(raw string) (owner, repo string, err error) {
	s := strings.TrimSpace(raw)
	var path string
	switch {
	case s == "":
		return "", "", errors.New("rendered empty, want the repository's URL (see the docs: a Rollout annotation such as sluice.io/git-repo)")
	case scpLike.MatchString(s) && !strings.Contains(s, "://"):
		path = scpLike.FindStringSubmatch(s)[2]
	case strings.Contains(s, "://"):
		u, perr := url.Parse(s)
		if perr != nil || u.Host == "" {
			return "", "", fmt.Errorf("%q is not a repository URL", raw)
		}
		path = u.Path
	default:
		path = s
	}
	parts := strings.FieldsFunc(strings.TrimSuffix(strings.TrimSuffix(path, "/"), ".git"), func(r rune) bool { return r == '/' })
	if len(parts) < 2 || !nameLike.MatchString(parts[0]) || !nameLike.MatchString(parts[1]) {
		return "", "", fmt.Errorf("%q does not name a repository, want https://github.com/<owner>/<repo>", raw)
	}
	return parts[0], parts[1], nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// bearer sets "Authorization: Bearer <token>" on each request.
type bearer struct {
	base  http.RoundTripper
	token func(context.Context) (string, error)
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := b.token(r.Context())
	if err != nil {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return b.base.RoundTrip(r)
}

// appJWT is the token a GitHub App authenticates as itself with: RS256,
// issued a minute back (clock drift), valid for nine of the ten minutes
// GitHub allows.
func appJWT(appID int64, key *rsa.PrivateKey, now time.Time) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    strconv.FormatInt(appID, 10),
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}).SignedString(key)
}

// installation keeps an App installation's access token (valid an hour)
// and gets a new one when it is five minutes from expiring.
type installation struct {
	apps *gh.AppsService
	id   int64
	now  func() time.Time

	mu      sync.Mutex
	tok     string
	expires time.Time
}

func (i *installation) token(ctx context.Context) (string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.tok != "" && i.now().Before(i.expires.Add(-5*time.Minute)) {
		return i.tok, nil
	}
	t, _, err := i.apps.CreateInstallationToken(ctx, i.id, nil)
	if err != nil {
		return "", classify(fmt.Sprintf("installation %d access token", i.id), err)
	}
	i.tok, i.expires = t.GetToken(), t.GetExpiresAt().Time
	return i.tok, nil
}
