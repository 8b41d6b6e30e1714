package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
)

// Commands maps each command of a rollout's path
// (POST /api/v1/namespaces/{namespace}/rollouts/{name}/{command}) to its
// event type.
var Commands = map[string]string{
	"promote": events.TypeRolloutPromote,
	"abort":   events.TypeRolloutAbort,
	"retry":   events.TypeRolloutRetry,
	"pause":   events.TypeRolloutPause,
	"resume":  events.TypeRolloutResume,
	"undo":    events.TypeRolloutUndo,
	"restart": events.TypeRolloutRestart,
	"delete":  events.TypeRolloutDelete,
}

// ExperimentCommands maps each command of a standalone Experiment's path
// (POST /api/v1/namespaces/{namespace}/experiments/{name}/{command}) to
// its event type.
var ExperimentCommands = map[string]string{
	"terminate": events.TypeExperimentTerminate,
	"delete":    events.TypeExperimentDelete,
}

// Command outcomes (CommandResult.Outcome).
const (
	OutcomeDone       = "done"
	OutcomeRefused    = "refused"
	OutcomeUnanswered = "unanswered"
)

// CommandResult answers a command.
type CommandResult struct {
	// Outcome is done, refused or unanswered.
	Outcome string `json:"outcome"`
	// ID is the command event's id.
	ID string `json:"id"`
	// Type is the answer's event type.
	Type string `json:"type,omitempty"`
	// Code and Reason say why a command was refused: NotFound, Invalid,
	// NotApplicable, Forbidden.
	Code   string           `json:"code,omitempty"`
	Reason string           `json:"reason,omitempty"`
	Event  *events.Event    `json:"event,omitempty"`
	Status *events.Snapshot `json:"status,omitempty"`
	Error  string           `json:"error,omitempty"`
}

// needs is the role command type typ needs in the namespace of ref: an
// experiment's request and terminate need what a rollout's request and
// abort do, its delete what a rollout's delete does.
func needs(typ string, ref events.Ref) auth.Role {
	if typ == events.TypeRolloutDelete || typ == events.TypeExperimentDelete || ref.Namespace == events.ClusterScope {
		return auth.RoleAdmin
	}
	return auth.RoleOperator
}

// command serves the commands of cmds (Commands or ExperimentCommands).
func (s *Service) command(cmds map[string]string) http.HandlerFunc {
	names := slices.Sorted(maps.Keys(cmds))
	return func(w http.ResponseWriter, r *http.Request) { s.sendCommand(w, r, cmds, names) }
}

func (s *Service) sendCommand(w http.ResponseWriter, r *http.Request, cmds map[string]string, names []string) {
	p, ok := caller(w, r)
	if !ok {
		return
	}
	ref, ok := pathRef(w, r)
	if !ok {
		return
	}
	name := r.PathValue("command")
	typ, ok := cmds[name]
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("no command %q: use one of %s", name, strings.Join(names, ", ")))
		return
	}
	var data any
	switch typ {
	case events.TypeRolloutPromote:
		var d events.PromoteData
		if err := readJSON(r, &d); err != nil {
			writeError(w, http.StatusBadRequest, err.Error()+` (promote takes {"full": true|false})`)
			return
		}
		data = d
	case events.TypeRolloutUndo:
		var d events.UndoData
		if err := readJSON(r, &d); err != nil {
			writeError(w, http.StatusBadRequest, err.Error()+` (undo takes {"toRevision": n})`)
			return
		}
		if d.ToRevision != nil && *d.ToRevision < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("toRevision %d must not be negative", *d.ToRevision))
			return
		}
		data = d
	default:
		var d struct{}
		if err := readJSON(r, &d); err != nil {
			writeError(w, http.StatusBadRequest, err.Error()+" ("+name+" takes no body, or {})")
			return
		}
	}
	ev, err := events.New(Source, typ, ref.String(), data)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ev.SetExtension(events.ExtActor, p.Actor)
	if !s.auth.Allow(p, ref.Namespace, needs(typ, ref)) {
		s.forbid(r.Context(), w, p, ev, ref)
		return
	}
	a, err := follow.Send(r.Context(), s.client, ev, s.cfg.CommandTimeout)
	switch {
	case errors.Is(err, follow.ErrNoAnswer):
		writeJSON(w, http.StatusGatewayTimeout, CommandResult{Outcome: OutcomeUnanswered, ID: ev.ID(),
			Error: fmt.Sprintf("%s sent (event %s), but no answer came within %s: is the orchestrator running? (the history of %s shows what happened)", name, ev.ID(), s.cfg.CommandTimeout, ref)})
		return
	case err != nil:
		s.unavailable(w, err)
		return
	}
	res := CommandResult{ID: ev.ID(), Type: a.Type, Event: &a.Event, Status: &a.Data.Status, Reason: a.Reason()}
	if a.Refused() {
		res.Outcome, res.Code, res.Error = OutcomeRefused, a.Code(), fmt.Sprintf("%s refused (%s): %s", name, a.Code(), a.Reason())
		writeJSON(w, http.StatusConflict, res)
		return
	}
	res.Outcome = OutcomeDone
	writeJSON(w, http.StatusOK, res)
}

