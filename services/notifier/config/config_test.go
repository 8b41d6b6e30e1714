package config

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/services/notifier/notify"
)

// testEnv is the environment the testdata files see.
var testEnv = Env(func(name string) string {
	return map[string]string{"SLUICE_SECRET_SMTP_PASSWORD": "smtp-secret", "SLUICE_SECRET_SLACK_TOKEN": "xoxb-env"}[name]
})

// load parses a testdata file as the notifier does: the file's Secret
// first, then the environment.
func load(t *testing.T, path string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cm, secret, err := ParseFile(data)
	if err != nil {
		return nil, err
	}
	return Parse(cm, Chain(Map(secret), testEnv))
}

// TestTestdata parses every file under testdata/. valid-* files must
// parse; invalid-* files start with "# want: X" lines, and every problem
// reported must start with one X, and every X must be reported.
func TestTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*-*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("found %d testdata files (%v)", len(files), err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			_, err := load(t, path)
			want := wants(t, path)
			switch {
			case strings.HasPrefix(name, "valid-"), name == "argo-catalog.yaml":
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
			case strings.HasPrefix(name, "invalid-"):
				if len(want) == 0 {
					t.Fatal(`an invalid- file must declare at least one "# want:" line`)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				got := strings.Split(err.Error(), "\n")
				for _, g := range got {
					if !matchesAny(g, want) {
						t.Errorf("unexpected problem: %s", g)
					}
				}
				for _, w := range want {
					if !anyMatches(got, w) {
						t.Errorf("problem not reported: %s\ngot:\n%s", w, err)
					}
				}
			default:
				t.Fatal("testdata file names start with valid- or invalid-")
			}
		})
	}
}

func wants(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "#") {
			break
		}
		if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			out = append(out, w)
		}
	}
	return out
}

func matchesAny(line string, want []string) bool {
	for _, w := range want {
		if strings.HasPrefix(line, w) {
			return true
		}
	}
	return false
}

func anyMatches(lines []string, w string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, w) {
			return true
		}
	}
	return false
}

