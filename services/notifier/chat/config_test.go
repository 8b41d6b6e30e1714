package chat

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSlack(t *testing.T) {
	c, err := ParseSlack(toJSON(t, `
signingSecret: s3cret
roles:
- {role: operator, subjects: ["slack:U024BE7LH"], namespaces: [shop]}
- {role: viewer, subjects: ["*"], namespaces: ["*"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.window != DefaultTimestampWindow || c.APIURL != "https://slack.com/api/" {
		t.Errorf("defaults: window %s, apiURL %q", c.window, c.APIURL)
	}
	if r := c.Roles.RoleOf("slack:U024BE7LH", nil, "shop"); r.String() != "operator" {
		t.Errorf("role in shop: %v", r)
	}
	if r := c.Roles.RoleOf("slack:UOTHER", nil, "shop"); r.String() != "viewer" {
		t.Errorf("anyone's role: %v", r)
	}

	for _, tc := range []struct {
		name, yaml string
		paths      []string
	}{
		{"empty", `{}`, []string{"commands.slack.signingSecret: ", "commands.slack.roles: "}},
		{"bad window and url", `{signingSecret: x, timestampWindow: "5", apiURL: "ftp://x", roles: [{role: viewer, subjects: ["*"], namespaces: ["*"]}]}`,
			[]string{"commands.slack.timestampWindow: ", "commands.slack.apiURL: "}},
		{"bad bindings", `{signingSecret: x, roles: [{role: boss, subjects: ["user:alice", "nobody"], namespaces: ["Shop"]}]}`,
			[]string{"commands.slack.roles[0].role: ", "commands.slack.roles[0].subjects[0]: ", "commands.slack.roles[0].subjects[1]: ", "commands.slack.roles[0].namespaces[0]: "}},
		{"unknown field", `{signingSecret: x, signingSecrets: y}`, []string{"commands.slack: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSlack(toJSON(t, tc.yaml))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v, want ErrInvalidConfig", err)
			}
			for _, p := range tc.paths {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("no %q in\n%v", p, err)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the secret in %v", err)
			}
		})
	}
}

func TestParseTeams(t *testing.T) {
	c, err := ParseTeams(toJSON(t, `{securityToken: `+teamsToken+`, roles: [{role: operator, subjects: ["teams:aad-1"], namespaces: ["*"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.reply != DefaultTeamsReplyTimeout || len(c.key) == 0 {
		t.Errorf("defaults: reply %s, key %d bytes", c.reply, len(c.key))
	}
	_, err = ParseTeams(toJSON(t, `{securityToken: "not base64!", replyTimeout: 10s, roles: [{role: operator, subjects: ["slack:U1"], namespaces: ["*"]}]}`))
	for _, p := range []string{"commands.teams.securityToken: ", "commands.teams.replyTimeout: ", "commands.teams.roles[0].subjects[0]: "} {
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("no %q in %v", p, err)
		}
	}
	if strings.Contains(err.Error(), "not base64!") {
		t.Errorf("the token in %v", err)
	}
}