// forbid answers 403 to command ev, which p may not send, and records the
// refusal (events.RefusedType of the command's type) on the rollout's or
// experiment's status subject, as the orchestrator records the refusals it
// answers, so that its history shows who tried.
func (s *Service) forbid(ctx context.Context, w http.ResponseWriter, p auth.Principal, ev events.Event, ref events.Ref) {
	reason := s.forbidden(p, ev.Type(), ref)
	snap := events.Snapshot{Namespace: ref.Namespace, Name: ref.Name}
	if rd, err := s.rollouts(ctx); err == nil {
		if cur, err := rd.Get(ctx, ref); err == nil {
			snap = cur
		}
	}
	res := CommandResult{Outcome: OutcomeRefused, ID: ev.ID(), Type: events.RefusedType(ev.Type()), Code: events.RefusedForbidden, Reason: reason, Status: &snap, Error: reason}
	refusal, err := follow.Refusal(Source, ev, snap, events.RefusedForbidden, reason)
	if err == nil {
		_, err = s.client.Publish(ctx, events.StatusSubject(ref), refusal)
	}
	if err != nil {
		s.cfg.Logger.Warn("record a refusal", "rollout", ref.String(), "actor", p.Actor, "err", err)
	} else {
		res.Event = &refusal
	}
	if !s.auth.Allow(p, ref.Namespace, auth.RoleViewer) {
		// The record keeps the snapshot, as every refusal does; a caller
		// who may not read the namespace does not learn it, nor whether
		// the rollout exists.
		res.Status, res.Event = nil, nil
	}
	s.cfg.Logger.Info("command refused", "rollout", ref.String(), "command", ev.Type(), "id", ev.ID(), "actor", p.Actor, "code", events.RefusedForbidden)
	writeJSON(w, http.StatusForbidden, res)
}

// forbidden says why p may not send a command of type typ for ref.
func (s *Service) forbidden(p auth.Principal, typ string, ref events.Ref) string {
	if s.auth.ReadOnly() {
		return fmt.Sprintf("the gateway is read-only: %s refused for %s", shortType(typ), p.Actor)
	}
	return fmt.Sprintf("%s may not send %s in namespace %s (needs the %s role)", p.Actor, shortType(typ), ref.Namespace, needs(typ, ref))
}

// shortType is "promote" for io.sluice.rollout.promote.v1,
// "experiment.terminate" for io.sluice.experiment.terminate.v1.
func shortType(typ string) string {
	t := strings.TrimSuffix(strings.TrimPrefix(typ, "io.sluice."), ".v1")
	return strings.TrimPrefix(t, "rollout.")
}
