package events

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestChainRunsMiddlewareFirstOutermost(t *testing.T) {
	var order []string
	mark := func(name string) Middleware {
		return func(next Handler) Handler {
			return func(ctx context.Context, d Delivery, ev Event) error {
				order = append(order, name)
				return next(ctx, d, ev)
			}
		}
	}
	var got Delivery
	h := Chain(func(_ context.Context, d Delivery, _ Event) error {
		order = append(order, "handler")
		got = d
		return nil
	}, mark("a"), mark("b"))
	want := Delivery{Subject: "sluice.cmd.default.web", Attempt: 3}
	if err := h(context.Background(), want, Event{}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, ",") != "a,b,handler" {
		t.Errorf("ran %v, want a, b, handler", order)
	}
	if got != want {
		t.Errorf("handler got delivery %+v, want %+v", got, want)
	}
}

func TestRecoverTurnsAPanicIntoARetryableError(t *testing.T) {
	h := Recover(func(context.Context, Delivery, Event) error { panic("boom") })
	err := h(context.Background(), Delivery{}, Event{})
	if err == nil || !strings.Contains(err.Error(), "handler panicked: boom") {
		t.Fatalf("error %v, want one saying the handler panicked", err)
	}
	if IsPermanent(err) {
		t.Errorf("a panic is retried, not dead-lettered at once: %v", err)
	}
	sentinel := errors.New("plain")
	if err := Recover(func(context.Context, Delivery, Event) error { return sentinel })(context.Background(), Delivery{}, Event{}); !errors.Is(err, sentinel) {
		t.Errorf("error %v, want the handler's own", err)
	}
}
