package chat

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func TestEndpoints(t *testing.T) {
	srv := eventstest.StartServer(t)
	deps := Deps{Client: eventstest.Connect(t, srv.ClientURL()), Logger: eventstest.Quiet()}
	if e, err := New(nil, nil, deps); e != nil || err != nil {
		t.Fatalf("no chat configured: %v %v", e, err)
	}
	code := func(h http.Handler, path string) int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", path, strings.NewReader("x")))
		return w.Code
	}
	var none *Endpoints
	if c := code(none, "/slack/commands"); c != http.StatusNotFound {
		t.Errorf("a nil Endpoints answers %d", c)
	}

	slackOnly, err := New(toJSON(t, "signingSecret: x\nroles:"+roles("slack", "U1", "U2")), nil, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slackOnly.Close)
	for path, want := range map[string]int{"/slack/commands": 401, "/slack/interactions": 401, "/teams/messages": 404} {
		if c := code(slackOnly, path); c != want {
			t.Errorf("Slack only: %s answers %d, want %d", path, c, want)
		}
	}
	both, err := New(toJSON(t, "signingSecret: x\nroles:"+roles("slack", "U1", "U2")), toJSON(t, "securityToken: "+teamsToken+"\nroles:"+roles("teams", "a", "b")), deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(both.Close)
	if c := code(both, "/teams/messages"); c != 401 {
		t.Errorf("both: /teams/messages answers %d", c)
	}

	_, err = New(toJSON(t, "{}"), toJSON(t, "{}"), deps)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "commands.slack.signingSecret") || !strings.Contains(err.Error(), "commands.teams.securityToken") {
		t.Errorf("both invalid: %v", err)
	}
}
