package chat

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// ErrUsage means a chat message is not a command; its text says what is.
var ErrUsage = errors.New("not a command")

// Command is what a person asked for in chat.
type Command struct {
	// Name is help, status, promote, abort, retry, pause or resume.
	Name string
	// Ref is the rollout; zero for help.
	Ref events.Ref
	// Full is promote --full: skip every remaining step.
	Full bool
}

// Command names.
const (
	CmdHelp    = "help"
	CmdStatus  = "status"
	CmdPromote = "promote"
	CmdAbort   = "abort"
	CmdRetry   = "retry"
	CmdPause   = "pause"
	CmdResume  = "resume"
)

// eventTypes maps each command that changes a rollout to its event type.
var eventTypes = map[string]string{
	CmdPromote: events.TypeRolloutPromote,
	CmdAbort:   events.TypeRolloutAbort,
	CmdRetry:   events.TypeRolloutRetry,
	CmdPause:   events.TypeRolloutPause,
	CmdResume:  events.TypeRolloutResume,
}

// Usage is the help a person gets for "help", or for what is not a
// command; prefix is how they call the bot ("/sluice", "@Sluice").
func Usage(prefix string) string {
	return fmt.Sprintf("Usage: %[1]s status|promote|promote --full|abort|retry|pause|resume <namespace>/<rollout>\n"+
		"A bare <rollout> is in namespace default. %[1]s help shows this.", prefix)
}

// ParseCommand reads "promote shop/web", "promote --full shop/web" or
// "help" (an empty text is help). It returns an error wrapping ErrUsage
// for anything else.
func ParseCommand(text string) (Command, error) {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return Command{Name: CmdHelp}, nil
	}
	c := Command{Name: strings.ToLower(fields[0])}
	var args []string
	for _, f := range fields[1:] {
		switch {
		case f == "--full" && c.Name == CmdPromote:
			c.Full = true
		case strings.HasPrefix(f, "-"):
			return Command{}, fmt.Errorf("%w: unknown option %q for %s", ErrUsage, f, c.Name)
		default:
			args = append(args, f)
		}
	}
	if c.Name == CmdHelp {
		return c, nil
	}
	if _, ok := eventTypes[c.Name]; !ok && c.Name != CmdStatus {
		return Command{}, fmt.Errorf("%w: no command %q", ErrUsage, fields[0])
	}
	if len(args) != 1 {
		return Command{}, fmt.Errorf("%w: %s takes one <namespace>/<rollout>", ErrUsage, c.Name)
	}
	r, err := events.ParseRef(args[0])
	if err != nil {
		return Command{}, fmt.Errorf("%w: %q is not <namespace>/<rollout>: %v", ErrUsage, args[0], err)
	}
	c.Ref = r
	return c, nil
}

// ButtonCommand is the command of a button's action id and value
// (notify.ActionPromote, notify.ActionAbort with "<namespace>/<rollout>").
func ButtonCommand(actionID, value string) (Command, error) {
	var c Command
	switch actionID {
	case notify.ActionPromote:
		c.Name = CmdPromote
	case notify.ActionAbort:
		c.Name = CmdAbort
	default:
		return Command{}, fmt.Errorf("%w: no button %q", ErrUsage, actionID)
	}
	r, err := events.ParseRef(value)
	if err != nil {
		return Command{}, fmt.Errorf("%w: button value %q is not <namespace>/<rollout>: %v", ErrUsage, value, err)
	}
	c.Ref = r
	return c, nil
}

// String is the command as a person types it: "promote --full shop/web".
func (c Command) String() string {
	s := c.Name
	if c.Full {
		s += " --full"
	}
	if c.Ref != (events.Ref{}) {
		s += " " + c.Ref.String()
	}
	return s
}

// needs is the role c needs in its rollout's namespace.
func (c Command) needs() auth.Role {
	if c.Name == CmdStatus {
		return auth.RoleViewer
	}
	return auth.RoleOperator
}

// event is the command event c publishes, sent by actor.
func (c Command) event(actor string) (events.Event, error) {
	typ, ok := eventTypes[c.Name]
	if !ok {
		return events.Event{}, fmt.Errorf("%s publishes no command", c.Name)
	}
	var data any = struct{}{}
	if typ == events.TypeRolloutPromote {
		data = events.PromoteData{Full: c.Full}
	}
	ev, err := events.New(Source, typ, c.Ref.String(), data)
	if err != nil {
		return ev, err
	}
	ev.SetExtension(events.ExtActor, actor)
	return ev, nil
}
