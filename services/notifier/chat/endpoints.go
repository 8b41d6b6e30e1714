package chat

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Endpoints are the chat endpoints one configuration sets up: Slack's,
// Teams', or both, on one handler.
type Endpoints struct {
	Slack *Slack // nil without commands.slack
	Teams *Teams // nil without commands.teams
	mux   *http.ServeMux
}

// New builds the endpoints of commands.slack and commands.teams (JSON,
// secrets resolved; empty when the configuration has no such key). It
// returns nil when neither is configured, and every problem of both
// otherwise.
func New(slackRaw, teamsRaw json.RawMessage, deps Deps) (*Endpoints, error) {
	if len(slackRaw) == 0 && len(teamsRaw) == 0 {
		return nil, nil
	}
	e := &Endpoints{mux: http.NewServeMux()}
	var errs []error
	if len(slackRaw) > 0 {
		cfg, err := ParseSlack(slackRaw)
		if err == nil {
			e.Slack, err = NewSlack(cfg, deps)
		}
		if err == nil {
			e.mux.Handle("/slack/", e.Slack.Routes())
		}
		errs = append(errs, err)
	}
	if len(teamsRaw) > 0 {
		cfg, err := ParseTeams(teamsRaw)
		if err == nil {
			e.Teams, err = NewTeams(cfg, deps)
		}
		if err == nil {
			e.mux.Handle("/teams/", e.Teams.Routes())
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// ServeHTTP serves POST /slack/commands, /slack/interactions and
// /teams/messages, those of a chat that is configured; 404 for the others,
// and for everything on a nil *Endpoints.
func (e *Endpoints) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e == nil {
		http.NotFound(w, r)
		return
	}
	e.mux.ServeHTTP(w, r)
}

// Close ends the Slack answers still waiting (see Slack.Close). Call it
// when the configuration is replaced or the notifier stops.
func (e *Endpoints) Close() {
	if e != nil && e.Slack != nil {
		e.Slack.Close()
	}
}
