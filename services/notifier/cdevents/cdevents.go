// Package cdevents emits Sluice's rollouts as CDEvents (https://cdevents.dev,
// spec v0.4.1): a completed first revision is dev.cdevents.service.deployed,
// a completed later revision service.upgraded, and an abort (traffic back
// on the stable revision) or a completed undo service.rolledback; each a
// CloudEvent sent to an HTTP sink or published on a NATS subject. The
// mapping (Config.Of) is pure; the Emitter reads the rollout's manifest
// and sends.
package cdevents

import (
	"fmt"
	"net/url"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// SpecVersion is the CDEvents specification the events follow.
const SpecVersion = "0.4.1"

// CDEvent types (spec v0.4.1).
const (
	TypeServiceDeployed   = "dev.cdevents.service.deployed.0.2.0"
	TypeServiceUpgraded   = "dev.cdevents.service.upgraded.0.2.0"
	TypeServiceRolledBack = "dev.cdevents.service.rolledback.0.2.0"
)

// CDEvent is a service event of the CDEvents specification: the data of
// the CloudEvent.
type CDEvent struct {
	Context Context `json:"context"`
	Subject Subject `json:"subject"`
}

// Context is a CDEvent's context.
type Context struct {
	Version   string `json:"version"`
	ID        string `json:"id"`
	Source    string `json:"source"`
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
}

// Subject is a service subject.
type Subject struct {
	ID      string  `json:"id"`
	Source  string  `json:"source,omitempty"`
	Type    string  `json:"type"`
	Content Content `json:"content"`
}

// Content is a service's content: where it runs and what runs.
type Content struct {
	Environment Environment `json:"environment"`
	// ArtifactID is the running image as a purl (pkg:oci/...).
	ArtifactID string `json:"artifactId"`
}

// Input is what a CDEvent is made of.
type Input struct {
	// Event is the status event and Data its data.
	Event events.Event
	Data  events.StatusData
	// Rollout is the rollout's manifest with the pod template of the
	// revision the event is about: the completed revision for completed,
	// the stable one (now serving again) for aborted.
	Rollout *spec.Rollout
	// Undo says the update that completed was started by an undo command.
	Undo bool
}

// Of maps a status event to its CDEvent, and reports false when the event
// has none: only completed and aborted do, and only with a manifest that
// names an image.
//   - completed of revision 1: service.deployed;
//   - completed of a later revision: service.upgraded, or
//     service.rolledback when an undo started the update;
//   - aborted: service.rolledback, the artifact being the stable
//     revision's image.
//
// The CloudEvent's id is "cdevents/" and the status event's id, so a
// redelivered status event gives the same id.
func (c Config) Of(in Input) (cloudevents.Event, bool) {
	var typ string
	switch in.Event.Type() {
	case events.TypeRolloutCompleted:
		switch {
		case in.Undo:
			typ = TypeServiceRolledBack
		case in.Data.Status.Revision <= 1:
			typ = TypeServiceDeployed
		default:
			typ = TypeServiceUpgraded
		}
	case events.TypeRolloutAborted:
		typ = TypeServiceRolledBack
	default:
		return cloudevents.Event{}, false
	}
	if in.Rollout == nil {
		return cloudevents.Event{}, false
	}
	cs := in.Rollout.Spec.Template.Spec.Containers
	if len(cs) == 0 || cs[0].Image == "" {
		return cloudevents.Event{}, false
	}
	artifact, err := PURL(cs[0].Image)
	if err != nil {
		return cloudevents.Event{}, false
	}
	ref := events.Ref{Namespace: in.Data.Status.Namespace, Name: in.Data.Status.Name}
	if ref.Name == "" {
		if r, err := events.ParseRef(in.Event.Subject()); err == nil {
			ref = r
		}
	}
	env := c.Environment
	if env.ID == "" {
		env.ID = ref.Namespace
	}
	id := "cdevents/" + in.Event.ID()
	t := in.Event.Time().UTC()
	cd := CDEvent{
		Context: Context{Version: SpecVersion, ID: id, Source: c.Source, Type: typ, Timestamp: t.Format("2006-01-02T15:04:05.000Z07:00")},
		Subject: Subject{ID: ref.String(), Source: c.Source, Type: "service", Content: Content{Environment: env, ArtifactID: artifact}},
	}
	ce := cloudevents.NewEvent()
	ce.SetID(id)
	ce.SetSource(c.Source)
	ce.SetType(typ)
	ce.SetSubject(ref.String())
	ce.SetTime(t)
	if err := ce.SetData(cloudevents.ApplicationJSON, cd); err != nil {
		return cloudevents.Event{}, false
	}
	return ce, true
}

// PURL is image as a package URL of type oci: its name is the image's last
// path segment, its version the digest when the image has one, and its
// qualifiers repository_url (the image's repository, Docker Hub's made
// explicit: nginx is docker.io/library/nginx) and tag (latest when the
// image has neither tag nor digest).
//
//	registry.example/shop/web:2 -> pkg:oci/web?repository_url=registry.example/shop/web&tag=2
//	ghcr.io/acme/web@sha256:ab  -> pkg:oci/web@sha256%3Aab?repository_url=ghcr.io/acme/web
func PURL(image string) (string, error) {
	repo, digest, _ := strings.Cut(image, "@")
	tag := ""
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	if repo == "" || strings.ContainsAny(repo, " \t") {
		return "", fmt.Errorf("%q is not an image reference", image)
	}
	if digest == "" && tag == "" {
		tag = "latest"
	}
	first, _, hasSlash := strings.Cut(repo, "/")
	if !hasSlash || !strings.ContainsAny(first, ".:") && first != "localhost" {
		if !hasSlash {
			repo = "library/" + repo
		}
		repo = "docker.io/" + repo
	}
	name := strings.ToLower(repo[strings.LastIndex(repo, "/")+1:])
	var b strings.Builder
	b.WriteString("pkg:oci/" + url.PathEscape(name))
	if digest != "" {
		b.WriteString("@" + escape(digest))
	}
	b.WriteString("?repository_url=" + escape(strings.ToLower(repo)))
	if tag != "" {
		b.WriteString("&tag=" + escape(tag))
	}
	return b.String(), nil
}

// escape percent-encodes s as a purl's version or qualifier value: ':'
// becomes %3A, '/' stays.
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "%2F", "/")
}
