package chat

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

func TestParseCommand(t *testing.T) {
	shop := events.Ref{Namespace: "shop", Name: "web"}
	for _, tc := range []struct {
		in   string
		want Command
		err  bool
	}{
		{"", Command{Name: CmdHelp}, false},
		{"help", Command{Name: CmdHelp}, false},
		{"status shop/web", Command{Name: CmdStatus, Ref: shop}, false},
		{"promote shop/web", Command{Name: CmdPromote, Ref: shop}, false},
		{"promote --full shop/web", Command{Name: CmdPromote, Ref: shop, Full: true}, false},
		{"  Promote   shop/web  --full ", Command{Name: CmdPromote, Ref: shop, Full: true}, false},
		{"abort web", Command{Name: CmdAbort, Ref: events.Ref{Namespace: "default", Name: "web"}}, false},
		{"retry shop/web", Command{Name: CmdRetry, Ref: shop}, false},
		{"pause shop/web", Command{Name: CmdPause, Ref: shop}, false},
		{"resume shop/web", Command{Name: CmdResume, Ref: shop}, false},
		{"abort --full shop/web", Command{}, true},
		{"delete shop/web", Command{}, true},
		{"undo shop/web", Command{}, true},
		{"promote", Command{}, true},
		{"promote shop/web shop/api", Command{}, true},
		{"promote shop/Web", Command{}, true},
	} {
		got, err := ParseCommand(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrUsage) {
			t.Errorf("ParseCommand(%q): %v does not wrap ErrUsage", tc.in, err)
		}
	}
	if c, err := ButtonCommand(notify.ActionAbort, "shop/web"); err != nil || c != (Command{Name: CmdAbort, Ref: shop}) {
		t.Errorf("abort button: %+v %v", c, err)
	}
	if _, err := ButtonCommand("other.app", "shop/web"); !errors.Is(err, ErrUsage) {
		t.Errorf("another app's button: %v", err)
	}
}

func TestVerifySlack(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte("token=x&team_id=T1&user_id=U1&command=%2Fsluice&text=promote+shop%2Fweb")
	signed := func(secret string, at time.Time) http.Header {
		ts := strconv.FormatInt(at.Unix(), 10)
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", ts)
		h.Set("X-Slack-Signature", "v0="+hexOf(SignSlack(secret, ts, body)))
		return h
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		ok   bool
	}{
		{"signed now", signed(signingSecret, now), body, true},
		{"signed 4m ago", signed(signingSecret, now.Add(-4*time.Minute)), body, true},
		{"signed 6m ago: a replay", signed(signingSecret, now.Add(-6*time.Minute)), body, false},
		{"signed 6m ahead", signed(signingSecret, now.Add(6*time.Minute)), body, false},
		{"another secret", signed("other", now), body, false},
		{"another body", signed(signingSecret, now), append([]byte("x"), body...), false},
		{"no headers", http.Header{}, body, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySlack(signingSecret, tc.h, tc.body, now, DefaultTimestampWindow)
			if (err == nil) != tc.ok {
				t.Fatalf("VerifySlack = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("%v does not wrap ErrUnauthenticated", err)
			}
		})
	}
}
