package systemtest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logs is output that goroutines write while a test reads it, safe for
// concurrent use: the logs of services under test (Logger), a process's
// stdout and stderr, a command's output. The test searches String or
// checks NoSecrets.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger is a text logger writing to l from level on.
func (l *Logs) Logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: level}))
}

// NoSecrets fails t when the logs hold one of secrets.
func (l *Logs) NoSecrets(t testing.TB, secrets ...string) {
	t.Helper()
	out := l.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("the logs hold a secret %q:\n%s", s, out)
		}
	}
}
