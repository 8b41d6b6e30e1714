// Package testbin gives tests the Sluice binaries, built once.
//
// `make test` builds every binary before the tests (go run
// ./internal/testbin/build) and names their directory in SLUICE_TEST_BIN;
// a test then runs them as they are. Without SLUICE_TEST_BIN (go test
// ./test/e2e on its own), the first call in a test process builds them
// into bin/test of the checkout, where the next process finds them up to
// date.
//
// Every binary is built by one `go build` with one flag set, that of
// `make build` and `go vet` plus the build tag sluicetest (Tags): their
// compiled packages are shared, so the binaries cost a link each, and the
// tag only selects the files that let a test skew a binary's clock
// (package clock, EnvTestSkew), which a release binary cannot do. Tests
// that check flags (test/compose, test/docs, test/deploy) read --help,
// which does not depend on cgo, the race detector or the tag.
package testbin

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// Env names the directory of binaries built before the tests.
const Env = "SLUICE_TEST_BIN"

// Tags are the build tags of the binaries tests run: sluicetest lets a
// test skew their clocks (package clock).
const Tags = "sluicetest"

// Packages are the main packages built, relative to the module root: the
// image's binaries (Dockerfile), the systest data-plane worker, the
// analyzer's test metric plugin, and nats-server itself, built from the
// module go.mod pins, for the suites that kill, pause and partition
// cluster nodes as processes (systest.StartNATSCluster).
var Packages = []string{"./cmd/...", "./examples/...", "./deploy/compose/httpcheck", "./test/systest/worker", "./services/analyzer/internal/plugintest/metricplugin", "github.com/nats-io/nats-server/v2"}

// Dir returns the directory that holds every binary of Packages: $Env when
// set, or else bin/test, built once per process.
func Dir() (string, error) {
	if dir := os.Getenv(Env); dir != "" {
		return dir, nil
	}
	return built()
}

var built = sync.OnceValues(func() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return Build(root)
})

// Path returns the path of binary name (e.g. "sluice", "demoapp"), and
// fails t when the binaries cannot be built or there is no such binary.
func Path(t testing.TB, name string) string {
	t.Helper()
	dir, err := Dir()
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("testbin: no binary %s in %s (%s): %v", name, dir, Env, err)
	}
	return path
}

// Build builds Packages of the module at root into root/bin/test and
// returns that directory. go build relinks only what changed, and a lock
// keeps test processes that build at the same time out of each other's way.
func Build(root string) (string, error) {
	dir := filepath.Join(root, "bin", "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	defer lock.Close() // releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("testbin: lock %s: %w", lock.Name(), err)
	}
	args := append([]string{"build", "-tags", Tags, "-o", dir + string(os.PathSeparator)}, Packages...)
	cmd := exec.Command(cmp.Or(os.Getenv("GO"), "go"), args...) // GO as in the Makefile
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbin: go build in %s: %w\n%s", root, err, out)
	}
	return dir, nil
}

// ModuleRoot returns the directory of the go.mod above the working
// directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testbin: no go.mod above the working directory")
		}
		dir = parent
	}
}
