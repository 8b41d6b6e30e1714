package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/services/notifier/config/configtest"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// catalog is Argo's notification catalog with a Slack service whose
// token is the secret slack-token.
var catalog = configtest.CatalogFile

// subscribedRollout is web, a canary running image that pauses at its
// second step.
func subscribedRollout(image string) string {
	return configtest.Rollout{
		Name: "web", Replicas: 4,
		Containers: "[{name: web, image: " + image + "}]",
		Strategy: `    canary:
      steps:
      - setWeight: 25
      - pause: {}
      - setWeight: 75
`,
	}.YAML()
}

func secretsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "slack-token"), []byte("xoxb-not-shown\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNotificationsTestRendersWhatWouldBeSent(t *testing.T) {
	url := startSystem(t)
	secrets := secretsDir(t)
	apply := func(image string, wait bool) {
		t.Helper()
		args := []string{"apply", "-f", writeFile(t, "rollout.yaml", subscribedRollout(image))}
		if wait {
			args = append(args, "--wait", "--timeout", "20s")
		}
		if code, out := sluice(t, url, args...); code != exitOK {
			t.Fatalf("apply %s: exit %d\n%s", image, code, out)
		}
	}
	test := func(args ...string) (int, string) {
		t.Helper()
		return sluice(t, url, append([]string{"notifications", "test"}, append(args, "--config", catalog, "--secrets-dir", secrets)...)...)
	}

	apply("web:1", true)
	code, out := test("on-rollout-completed", "web")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"on-rollout-completed for default/web, from its latest status event completed",
		"→ slack:deploys (condition 0, templates rollout-completed)",
		"message: Rollout web has been completed.",
		`"value": "web:1"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "xoxb-not-shown") {
		t.Errorf("the output shows a secret:\n%s", out)
	}

	// A second revision pauses at its pause step: the latest event is
	// paused, with the snapshot on step 2 of 3.
	apply("web:2", false)
	waitOutput(t, func() (int, string) { return sluice(t, url, "get", "web") }, "Paused (CanaryPauseStep)")
	code, out = test("on-rollout-step-completed", "default/web", "-o", "json", "--recipient", "slack:release-train")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	msgs := jsonLines[notify.Message](t, out)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1:\n%s", len(msgs), out)
	}
	m := msgs[0]
	if m.Destination.String() != "slack:release-train" || m.Trigger != "on-rollout-step-completed" || m.Phase != "Paused" || !strings.HasSuffix(m.Event.Type, "paused.v1") {
		t.Errorf("message = %+v", m)
	}
	if want := "Rollout web step number 2/3 has been completed."; m.Notification.Message != want {
		t.Errorf("message = %q, want %q", m.Notification.Message, want)
	}
	var att []map[string]any
	if err := json.Unmarshal([]byte(m.Notification.Slack.Attachments), &att); err != nil || len(att) != 1 {
		t.Errorf("attachments are not Slack's JSON (%v):\n%s", err, m.Notification.Slack.Attachments)
	}
	if !strings.Contains(m.Notification.Slack.Attachments, `"value": "web:2"`) {
		t.Errorf("attachments do not show the paused revision's image:\n%s", m.Notification.Slack.Attachments)
	}
}

func TestNotificationsTestRefuses(t *testing.T) {
	url := startSystem(t)
	secrets := secretsDir(t)
	if code, out := sluice(t, url, "apply", "-f", writeManifest(t, "web:1"), "--wait", "--timeout", "20s"); code != exitOK {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	onlyCompleted := writeFile(t, "cm.yaml", `kind: ConfigMap
metadata: {name: argo-rollouts-notification-configmap}
data:
  service.slack: "token: $slack-token"
  template.done: "message: done"
  trigger.on-rollout-completed: "- send: [done]"
`)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"an unknown trigger", []string{"on-rollout-finished", "web", "--config", catalog}, exitFail, `no trigger named "on-rollout-finished"`},
		{"a trigger Argo has but the file lacks", []string{"on-rollout-paused", "web", "--config", onlyCompleted}, exitFail, "add trigger.on-rollout-paused to the configuration"},
		{"a rollout that does not exist", []string{"on-rollout-completed", "shop/nope", "--config", catalog}, exitFail, "rollout shop/nope not found"},
		{"nobody subscribed", []string{"on-rollout-completed", "web", "--config", onlyCompleted}, exitFail, "nobody is subscribed to on-rollout-completed for default/web: annotate the Rollout with notifications.argoproj.io/subscribe.on-rollout-completed.<service>"},
		{"a recipient of no service", []string{"on-rollout-completed", "web", "--config", catalog, "--recipient", "teams:ops"}, exitFail, `no service named "teams"`},
		{"a malformed recipient", []string{"on-rollout-completed", "web", "--config", catalog, "--recipient", "deploys"}, exitUsage, "want service:recipient"},
		{"no --config", []string{"on-rollout-completed", "web"}, exitUsage, "--config FILE is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := sluice(t, url, append([]string{"notifications", "test"}, append(tc.args, "--secrets-dir", secrets)...)...)
			if code != tc.code || !strings.Contains(out, tc.output) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tc.code, tc.output, out)
			}
		})
	}
}

func TestNotificationsCheck(t *testing.T) {
	code, out := sluice(t, "nats://127.0.0.1:1", "notifications", "check", "--config", catalog, "--secrets-dir", secretsDir(t))
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"is valid.",
		"services:         slack (slack)",
		"triggers:         on-analysis-run-error, on-analysis-run-failed, on-analysis-run-running, on-rollout-aborted, on-rollout-completed, on-rollout-paused, on-rollout-step-completed, on-rollout-updated, on-scaling-replica-set",
		"templates:        analysis-run-error,",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Without the secret, and with problems: every one, and exit 1.
	code, out = sluice(t, "nats://127.0.0.1:1", "notifications", "check", "--config", "../../services/notifier/config/testdata/invalid-references.yaml")
	if code != exitFail {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		`  trigger.on-rollout-completed[0].send[0]: no template named "rollout-done"`,
		`  subscriptions[0].recipients[0]: no service named "email"`,
		`  defaultTriggers[1]: no trigger named "on-rollout-finished"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out = sluice(t, "nats://127.0.0.1:1", "notifications", "check", "--config", catalog)
	if code != exitFail || !strings.Contains(out, "service.slack.token: secret $slack-token not found (looked in: the Secret, env SLUICE_SECRET_SLACK_TOKEN)") {
		t.Fatalf("exit %d, want 1 naming the missing secret:\n%s", code, out)
	}
}
