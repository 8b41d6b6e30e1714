// Package sendertest lets a notification service's tests run the example
// its section of docs/notifications.md shows: the ConfigMap is parsed by
// the notifier's own config package, the service built from the options
// it yields and a template rendered for a sample rollout, so the
// documented configuration is the one that is tested.
package sendertest

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/config"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// Example parses the first ```yaml block holding a ConfigMap in the
// docs/notifications.md section whose heading line is heading ("###
// Webhook"), with the
// file's Secret and then secrets resolving $name references.
func Example(t testing.TB, heading string, secrets map[string]string) *config.Config {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root(t), "docs", "notifications.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/notifications.md has no section %q", heading)
	}
	section, _, _ = strings.Cut(section, "\n### ")
	var block string
	for rest := section; block == ""; {
		var ok bool
		if _, rest, ok = strings.Cut(rest, "```yaml\n"); !ok {
			t.Fatalf("docs/notifications.md %s has no yaml example with a ConfigMap", heading)
		}
		var b string
		b, rest, _ = strings.Cut(rest, "```")
		if strings.Contains(b, "kind: ConfigMap") {
			block = b
		}
	}
	cm, secret, err := config.ParseFile([]byte(block))
	if err != nil {
		t.Fatalf("the example of %s: %v", heading, err)
	}
	all := config.Map{}
	maps.Copy(all, secret)
	maps.Copy(all, secrets)
	c, err := config.Parse(cm, all)
	if err != nil {
		t.Fatalf("the example of %s: %v", heading, err)
	}
	return c
}

// Service is the configured service named name, its top-level options
// replaced by those in set (to point it at a test server).
func Service(t testing.TB, c *config.Config, name string, set map[string]any) notify.ServiceConfig {
	t.Helper()
	for _, s := range c.Services() {
		if s.Name != name {
			continue
		}
		opts := map[string]any{}
		if err := json.Unmarshal(s.Options, &opts); err != nil {
			t.Fatal(err)
		}
		maps.Copy(opts, set)
		raw, err := json.Marshal(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Options = raw
		return s
	}
	t.Fatalf("the example configures no service %q (it has %v)", name, c.ServiceNames())
	return notify.ServiceConfig{}
}

// New builds, with newSender, the configured service named name, its
// options replaced by those in set (Service); the test fails if it
// cannot be built.
func New(t testing.TB, c *config.Config, newSender notify.Factory, name string, set map[string]any) notify.Sender {
	t.Helper()
	s, err := newSender(Service(t, c, name, set))
	if err != nil {
		t.Fatalf("New %s: %v", name, err)
	}
	return s
}

// Send delivers m with s; the test fails if it is not delivered.
func Send(t testing.TB, s notify.Sender, m notify.Message) notify.Receipt {
	t.Helper()
	r, err := s.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return r
}

// Rollout is the sample the examples render for: the canary rollout
// shop/web at revision 3, with the annotations the GitHub example reads.
var Rollout = events.Ref{Namespace: "shop", Name: "web"}

// Vars are what templates see for Rollout in phase (Argo's names).
func Vars(phase, message string) map[string]any {
	return map[string]any{
		"rollout": map[string]any{
			"apiVersion": "argoproj.io/v1alpha1",
			"kind":       "Rollout",
			"metadata": map[string]any{
				"name": Rollout.Name, "namespace": Rollout.Namespace,
				"annotations": map[string]any{
					"rollout.argoproj.io/revision": "3",
					"sluice.io/git-repo":           "https://github.com/acme/shop",
					"sluice.io/git-commit":         "3f2a9c1e0b7d4a8e9f6c5b4a3d2e1f0a9b8c7d6e",
				},
			},
			"spec": map[string]any{
				"replicas": 4.0,
				"strategy": map[string]any{"canary": map[string]any{"steps": []any{map[string]any{"setWeight": 20.0}}}},
			},
			"status": map[string]any{"phase": phase, "message": message},
		},
		"context": map[string]any{},
		"sluice": map[string]any{
			"event":        map[string]any{"id": "ev-1", "type": "io.sluice.rollout.completed.v1", "time": time.Unix(0, 0).UTC().Format(time.RFC3339)},
			"dashboardURL": "https://sluice.example/rollouts/shop/web",
		},
	}
}

// Message renders templates for the sample rollout and makes the
// message the notifier would queue for destination.
func Message(t testing.TB, c *config.Config, trigger string, templates []string, vars map[string]any, dest notify.Destination) notify.Message {
	t.Helper()
	n, err := c.Render(templates, vars)
	if err != nil {
		t.Fatalf("render %v: %v", templates, err)
	}
	return notify.Message{
		ID: "ev-1." + trigger + "." + dest.Service, Rollout: Rollout, Trigger: trigger, Templates: templates,
		Destination: dest, Notification: n, Event: notify.EventRef{ID: "ev-1", Type: "io.sluice.rollout.completed.v1"},
	}
}

// OptionCase is a service's options (JSON) that the service's New must
// accept, when WantErr is "", or refuse with an error that wraps
// notify.ErrInvalidOptions and contains WantErr.
type OptionCase struct {
	Name, Options, WantErr string
}

// CheckOptions runs newSender on the options of each case, as a service
// of type typ, in a subtest named after the case. No error may contain
// any of secrets: option values are often secrets.
func CheckOptions(t *testing.T, newSender notify.Factory, typ string, cases []OptionCase, secrets ...string) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			_, err := newSender(notify.ServiceConfig{Name: typ, Type: typ, Options: json.RawMessage(tc.Options)})
			if tc.WantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.WantErr) || !errors.Is(err, notify.ErrInvalidOptions) {
				t.Fatalf("New = %v, want an ErrInvalidOptions containing %q", err, tc.WantErr)
			}
			for _, secret := range secrets {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a secret", err)
				}
			}
		})
	}
}

// root is the module's directory.
func root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
