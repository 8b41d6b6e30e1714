package cdevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ErrInvalidConfig is wrapped by every problem of the cdevents value.
var ErrInvalidConfig = errors.New("invalid cdevents configuration")

// Modes of the CloudEvents HTTP binding (Config.Mode).
const (
	ModeBinary     = "binary"
	ModeStructured = "structured"
)

// DefaultSource is the CDEvents' source when none is configured.
const DefaultSource = "/sluice"

// Config is the value of the configuration's cdevents key: where CDEvents
// go and what they say about where the service runs.
type Config struct {
	// Sink is an HTTP(S) URL the events are POSTed to (the CloudEvents
	// HTTP binding). Exactly one of Sink and Subject.
	Sink string `json:"sink,omitempty"`
	// Subject is a NATS subject the events are published to, structured
	// (a CloudEvents JSON document per message), with core NATS through
	// the notifier's connection.
	Subject string `json:"subject,omitempty"`
	// Source is the CDEvents' context.source and the CloudEvents' source;
	// default "/sluice".
	Source string `json:"source,omitempty"`
	// Environment is where the rollouts' services run.
	Environment Environment `json:"environment,omitempty"`
	// Headers are added to each HTTP request (an Authorization, say: use
	// a $name secret reference).
	Headers map[string]string `json:"headers,omitempty"`
	// Mode is the HTTP binding's mode: binary (default: ce-* headers, the
	// CDEvent as the body) or structured (one application/cloudevents+json
	// document).
	Mode string `json:"mode,omitempty"`
}

// Environment names the environment of every CDEvent.
type Environment struct {
	// ID is the environment's id; default the rollout's namespace.
	ID string `json:"id,omitempty"`
	// Source is the environment's source (a cluster's URL, say); none by
	// default.
	Source string `json:"source,omitempty"`
}

// ParseConfig reads the cdevents value (JSON, secrets resolved), sets its
// defaults and validates it.
func ParseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return c, fmt.Errorf("cdevents: %w: %v", ErrInvalidConfig, err)
	}
	c.Defaults()
	return c, c.Validate()
}

// Defaults fills what is unset.
func (c *Config) Defaults() {
	if c.Source == "" {
		c.Source = DefaultSource
	}
	if c.Mode == "" {
		c.Mode = ModeBinary
	}
}

// Validate reports every problem with its field path under cdevents,
// each wrapping ErrInvalidConfig. Header values (secrets) are never
// quoted.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("cdevents.%s: %w: %s", field, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	switch {
	case c.Sink == "" && c.Subject == "":
		bad("sink", "set sink (an HTTP URL) or subject (a NATS subject)")
	case c.Sink != "" && c.Subject != "":
		bad("sink", "set sink or subject, not both")
	case c.Sink != "":
		if u, err := url.Parse(c.Sink); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("sink", "%q is not an http(s) URL", redactURL(c.Sink))
		}
	default:
		if !validSubject(c.Subject) {
			bad("subject", "%q is not a NATS subject to publish to (no wildcards, no empty tokens)", c.Subject)
		} else if strings.HasPrefix(c.Subject, "sluice.") || strings.HasPrefix(c.Subject, "$") {
			bad("subject", "%q is the bus's own: pick a subject outside sluice.> and $>", c.Subject)
		}
	}
	if c.Mode != ModeBinary && c.Mode != ModeStructured {
		bad("mode", "%q: want binary or structured", c.Mode)
	}
	if _, err := url.Parse(c.Source); err != nil || c.Source == "" {
		bad("source", "%q is not a URI-reference", c.Source)
	}
	if c.Subject != "" && len(c.Headers) > 0 {
		bad("headers", "only for an HTTP sink")
	}
	for k := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") || http.CanonicalHeaderKey(k) == "" {
			bad("headers", "%q is not a header name", k)
		}
	}
	return errors.Join(errs...)
}

func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return false
		}
	}
	return true
}

// redactURL is a URL without its user information and query, which may
// hold credentials.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unreadable URL)"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}
