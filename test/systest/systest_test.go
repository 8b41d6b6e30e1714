package systest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
)

// errorRecorder is a test that keeps its errors instead of failing, so
// that a test can check what the harness reports.
type errorRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *errorRecorder) reported(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// A service started with a flag it does not take exits with a usage
// error: the harness says so, with the binary's own message, and does
// not start it again (it used to, every 300 ms, until the test's
// deadline said only that the service was not ready).
func TestAUsageErrorIsReportedNotRestarted(t *testing.T) {
	bus := StartBus(t)
	rec := &errorRecorder{TB: t}
	sys := Start(rec, Spec{NATS: bus.URL, LogDir: t.TempDir(), DataPlane: "127.0.0.1:1",
		Orchestrator: []string{"--no-such-flag"}})
	poll.True(t, "the orchestrator's usage error reported", func() bool {
		return rec.reported("orchestrator-1 exited with a usage error") && rec.reported("no-such-flag")
	}, poll.Timeout(time.Minute))
	for _, p := range sys.Procs {
		if p.Name == "orchestrator-1" && p.Starts() != 1 {
			t.Errorf("orchestrator-1 was started %d times; a usage error must not be retried", p.Starts())
		}
	}
}