func TestParseResolvesSecretsAndNamesServices(t *testing.T) {
	c, err := load(t, "testdata/valid-full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	opts := map[string]map[string]any{}
	for _, s := range c.Services() {
		names = append(names, s.Type+"/"+s.Name)
		var o map[string]any
		if err := json.Unmarshal(s.Options, &o); err != nil {
			t.Fatalf("%s options: %v", s.Name, err)
		}
		opts[s.Name] = o
	}
	if want := []string{"github/commits", "email/gmail", "slack/slack", "teams/teams", "webhook/github"}; !sameSet(names, want) {
		t.Fatalf("services = %v, want %v", names, want)
	}
	if got := opts["slack"]["token"]; got != "xoxb-secret-token" {
		t.Errorf("slack token = %v, want the Secret's stringData", got)
	}
	if got := opts["slack"]["signingSecret"]; got != "signing-secret" {
		t.Errorf("slack signingSecret = %v, want the Secret's data decoded", got)
	}
	if got := opts["gmail"]["password"]; got != "smtp-secret" {
		t.Errorf("email password = %v, want SLUICE_SECRET_SMTP_PASSWORD", got)
	}
	if got := opts["gmail"]["port"]; got != float64(465) {
		t.Errorf("email port = %v (%T), want the number 465", got, got)
	}
	hdr := opts["github"]["headers"]
	if !strings.Contains(string(mustJSON(t, hdr)), "token ghp-secret") {
		t.Errorf("webhook headers = %v, want the secret inside the string", hdr)
	}
	var cmd map[string]any
	if err := json.Unmarshal(c.Commands("slack"), &cmd); err != nil || cmd["signingSecret"] != "signing-secret" {
		t.Errorf("commands.slack = %s (%v)", c.Commands("slack"), err)
	}
	if c.Commands("teams") == nil || c.CDEvents() == nil {
		t.Errorf("commands.teams = %s, cdevents = %s; want both", c.Commands("teams"), c.CDEvents())
	}
	if got := c.Context(); got["env"] != "production" || got["region"] != "eu-west-1" {
		t.Errorf("context = %v", got)
	}
	if got := c.Triggers(); !reflect.DeepEqual(got, []string{"on-rollout-aborted", "on-rollout-completed"}) {
		t.Errorf("triggers = %v", got)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	_, err := load(t, "testdata/invalid-secrets.yaml")
	if err == nil {
		t.Fatal("want an error")
	}
	if !errors.Is(err, ErrSecretNotFound) {
		t.Errorf("err = %v, want ErrSecretNotFound", err)
	}
	if strings.Contains(err.Error(), "the-present-value") {
		t.Fatalf("an error shows a secret's value: %v", err)
	}
	// A bad base64 value in a Secret is named by key, never shown.
	_, _, err = ParseFile([]byte("kind: ConfigMap\n---\nkind: Secret\nmetadata: {name: s}\ndata:\n  token: not*base64-hunter2\n"))
	if err == nil || !strings.Contains(err.Error(), "data.token is not base64") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v, want data.token named and its value not shown", err)
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"lf": "a\n", "crlf": "b\r\n", "two": "c\n\n", "none": " d "} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := Dir(dir)
	for key, want := range map[string]string{"lf": "a", "crlf": "b", "two": "c\n", "none": " d "} {
		if got, ok := d.Lookup(key); !ok || got != want {
			t.Errorf("Dir.Lookup(%q) = %q, %v; want %q (one trailing newline trimmed)", key, got, ok, want)
		}
	}
	if _, ok := d.Lookup("../etc/passwd"); ok {
		t.Error("Dir.Lookup reads outside its directory")
	}
	if got := EnvName("slack.token-v2"); got != "SLUICE_SECRET_SLACK_TOKEN_V2" {
		t.Errorf("EnvName = %q", got)
	}
	env := Env(func(n string) string {
		return map[string]string{"SLUICE_SECRET_LF": "from-env", "SLUICE_SECRET_X": "x"}[n]
	})
	c := Chain(Map{"lf": "from-map"}, nil, d, env)
	for key, want := range map[string]string{"lf": "from-map", "crlf": "b", "x": "x"} {
		if got, ok := c.Lookup(key); !ok || got != want {
			t.Errorf("Chain.Lookup(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
	_, err := Parse(map[string]string{"service.slack": "token: $nope"}, c)
	want := "service.slack.token: secret $nope not found (looked in: the Secret, file " + filepath.Join(dir, "nope") + ", env SLUICE_SECRET_NOPE)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestParseFile(t *testing.T) {
	for _, tc := range []struct {
		name, file, err string
	}{
		{"a Deployment", "kind: Deployment\nmetadata: {name: x}\n", "document 1: kind Deployment is not a ConfigMap or Secret"},
		{"no kind", "data: {}\n", "document 1: not a Kubernetes manifest (no kind)"},
		{"two ConfigMaps", "kind: ConfigMap\nmetadata: {name: a}\n---\n# the second\nkind: ConfigMap\nmetadata: {name: b}\n", `document 2: a second ConfigMap ("b")`},
		{"only a Secret", "kind: Secret\nmetadata: {name: s}\n", "no ConfigMap in the file"},
		{"empty", "", "no ConfigMap in the file"},
		{"a value that is not a string", "kind: ConfigMap\ndata:\n  defaultTriggers: [on-rollout-completed]\n", "document 1: data.defaultTriggers is not a string: write the value as a block (defaultTriggers: |"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseFile([]byte(tc.file))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want ErrInvalid and %q", err, tc.err)
			}
		})
	}
	cm, secret, err := ParseFile([]byte("---\nkind: ConfigMap\nmetadata: {name: any-name}\ndata: {context: 'a: b'}\n"))
	if err != nil || cm["context"] != "a: b" || secret != nil {
		t.Fatalf("ParseFile = %v, %v, %v", cm, secret, err)
	}
}

const destConfig = `
service.slack: "token: x"
service.email: "host: smtp"
service.webhook.github: "url: https://api.github.com"
template.t: "message: hi"
trigger.on-rollout-completed: "- send: [t]"
trigger.on-rollout-aborted: "- send: [t]"
trigger.on-rollout-paused: "- send: [t]"
defaultTriggers: "[on-rollout-completed]"
defaultTriggers.email: "[on-rollout-aborted]"
subscriptions: |
  - recipients: [slack:shop-deploys, email:shop@example.com]
    triggers: [on-rollout-paused]
    selector: team=shop
  - recipients: [slack:all-deploys, email:all@example.com]
  - recipients: ["github:"]
    triggers: [on-rollout-completed, on-rollout-aborted]
    selector: "!skip-status"
`

func parseYAMLMap(t *testing.T, y string) *Config {
	t.Helper()
	var data map[string]string
	if err := yaml.Unmarshal([]byte(y), &data); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDestinations(t *testing.T) {
	c := parseYAMLMap(t, destConfig)
	const sub = "notifications.argoproj.io/subscribe."
	shop := map[string]string{"team": "shop"}
	for _, tc := range []struct {
		name        string
		trigger     string
		annotations map[string]string
		labels      map[string]string
		want        []string
	}{
		{
			name:    "an annotation per trigger and service, recipients split on ';'",
			trigger: "on-rollout-paused",
			annotations: map[string]string{
				sub + "on-rollout-paused.slack":              "team-a; team-b;",
				sub + "on-rollout-completed.slack":           "not-this-trigger",
				"other.io/subscribe.on-rollout-paused.slack": "not-ours",
			},
			want: []string{"slack:team-a", "slack:team-b"},
		},
		{
			name:        "an annotation without a trigger follows the default triggers",
			trigger:     "on-rollout-completed",
			annotations: map[string]string{sub + "slack": "defaults", sub + "email": "ops@example.com"},
			labels:      map[string]string{"skip-status": "yes"},
			want:        []string{"slack:all-deploys", "slack:defaults"},
		},
		{
			name:        "defaultTriggers.<service> replaces defaultTriggers for that service",
			trigger:     "on-rollout-aborted",
			annotations: map[string]string{sub + "slack": "defaults", sub + "email": "ops@example.com"},
			want:        []string{"email:all@example.com", "email:ops@example.com", "github:"},
		},
		{
			name:    "subscriptions with a selector match the labels",
			trigger: "on-rollout-paused",
			labels:  shop,
			want:    []string{"email:shop@example.com", "slack:shop-deploys"},
		},
		{
			name:    "a selector that does not match",
			trigger: "on-rollout-paused",
			labels:  map[string]string{"team": "pay"},
		},
		{
			name:        "an empty annotation value is one empty recipient (a webhook), duplicates once",
			trigger:     "on-rollout-completed",
			annotations: map[string]string{sub + "on-rollout-completed.github": "", sub + "on-rollout-completed.slack": "all-deploys"},
			want:        []string{"github:", "slack:all-deploys"},
		},
		{
			name:        "a service that is not configured is left out",
			trigger:     "on-rollout-paused",
			annotations: map[string]string{sub + "on-rollout-paused.mattermost": "x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, d := range c.Destinations(tc.trigger, tc.annotations, tc.labels) {
				got = append(got, d.String())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Destinations = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	c := parseYAMLMap(t, `
template.a: "message: a"
template.b: "message: b"
trigger.on-rollout-paused: |
  - send: [a]
    description: always
  - when: rollout.status.phase == 'Paused' && len(rollout.status.pauseConditions) > 0
    oncePer: rollout.status.pauseConditions[0].reason
    send: [a, b]
  - when: rollout.status.currentStepIndex >= 3
    send: [b]
  - when: rollout.status.phase
    send: [b]
  - oncePer: rollout.metadata.annotations["rollout.argoproj.io/revision"]
    send: [a]
`)
	vars := map[string]any{"rollout": map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{"rollout.argoproj.io/revision": "3"}},
		"status": map[string]any{
			"phase": "Paused", "currentStepIndex": int64(1),
			"pauseConditions": []any{map[string]any{"reason": "CanaryPauseStep"}},
		},
	}}
	got, err := c.Conditions("on-rollout-paused", vars)
	want := []Outcome{
		{Index: 0, Triggered: true, Templates: []string{"a"}, Description: "always"},
		{Index: 1, Triggered: true, OncePer: "CanaryPauseStep", Templates: []string{"a", "b"}},
		{Index: 2, Triggered: false, Templates: []string{"b"}},
		{Index: 3, Triggered: false, Templates: []string{"b"}},
		{Index: 4, Triggered: true, OncePer: "3", Templates: []string{"a"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Conditions =\n%+v\nwant\n%+v", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), `trigger.on-rollout-paused[3].when "rollout.status.phase": got string, want a bool`) {
		t.Errorf("err = %v, want the non-bool condition named", err)
	}
	if _, err := c.Conditions("on-rollout-done", vars); !errors.Is(err, ErrNoTrigger) {
		t.Errorf("unknown trigger: err = %v, want ErrNoTrigger", err)
	}
}

func TestRender(t *testing.T) {
	c := parseYAMLMap(t, `
template.base: |
  message: "{{.rollout.metadata.name | upper}} at step {{add .rollout.status.currentStepIndex 1}}"
  slack:
    attachments: '[{"title": "{{.rollout.metadata.name}}", "color": "{{ternary "#18be52" "#E01E5A" (eq .rollout.status.phase "Healthy")}}"}]'
    groupingKey: "{{.rollout.metadata.name}}"
  webhook:
    hooks:
      method: POST
      path: /base
  email:
    subject: base subject
template.extra: |
  slack:
    groupingKey: "{{.rollout.metadata.namespace}}/{{.rollout.metadata.name}}"
    notifyBroadcast: true
  webhook:
    hooks:
      body: '{"name": {{.rollout.metadata.name | quote}}}'
    audit:
      path: /audit
  email:
    body: "{{.context.env}}"
template.broken: |
  message: "{{.rollout.metadata.name}}"
  email:
    subject: "{{ fail \"no subject\" }}"
`)
	vars := map[string]any{
		"rollout": map[string]any{
			"metadata": map[string]any{"name": "web", "namespace": "shop"},
			"status":   map[string]any{"phase": "Progressing", "currentStepIndex": int64(1)},
		},
		"context": map[string]any{"env": "prod"},
	}
	got, err := c.Render([]string{"base", "extra"}, vars)
	if err != nil {
		t.Fatal(err)
	}
	want := notify.Notification{
		Message: "WEB at step 2",
		Slack: &notify.Slack{
			Attachments:     `[{"title": "web", "color": "#E01E5A"}]`,
			GroupingKey:     "shop/web",
			NotifyBroadcast: true,
		},
		Email: &notify.Email{Subject: "base subject", Body: "prod"},
		Webhook: map[string]notify.Webhook{
			"hooks": {Method: "POST", Path: "/base", Body: `{"name": "web"}`},
			"audit": {Path: "/audit"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Render =\n%s\nwant\n%s", mustJSON(t, got), mustJSON(t, want))
	}
	_, err = c.Render([]string{"base", "broken"}, vars)
	if !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), "template.broken.email.subject") || !strings.Contains(err.Error(), "no subject") {
		t.Errorf("err = %v, want ErrRender naming template.broken.email.subject", err)
	}
	if _, err := c.Render([]string{"nope"}, vars); !errors.Is(err, ErrRender) {
		t.Errorf("unknown template: err = %v", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}
