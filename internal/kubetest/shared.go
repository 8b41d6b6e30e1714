package kubetest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// shared is the control plane of this test binary, started by the first
// Shared call and stopped by Main.
var shared struct {
	mu      sync.Mutex
	started bool
	cp      *ControlPlane
	err     error
}

// SharedStartTimeout bounds the first Shared call, including building the
// tools when SLUICE_KUBE_TOOLS is unset (several minutes the first time).
const SharedStartTimeout = 15 * time.Minute

// Shared returns the test binary's control plane, starting it with default
// Options on first use. If it cannot start, every caller fails with the
// same error (which says how to build the tools when they are missing). The
// package's TestMain must call Main, which stops it.
func Shared(tb testing.TB) *ControlPlane {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), SharedStartTimeout)
		shared.cp, shared.err = Start(ctx, Options{})
		cancel()
	}
	if shared.err != nil {
		tb.Fatalf("kubetest: no control plane: %v", shared.err)
	}
	return shared.cp
}

// Main runs the tests of a package that uses Shared, then stops the shared
// control plane (if a test started it) and exits. Use it as the package's
// TestMain:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
// When a test failed, the components' logs are kept and their directory is
// printed.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	cp := shared.cp
	shared.mu.Unlock()
	if cp != nil {
		keep := code != 0
		cp.stop(keep)
		if keep {
			fmt.Fprintf(os.Stderr, "kubetest: control plane logs kept in %s\n", cp.LogDir)
		}
	}
	os.Exit(code)
}
