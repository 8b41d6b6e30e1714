// Package configtest is what the notifier's tests share about its
// configuration: Argo Rollouts' notification catalog
// (config/testdata/argo-catalog.yaml, a Slack service whose token is the
// secret slack-token) and the pipeline a status event goes through
// against it (trigger.Of, Destinations, Conditions, Render).
package configtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/notifier/config"
	"github.com/sluicehq/sluice/services/notifier/notify"
	"github.com/sluicehq/sluice/services/notifier/trigger"
)

// CatalogFile is the absolute path of Argo's catalog.
var CatalogFile = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "argo-catalog.yaml")
}()

// Catalog parses CatalogFile with the secret slack-token set.
func Catalog(t testing.TB) *config.Config {
	t.Helper()
	data, err := os.ReadFile(CatalogFile)
	if err != nil {
		t.Fatal(err)
	}
	cm, secret, err := config.ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(cm, config.Chain(config.Map(secret), config.Map{"slack-token": "xoxb-test"}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Fired is a trigger of the catalog that a status event fires: its
// conditions' outcomes, and the notification each triggered one renders.
type Fired struct {
	Trigger  string
	Outcomes []config.Outcome
	Sent     []notify.Notification
}

// Fire runs the status event e (data, after the snapshot prev) of ro
// through the notifier's pipeline against cfg, a catalog whose rollouts
// subscribe slack:deploys. Sluice's own triggers, not in Argo's catalog,
// are left out. It fails t when one of Argo's triggers is missing from
// cfg, when a trigger's destinations are not slack:deploys, or when a
// condition or template fails.
func Fire(t testing.TB, cfg *config.Config, ro *spec.Rollout, e events.Event, data events.StatusData, prev *events.Snapshot) []Fired {
	t.Helper()
	vars := trigger.Vars(trigger.Rollout(ro, data), e, data, cfg.Context(), "")
	var out []Fired
	for _, tr := range trigger.Of(e, data, prev) {
		if !slices.Contains(cfg.Triggers(), tr) {
			if slices.Contains(trigger.Argo, tr) {
				t.Fatalf("Argo's trigger %s is not in the catalog", tr)
			}
			continue // Sluice's own: not in Argo's catalog
		}
		if d := cfg.Destinations(tr, ro.Annotations, ro.Labels); len(d) != 1 || d[0].String() != "slack:deploys" {
			t.Fatalf("%s: destinations = %v, want slack:deploys", tr, d)
		}
		outcomes, err := cfg.Conditions(tr, vars)
		if err != nil {
			t.Fatalf("%s: conditions: %v", tr, err)
		}
		f := Fired{Trigger: tr, Outcomes: outcomes}
		for _, o := range outcomes {
			if !o.Triggered {
				continue
			}
			n, err := cfg.Render(o.Templates, vars)
			if err != nil {
				t.Fatalf("event %s (%s), %s: %v", e.ID(), e.Type(), tr, err)
			}
			f.Sent = append(f.Sent, n)
		}
		out = append(out, f)
	}
	return out
}

// Rollout describes a Rollout subscribed to slack:deploys, as the
// catalog's tests apply them.
type Rollout struct {
	Name      string
	Namespace string // "" leaves it out
	Labels    string // a YAML flow map of metadata.labels, "" for none
	Replicas  int
	// Containers is the pod's YAML flow list of containers.
	Containers string
	// Strategy is spec.strategy's YAML, each line indented four spaces.
	Strategy string
}

// YAML is the Rollout's manifest: selector and pod labels app: Name.
func (r Rollout) YAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: %s\n", r.Name)
	if r.Namespace != "" {
		fmt.Fprintf(&b, "  namespace: %s\n", r.Namespace)
	}
	if r.Labels != "" {
		fmt.Fprintf(&b, "  labels: %s\n", r.Labels)
	}
	fmt.Fprintf(&b, `  annotations:
    notifications.argoproj.io/subscribe.slack: deploys
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec: {containers: %s}
  strategy:
%s`, r.Replicas, r.Name, r.Name, r.Containers, r.Strategy)
	return b.String()
}
