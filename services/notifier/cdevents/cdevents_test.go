package cdevents

import (
	"encoding/json"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

func TestPURL(t *testing.T) {
	for image, want := range map[string]string{
		"registry.example/shop/web:2":        "pkg:oci/web?repository_url=registry.example/shop/web&tag=2",
		"ghcr.io/acme/web@sha256:abc123":     "pkg:oci/web@sha256%3Aabc123?repository_url=ghcr.io/acme/web",
		"ghcr.io/acme/web:1.2@sha256:abc123": "pkg:oci/web@sha256%3Aabc123?repository_url=ghcr.io/acme/web&tag=1.2",
		"nginx":                              "pkg:oci/nginx?repository_url=docker.io/library/nginx&tag=latest",
		"nginx:1.27":                         "pkg:oci/nginx?repository_url=docker.io/library/nginx&tag=1.27",
		"bitnami/redis:7":                    "pkg:oci/redis?repository_url=docker.io/bitnami/redis&tag=7",
		"localhost:5000/web:dev":             "pkg:oci/web?repository_url=localhost%3A5000/web&tag=dev",
		"Registry.Example/Shop/Web:V2":       "pkg:oci/web?repository_url=registry.example/shop/web&tag=V2",
	} {
		if got, err := PURL(image); err != nil || got != want {
			t.Errorf("PURL(%q) = %q, %v; want %q", image, got, err, want)
		}
	}
	if _, err := PURL(":1"); err == nil {
		t.Error("PURL(:1) is not an error")
	}
}

// status builds a status event of typ for shop/web at revision rev.
func status(t *testing.T, typ string, rev int64) events.Event {
	t.Helper()
	ev, err := events.New("/sluice/orchestrator", typ, "shop/web", events.StatusData{Status: events.Snapshot{
		Namespace: "shop", Name: "web", Revision: rev, StableRevision: rev - 1, Phase: events.PhaseHealthy,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ev.SetID("status-1")
	ev.SetTime(time.Date(2026, 12, 6, 21, 0, 0, 123e6, time.UTC))
	return ev
}

func rollout(image string) *spec.Rollout {
	var r spec.Rollout
	r.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: image}, {Name: "sidecar", Image: "envoy:1"}}
	return &r
}

func TestOf(t *testing.T) {
	cfg := Config{Environment: Environment{Source: "https://k8s.example"}}
	cfg.Defaults()
	web2 := rollout("registry.example/shop/web:2")
	for _, tc := range []struct {
		name    string
		typ     string
		rev     int64
		m       *spec.Rollout
		undo    bool
		want    string // "" for none
		envID   string
		withCfg func(*Config)
	}{
		{name: "first revision completed: deployed", typ: events.TypeRolloutCompleted, rev: 1, m: web2, want: TypeServiceDeployed, envID: "shop"},
		{name: "later revision completed: upgraded", typ: events.TypeRolloutCompleted, rev: 3, m: web2, want: TypeServiceUpgraded, envID: "shop"},
		{name: "undo completed: rolledback", typ: events.TypeRolloutCompleted, rev: 4, m: web2, undo: true, want: TypeServiceRolledBack, envID: "shop"},
		{name: "aborted: rolledback", typ: events.TypeRolloutAborted, rev: 3, m: web2, want: TypeServiceRolledBack, envID: "shop"},
		{name: "environment from the configuration", typ: events.TypeRolloutCompleted, rev: 1, m: web2, want: TypeServiceDeployed, envID: "production",
			withCfg: func(c *Config) { c.Environment.ID = "production" }},
		{name: "paused: none", typ: events.TypeRolloutPaused, rev: 2, m: web2},
		{name: "degraded: none", typ: events.TypeRolloutDegraded, rev: 2, m: web2},
		{name: "step completed: none", typ: events.TypeRolloutStepCompleted, rev: 2, m: web2},
		{name: "no manifest: none", typ: events.TypeRolloutCompleted, rev: 1},
		{name: "no container: none", typ: events.TypeRolloutCompleted, rev: 1, m: &spec.Rollout{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.withCfg != nil {
				tc.withCfg(&c)
			}
			ev := status(t, tc.typ, tc.rev)
			var data events.StatusData
			if err := events.DecodeData(ev, &data); err != nil {
				t.Fatal(err)
			}
			ce, ok := c.Of(Input{Event: ev, Data: data, Rollout: tc.m, Undo: tc.undo})
			if ok != (tc.want != "") {
				t.Fatalf("Of = %v, want an event %v", ok, tc.want != "")
			}
			if !ok {
				return
			}
			if err := ce.Validate(); err != nil {
				t.Errorf("not a valid CloudEvent: %v", err)
			}
			if ce.Type() != tc.want || ce.ID() != "cdevents/status-1" || ce.Source() != "/sluice" || ce.Subject() != "shop/web" {
				t.Errorf("CloudEvent %s %s from %s about %s", ce.Type(), ce.ID(), ce.Source(), ce.Subject())
			}
			cd := decodeCD(t, ce)
			want := CDEvent{
				Context: Context{Version: "0.4.1", ID: "cdevents/status-1", Source: "/sluice", Type: tc.want, Timestamp: "2026-12-06T21:00:00.123Z"},
				Subject: Subject{ID: "shop/web", Source: "/sluice", Type: "service", Content: Content{
					Environment: Environment{ID: tc.envID, Source: "https://k8s.example"},
					ArtifactID:  "pkg:oci/web?repository_url=registry.example/shop/web&tag=2",
				}},
			}
			if cd != want {
				t.Errorf("CDEvent\n got %+v\nwant %+v", cd, want)
			}
		})
	}
}

// decodeCD reads the CDEvent in ce's data, checking the document has
// exactly the spec's fields.
func decodeCD(t *testing.T, ce cloudevents.Event) CDEvent {
	t.Helper()
	var raw map[string]map[string]any
	if err := json.Unmarshal(ce.Data(), &raw); err != nil {
		t.Fatalf("data %s: %v", ce.Data(), err)
	}
	for _, k := range []string{"version", "id", "source", "type", "timestamp"} {
		if _, ok := raw["context"][k]; !ok {
			t.Errorf("no context.%s in %s", k, ce.Data())
		}
	}
	var cd CDEvent
	if err := json.Unmarshal(ce.Data(), &cd); err != nil {
		t.Fatal(err)
	}
	return cd
}
