package events

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestHistoryReplaysOneRolloutInOrder(t *testing.T) {
	c := provisioned(t, startServer(t).ClientURL())
	web, api := Ref{"prod", "web"}, Ref{"prod", "api"}
	var want []string
	step := func(subject, typ string, r Ref) {
		ev := mustEvent(t, typ, r.String(), nil)
		publish(t, c, subject, ev)
		if r == web {
			want = append(want, typ)
		}
	}
	step(CommandSubject(web), TypeRolloutRequested, web)
	step(StatusSubject(web), TypeRolloutAccepted, web)
	step(CommandSubject(api), TypeRolloutRequested, api)
	step(StatusSubject(web), TypeRolloutPaused, web)
	step(CommandSubject(web), TypeRolloutPromote, web)
	step(StatusSubject(api), TypeRolloutAccepted, api)
	step(StatusSubject(web), TypeRolloutCompleted, web)
	bad := nats.NewMsg(CommandSubject(web))
	bad.Data = []byte("garbage")
	if _, err := c.JetStream().PublishMsg(context.Background(), bad); err != nil {
		t.Fatal(err)
	}

	h, err := c.History(context.Background(), web)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != len(want)+1 {
		t.Fatalf("history has %d entries, want %d: %+v", len(h), len(want)+1, h)
	}
	for i, typ := range want {
		if h[i].Err != nil || h[i].Event.Type() != typ {
			t.Errorf("entry %d: %v %v, want %s", i, h[i].Event.Type(), h[i].Err, typ)
		}
		if i > 0 && h[i].Stored.Before(h[i-1].Stored) {
			t.Errorf("entry %d stored before entry %d", i, i-1)
		}
	}
	if last := h[len(h)-1]; !errors.Is(last.Err, ErrMalformed) {
		t.Errorf("a malformed stored message should be reported, got %+v", last)
	}
	if h, err := c.History(context.Background(), Ref{"prod", "never"}); err != nil || len(h) != 0 {
		t.Errorf("history of an unknown rollout: %v, %v", h, err)
	}
}
