// Package security proves Sluice's NATS permissions and secret handling
// against a real embedded nats-server: every identity of
// assembly.PermissionsOf runs its real binary or service with nothing more,
// is refused outside its subjects, and a bearer token used by an analysis
// never reaches an event or a log line. See docs/security.md.
package security

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// patience bounds every wait; healthy runs take a fraction of it.
const patience = 30 * time.Second

// adminUser has no permission limits: the test's own eyes on the bus.
const adminUser = "admin"

func password(identity string) string { return "pw-" + identity }

// serverPermissions turns Sluice's definition into the server's.
func serverPermissions(p events.Permissions) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.Publish, Deny: p.DenyPublish},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
	}
}

// startServer starts an embedded server with one user per identity, each
// limited to its permissions, one per bot, and an unlimited admin user.
func startServer(t *testing.T, bots ...events.Bot) string {
	t.Helper()
	s, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Configure: func(o *server.Options) {
		o.Users = []*server.User{{Username: adminUser, Password: password(adminUser)}}
		users := slices.Clone(events.Identities)
		for _, b := range bots {
			users = append(users, b.Name)
		}
		for _, id := range users {
			p, ok := assembly.PermissionsOf(id, bots...)
			if !ok {
				t.Fatalf("no permissions for %s", id)
			}
			o.Users = append(o.Users, &server.User{Username: id, Password: password(id), Permissions: serverPermissions(p)})
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// connect connects as identity, logging to log.
func connect(t *testing.T, url, identity string, log *slog.Logger) *events.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	c, err := events.Connect(ctx, events.ConnConfig{URLs: []string{url}, Name: "sluice-" + identity, User: identity, Password: password(identity), InboxPrefix: events.InboxPrefixOf(identity)}, events.WithLogger(log))
	if err != nil {
		t.Fatalf("connect as %s: %v", identity, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// logBuffer collects every log line of the services under test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logger logs everything, debug included, as JSON to b.
func (b *logBuffer) logger(service string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})).With("service", service)
}

// subjectCount is how many messages stream holds on subject.
func subjectCount(t *testing.T, admin *events.Client, stream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	s, err := admin.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// runCLI runs the sluice binary as identity and returns its exit code and
// output.
func runCLI(t *testing.T, url, identity string, args ...string) (int, string) {
	t.Helper()
	return runCLIWithin(t, patience, url, identity, args...)
}

// runCLIWithin is runCLI killing the CLI after d (exit code -1).
func runCLIWithin(t *testing.T, d time.Duration, url, identity string, args ...string) (int, string) {
	t.Helper()
	cli := testbin.Path(t, "sluice")
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Env = append(os.Environ(), "NATS_URL="+url, "NATS_USER="+identity, "NATS_PASSWORD="+password(identity), "NATS_INBOX_PREFIX="+events.InboxPrefixOf(identity))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("sluice %v: %v", args, err)
	}
	return 0, string(out)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, what, cond, poll.Timeout(patience))
}
