// Package chat takes commands from chat back to the bus: Slack's slash
// command and buttons, and Microsoft Teams' outgoing webhook. Each request
// is verified (Slack's signing secret and timestamp window, Teams' HMAC),
// its sender mapped to a role per namespace by the configuration's role
// bindings (the gateway's auth.Bindings), and the command published with
// the sender as actor ("slack:<user id>", "teams:<aadObjectId>") through
// follow.Send, the one way the CLI and the gateway send commands too. A
// command the sender may not send is answered, and recorded on the
// rollout's status subject, as a command.refused with code Forbidden,
// exactly as the gateway records its refusals.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/follow"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Source is the CloudEvents source of what chat commands publish.
const Source = "/sluice/notifier"

// DefaultCommandTimeout is how long a command waits for its answer.
const DefaultCommandTimeout = 30 * time.Second

// maxBody bounds a request's body: Slack's and Teams' are a few KiB.
const maxBody = 1 << 20

// Deps is what Slack and Teams need from the service.
type Deps struct {
	// Client publishes commands and refusals and reads the status.
	Client *events.Client
	// CommandTimeout bounds how long a command waits for its answer
	// (Slack answers later through response_url); default 30s.
	CommandTimeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Metrics registers sluice_chat_commands_total; nil for none.
	Metrics prometheus.Registerer
	// Now is the clock Slack's timestamps are checked against; default
	// time.Now.
	Now func() time.Time
	// HTTPClient posts answers to Slack (response_url, Web API); default
	// a client with a 10 s timeout.
	HTTPClient *http.Client
	// Replays remembers accepted requests to refuse a repeat; default
	// this process's memory (each endpoint its own). The notifier shares
	// one across its replicas.
	Replays Replays
}

