package security

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier"
)

// TestBotsOwnTheirStatusConsumers: a bot with a user of its own (`sluice
// auth nats-permissions --bot`) runs the durable status consumer named
// after it, and no one else may create, read, pull from or delete it: not
// the operator, the viewer, another bot or a service that reads the status
// stream (the gateway). Before issue 21 any of
// them could delete a bot's consumer (or the notifier's). A bot answers
// with commands only with the operator role.
func TestBotsOwnTheirStatusConsumers(t *testing.T) {
	t.Parallel()
	bots := []events.Bot{{Name: "chatops", Answers: true}, {Name: "board"}}
	url := startServer(t, bots...)
	adminLogs := &logBuffer{}
	admin := connect(t, url, adminUser, adminLogs.logger("admin"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*patience)
	defer cancel()
	if err := admin.Provision(ctx, events.BusConfig{}); err != nil {
		t.Fatal(err)
	}
	chatopsLogs := &logBuffer{}
	chatops := connect(t, url, "chatops", chatopsLogs.logger("chatops"))

	seen := make(chan string, 64)
	sub, err := chatops.Consume(ctx, events.ConsumerConfig{Stream: events.StreamStatus, Durable: "chatops", DeliverNew: true}, func(_ context.Context, _ events.Delivery, ev events.Event) error {
		seen <- ev.ID()
		return nil
	})
	if err != nil {
		t.Fatalf("chatops: its own durable status consumer: %v", err)
	}
	statusEvent := func() string {
		t.Helper()
		ev, err := events.New("/security-test", events.TypeRolloutPaused, prodWeb.String(), map[string]any{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Publish(ctx, events.StatusSubject(prodWeb), ev); err != nil {
			t.Fatal(err)
		}
		return ev.ID()
	}
	sees := func(id string) {
		t.Helper()
		timeout := time.After(patience)
		for {
			select {
			case got := <-seen:
				if got == id {
					return
				}
			case <-timeout:
				t.Fatalf("the chatops bot did not get status event %s", id)
			}
		}
	}
	sees(statusEvent())

	// Every other reader is refused the bot's consumer, and the services'.
	for _, who := range []string{events.IdentityViewer, events.IdentityOperator, "board", events.IdentityGateway} {
		logs := &logBuffer{}
		c := connect(t, url, who, logs.logger(who))
		js := c.JetStream()
		try := func(what, subject string, call func(context.Context) error) {
			t.Helper()
			cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
			defer ccancel()
			if err := call(cctx); err == nil || !refused(t, logs, subject) {
				t.Errorf("%s: %s: got %v and no permissions violation, want both", who, what, err)
			}
		}
		for _, durable := range []string{"chatops", notifier.DurableStatus} {
			if who == events.IdentityGateway && durable != "chatops" {
				continue // the services' durables: TestGatewayDoesWhatItNeedsAndNothingMore
			}
			try("info of "+durable, "$JS.API.CONSUMER.INFO.SLUICE_STATUS."+durable, func(ctx context.Context) error {
				_, err := js.Consumer(ctx, events.StreamStatus, durable)
				return err
			})
			try("delete "+durable, "$JS.API.CONSUMER.DELETE.SLUICE_STATUS."+durable, func(ctx context.Context) error {
				return js.DeleteConsumer(ctx, events.StreamStatus, durable)
			})
			try("create "+durable, "$JS.API.CONSUMER.CREATE.SLUICE_STATUS."+durable, func(ctx context.Context) error {
				_, err := js.CreateOrUpdateConsumer(ctx, events.StreamStatus, jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy})
				return err
			})
		}
		// What it may do it still can: read status with an ordered consumer.
		oc, err := js.OrderedConsumer(ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Errorf("%s: an ordered consumer on the status stream: %v", who, err)
		} else if _, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
			t.Errorf("%s: reading the status stream: %v", who, err)
		}
	}
	// The bot's consumer is intact and still delivers.
	sees(statusEvent())
	if _, err := admin.JetStream().Consumer(ctx, events.StreamStatus, "chatops"); err != nil {
		t.Fatalf("the chatops consumer after the others' attempts: %v", err)
	}

	// Only the answering bot may publish commands.
	boardLogs := &logBuffer{}
	board := connect(t, url, "board", boardLogs.logger("board"))
	refusesEach(t, "board", board, admin, boardLogs, []forbiddenPublish{
		{"a promote command", events.StreamCommands, events.CommandSubject(prodWeb), events.TypeRolloutPromote},
	})
	if err := publish(t, chatops, events.CommandSubject(prodWeb), events.TypeRolloutPromote); err != nil {
		t.Errorf("chatops (operator role) cannot answer with a promote: %v", err)
	}

	// The bot manages its own consumer: it may delete it.
	if err := sub.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := chatops.JetStream().DeleteConsumer(ctx, events.StreamStatus, "chatops"); err != nil {
		t.Fatalf("chatops deleting its own consumer: %v", err)
	}
	poll.Until(t, "the chatops consumer gone", func() error {
		_, err := admin.JetStream().Consumer(ctx, events.StreamStatus, "chatops")
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		return fmt.Errorf("consumer info: %v", err)
	})
	for _, l := range strings.Split(chatopsLogs.String(), "\n") {
		if strings.Contains(strings.ToLower(l), "permissions violation") {
			t.Errorf("the chatops bot was refused something it needs: %s", l)
		}
	}
}

// TestNATSPermissionsCommandAddsBots: `sluice auth nats-permissions`
// prints deploy/nats/permissions.conf as it is, and with --bot the same
// plus the bots' users; bad names are refused with the reason.
func TestNATSPermissionsCommandAddsBots(t *testing.T) {
	t.Parallel()
	cli := testbin.Path(t, "sluice")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(cli, append([]string{"auth", "nats-permissions"}, args...)...).CombinedOutput()
		return string(out), err
	}
	plain, err := run()
	if err != nil {
		t.Fatalf("%v\n%s", err, plain)
	}
	if want, _ := assembly.NATSConfig(); plain != want {
		t.Error("sluice auth nats-permissions differs from assembly.NATSConfig()")
	}
	withBots, err := run("--bot", "chatops:operator", "--bot", "release-board:viewer")
	if err != nil {
		t.Fatalf("%v\n%s", err, withBots)
	}
	for _, want := range []string{
		`{ user = "chatops", password = $SLUICE_NATS_CHATOPS_PASSWORD, permissions = $CHATOPS_PERMISSIONS }`,
		`{ user = "release-board", password = $SLUICE_NATS_RELEASE_BOARD_PASSWORD, permissions = $RELEASE_BOARD_PERMISSIONS }`,
		`"$JS.API.CONSUMER.*.SLUICE_STATUS.release-board"`,
	} {
		if !strings.Contains(withBots, want) {
			t.Errorf("with bots, the output lacks %s", want)
		}
	}
	for _, c := range []struct{ arg, want string }{
		{"chatops", "want NAME:viewer or NAME:operator"},
		{"chatops:admin", "want NAME:viewer or NAME:operator"},
		{"Chat.Ops:viewer", `bot name "Chat.Ops"`},
		{"viewer:viewer", "the name of a Sluice identity"},
	} {
		out, err := run("--bot", c.arg)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("--bot %s: %v\n%s\nwant an error saying %q", c.arg, err, out, c.want)
		}
	}
	if out, err := run("--bot", "a:viewer", "--bot", "a:operator"); err == nil || !strings.Contains(out, "named twice") {
		t.Errorf("a bot named twice: %v\n%s", err, out)
	}
}
