package newrelic

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/newrelic/newrelic-client-go/v2/pkg/region"

	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// DefaultProfile is the Secret a metric without a profile reads, as in
// Argo Rollouts.
const DefaultProfile = "newrelic"

// The keys of a profile Secret, Argo Rollouts' names.
const (
	// KeyPersonalAPIKey is the user key NerdGraph authenticates (secret;
	// required).
	KeyPersonalAPIKey = "personal-api-key"
	// KeyAccountID is the account the NRQL query runs in (required).
	KeyAccountID = "account-id"
	// KeyRegion is "us" (the default) or "eu" (also "jp", "gov").
	KeyRegion = "region"
	// KeyBaseURLNerdGraph replaces the region's NerdGraph URL, for a proxy
	// or a test.
	KeyBaseURLNerdGraph = "base-url-nerdgraph"
	// KeyBaseURLRest is the REST API's URL in Argo Rollouts' profiles; NRQL
	// queries do not use the REST API, so it is not read.
	KeyBaseURLRest = "base-url-rest"
)

// profile is the account settings of one metric, read from its Secret.
type profile struct {
	name      string
	apiKey    string
	accountID int
	// region is the client's region name ("US", "EU").
	region       region.Name
	nerdGraphURL string
}

// secretReader is Request.ReadSecret or Request.ReadSetting.
type secretReader func(ctx context.Context, name, key string) (string, error)

// readProfile reads the profile Secret name (DefaultProfile when empty):
// the personal API key as a secret, the rest as settings. A missing
// required key is an error that says what to set; a missing optional key
// takes its default. No error holds the API key.
func readProfile(ctx context.Context, req metrics.Request, name string) (profile, error) {
	if name == "" {
		name = DefaultProfile
	}
	p := profile{name: name}
	key, err := req.ReadSecret(ctx, name, KeyPersonalAPIKey)
	if err != nil {
		return p, fmt.Errorf("newRelic credentials: %w", err)
	}
	if p.apiKey = strings.TrimSpace(key); p.apiKey == "" {
		return p, fmt.Errorf("newRelic credentials: key %s of the Secret %q is empty", KeyPersonalAPIKey, name)
	}
	account, err := req.ReadSetting(ctx, name, KeyAccountID)
	if err != nil {
		return p, fmt.Errorf("newRelic account: %w", err)
	}
	if p.accountID, err = parseAccountID(account); err != nil {
		return p, fmt.Errorf("newRelic account: key %s of the Secret %q: %w", KeyAccountID, name, err)
	}
	reg, err := optional(ctx, req.ReadSetting, name, KeyRegion)
	if err != nil {
		return p, fmt.Errorf("newRelic region: %w", err)
	}
	if p.region, err = parseRegion(reg); err != nil {
		return p, fmt.Errorf("newRelic region: key %s of the Secret %q: %w", KeyRegion, name, err)
	}
	base, err := optional(ctx, req.ReadSetting, name, KeyBaseURLNerdGraph)
	if err != nil {
		return p, fmt.Errorf("newRelic NerdGraph URL: %w", err)
	}
	if p.nerdGraphURL, err = parseBaseURL(base); err != nil {
		return p, fmt.Errorf("newRelic NerdGraph URL: key %s of the Secret %q: %w", KeyBaseURLNerdGraph, name, err)
	}
	return p, nil
}

// optional reads a key that may be absent: absent or empty is "". Any
// other failure (the Secret may not be read) is an error, not a default.
func optional(ctx context.Context, read secretReader, name, key string) (string, error) {
	v, err := read(ctx, name, key)
	if errors.Is(err, metrics.ErrSecretNotFound) {
		return "", nil
	}
	return strings.TrimSpace(v), err
}

func parseAccountID(s string) (int, error) {
	id, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not an account id (a positive integer)", s)
	}
	return id, nil
}

// parseRegion accepts the regions the client knows, in any case; empty is
// the US region, as in Argo Rollouts. Argo Rollouts falls back to the US
// region for an unknown name; Sluice refuses it rather than send the key
// to a region it was not meant for.
func parseRegion(s string) (region.Name, error) {
	if s == "" {
		return region.US, nil
	}
	name, err := region.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a New Relic region; use us or eu (or jp, gov)", s)
	}
	return name, nil
}

// parseBaseURL checks a NerdGraph URL; "" is none. The URL is shown in the
// error without its query string, which may hold a credential.
func parseBaseURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("not an http or https URL")
	}
	return s, nil
}