func (d *Deps) defaults() error {
	if d.Client == nil {
		return errors.New("chat: Deps.Client is required")
	}
	if d.CommandTimeout <= 0 {
		d.CommandTimeout = DefaultCommandTimeout
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return nil
}

// Command outcomes, the outcome label of sluice_chat_commands_total.
const (
	// OutcomeApplied: the orchestrator answered with what it did.
	OutcomeApplied = "applied"
	// OutcomeRefused: the orchestrator refused (NotFound, NotApplicable...).
	OutcomeRefused = "refused"
	// OutcomeForbidden: the sender's role does not allow the command.
	OutcomeForbidden = "forbidden"
	// OutcomeUnanswered: sent, but no answer came in time.
	OutcomeUnanswered = "unanswered"
	// OutcomeAnswered: a status was read.
	OutcomeAnswered = "answered"
	// OutcomeFailed: the bus could not be reached.
	OutcomeFailed = "failed"
	// OutcomeInvalid: not a command (usage shown).
	OutcomeInvalid = "invalid"
	// OutcomeUnauthenticated: a forged, stale or unsigned request.
	OutcomeUnauthenticated = "unauthenticated"
)

// Result is what came of a command.
type Result struct {
	Command Command
	Actor   string
	// Outcome is one of the Outcome constants.
	Outcome string
	// ID is the command event's id ("" for status).
	ID string
	// Answer is the orchestrator's answer (applied or refused).
	Answer *follow.Answer
	// Status is the rollout's status, for status.
	Status *events.Snapshot
	// Reason says why a command was forbidden, or what failed.
	Reason string
}

// commander runs commands for one chat: authorization, publishing and
// waiting for the answer.
type commander struct {
	chat    string
	deps    Deps
	roles   auth.Bindings
	metrics *metrics

	mu     sync.Mutex
	reader *orchestrator.Reader
}

func newCommander(chat string, roles auth.Bindings, deps Deps) (*commander, error) {
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	return &commander{chat: chat, deps: deps, roles: roles, metrics: m}, nil
}

// rollouts opens the orchestrator's rollouts once it exists.
func (c *commander) rollouts(ctx context.Context) (*orchestrator.Reader, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reader != nil {
		return c.reader, nil
	}
	rd, err := orchestrator.NewReader(ctx, c.deps.Client)
	if err != nil {
		return nil, err
	}
	c.reader = rd
	return rd, nil
}

// allowed reports whether actor may send cmd.
func (c *commander) allowed(actor string, cmd Command) bool {
	return c.roles.RoleOf(actor, nil, cmd.Ref.Namespace) >= cmd.needs()
}

// forbid records that actor may not send cmd: a command.refused with code
// Forbidden on the rollout's status subject, as the gateway records its
// refusals, so the rollout's history shows who tried.
func (c *commander) forbid(ctx context.Context, actor string, cmd Command) Result {
	reason := fmt.Sprintf("%s may not %s in namespace %s (needs the %s role)", actor, cmd.Name, cmd.Ref.Namespace, cmd.needs())
	res := Result{Command: cmd, Actor: actor, Outcome: OutcomeForbidden, Reason: reason}
	c.deps.Logger.Info("chat command refused", "chat", c.chat, "command", cmd.Name, "rollout", cmd.Ref.String(), "actor", actor, "code", events.RefusedForbidden)
	if cmd.Name == CmdStatus {
		// A read changes nothing: there is no command to record.
		return res
	}
	ev, err := cmd.event(actor)
	if err == nil {
		res.ID = ev.ID()
		snap := events.Snapshot{Namespace: cmd.Ref.Namespace, Name: cmd.Ref.Name}
		if rd, err := c.rollouts(ctx); err == nil {
			if cur, err := rd.Get(ctx, cmd.Ref); err == nil {
				snap = cur
			}
		}
		var refusal events.Event
		refusal, err = follow.Refusal(Source, ev, snap, events.RefusedForbidden, reason)
		if err == nil {
			_, err = c.deps.Client.Publish(ctx, events.StatusSubject(cmd.Ref), refusal)
		}
	}
	if err != nil {
		c.deps.Logger.Warn("record a refusal", "chat", c.chat, "rollout", cmd.Ref.String(), "actor", actor, "err", err)
	}
	return res
}

// status reads cmd's rollout.
func (c *commander) status(ctx context.Context, actor string, cmd Command) Result {
	res := Result{Command: cmd, Actor: actor}
	rd, err := c.rollouts(ctx)
	if err == nil {
		var snap events.Snapshot
		if snap, err = rd.Get(ctx, cmd.Ref); err == nil {
			res.Outcome, res.Status = OutcomeAnswered, &snap
			return res
		}
	}
	if errors.Is(err, orchestrator.ErrNoRollout) {
		res.Outcome, res.Reason = OutcomeAnswered, fmt.Sprintf("no rollout %s", cmd.Ref)
		return res
	}
	res.Outcome, res.Reason = OutcomeFailed, "the rollouts cannot be read: "+err.Error()
	return res
}

// send publishes cmd as actor and waits up to timeout for its answer.
func (c *commander) send(ctx context.Context, actor string, cmd Command, timeout time.Duration) Result {
	res := Result{Command: cmd, Actor: actor}
	ev, err := cmd.event(actor)
	if err != nil {
		res.Outcome, res.Reason = OutcomeFailed, err.Error()
		return res
	}
	res.ID = ev.ID()
	a, err := follow.Send(ctx, c.deps.Client, ev, timeout)
	switch {
	case errors.Is(err, follow.ErrNoAnswer):
		res.Outcome, res.Reason = OutcomeUnanswered, fmt.Sprintf("no answer within %s", timeout)
	case err != nil:
		res.Outcome, res.Reason = OutcomeFailed, err.Error()
	case a.Refused():
		res.Outcome, res.Answer = OutcomeRefused, a
	default:
		res.Outcome, res.Answer = OutcomeApplied, a
	}
	c.deps.Logger.Info("chat command", "chat", c.chat, "command", cmd.Name, "rollout", cmd.Ref.String(), "actor", actor, "id", res.ID, "outcome", res.Outcome)
	return res
}

// done counts res.
func (c *commander) done(res Result) Result {
	c.metrics.command(c.chat, res.Command.Name, res.Outcome)
	return res
}

// Text is res as a person reads it in chat.
func (res Result) Text() string {
	cmd := res.Command
	switch res.Outcome {
	case OutcomeApplied:
		a := res.Answer
		s := a.Data.Status
		text := fmt.Sprintf("✅ %s: %s → %s, %s, revision %d, canary weight %d%%", cmd.Ref, cmd.Name, shortType(a.Type), s.Phase, s.Revision, s.CanaryWeight)
		if r := a.Reason(); r != "" {
			text += " (" + r + ")"
		}
		return text
	case OutcomeRefused:
		return fmt.Sprintf("❌ %s %s refused (%s): %s", cmd.Name, cmd.Ref, res.Answer.Code(), res.Answer.Reason())
	case OutcomeForbidden:
		return fmt.Sprintf("🚫 %s refused (%s): %s", cmd, events.RefusedForbidden, res.Reason)
	case OutcomeUnanswered:
		return fmt.Sprintf("⏳ %s sent (event %s), but %s: the rollout's history shows what happened", cmd, res.ID, res.Reason)
	case OutcomeAnswered:
		if res.Status == nil {
			return "❔ " + res.Reason
		}
		return statusText(*res.Status)
	default:
		return fmt.Sprintf("⚠️ %s failed: %s", cmd, res.Reason)
	}
}

// statusText is a rollout's snapshot in a few lines.
func statusText(s events.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s: %s, revision %d (stable %d)", s.Namespace, s.Name, s.Phase, s.Revision, s.StableRevision)
	if s.StepIndex != nil {
		fmt.Fprintf(&b, ", step %d of %d", *s.StepIndex+1, s.StepCount)
	}
	fmt.Fprintf(&b, ", canary weight %d%%, %d/%d ready", s.CanaryWeight, s.Replicas.Ready, s.Replicas.Desired)
	if s.Aborted {
		b.WriteString(", aborted")
	}
	if s.Message != "" {
		b.WriteString("\n" + s.Message)
	}
	return b.String()
}

// shortType is "rollout.completed" for io.sluice.rollout.completed.v1.
func shortType(typ string) string {
	return strings.TrimSuffix(strings.TrimPrefix(typ, "io.sluice."), ".v1")
}
