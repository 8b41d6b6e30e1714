package follow

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func command(t *testing.T, r events.Ref) events.Event {
	t.Helper()
	return commandOf(t, events.TypeRolloutPromote, r)
}

// commandOf is a command of type typ for r from user:alice.
func commandOf(t *testing.T, typ string, r events.Ref) events.Event {
	t.Helper()
	ev, err := events.New("/test", typ, r.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev.SetExtension(events.ExtActor, "user:alice")
	return ev
}

// Send returns the first status event that carries the command's id, here
// a refusal an edge answers with (an experiment's command is answered with
// the experiment's refusal type, a refusal too); without one it says no
// answer came.
func TestSendWaitsForTheAnswer(t *testing.T) {
	srv := eventstest.StartServer(t)
	c := eventstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	web := events.Ref{Namespace: "shop", Name: "web"}
	quiet := events.Ref{Namespace: "shop", Name: "quiet"}

	// An edge that refuses every command on web, after an unrelated event.
	sub, err := c.Conn().Subscribe(events.CommandSubject(web), func(m *nats.Msg) {
		cmd, err := events.Decode(m.Data, m.Header)
		if err != nil {
			t.Error(err)
			return
		}
		noise, _ := events.New("/test", events.TypeRolloutResumed, web.String(), events.StatusData{})
		refusal, err := Refusal("/edge", cmd, events.Snapshot{Namespace: web.Namespace, Name: web.Name}, events.RefusedForbidden, "no")
		if err != nil {
			t.Error(err)
			return
		}
		for _, ev := range []events.Event{noise, refusal} {
			if _, err := c.Publish(ctx, events.StatusSubject(web), ev); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	cmd := command(t, web)
	a, err := Send(ctx, c, cmd, eventstest.Wait)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Refused() || a.Code() != events.RefusedForbidden || a.Reason() != "no" || a.Data.Command.ID != cmd.ID() ||
		events.Extension(a.Event, events.ExtActor) != "user:alice" || a.Event.ID() != "refused/"+cmd.ID() {
		t.Fatalf("answer %+v %v", a, a.Event)
	}
	if a.Type != events.TypeRolloutRefused {
		t.Fatalf("a rollout's command refused with %s", a.Type)
	}
	terminate := commandOf(t, events.TypeExperimentTerminate, web)
	a, err = Send(ctx, c, terminate, eventstest.Wait)
	if err != nil {
		t.Fatal(err)
	}
	if a.Type != events.TypeExperimentRefused || !a.Refused() || a.Code() != events.RefusedForbidden || a.Data.Command.Type != events.TypeExperimentTerminate {
		t.Fatalf("the answer to an experiment's terminate: %s %+v", a.Type, a.Data.Command)
	}

	if _, err := Send(ctx, c, command(t, quiet), 100*time.Millisecond); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("a command no one answers: %v, want ErrNoAnswer", err)
	}
}
