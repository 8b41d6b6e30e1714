package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ToolsEnv names the environment variable holding the directory built by
// scripts/kube-tools.sh. `make test` sets it.
const ToolsEnv = "SLUICE_KUBE_TOOLS"

// ErrNoTools is returned (wrapped, with how to fix it) when the control
// plane's binaries are missing and cannot be built.
var ErrNoTools = errors.New("Kubernetes test binaries unavailable")

const mainModule = "github.com/sluicehq/sluice"

// binaries the tools directory must hold under bin/. Argo's are not needed
// to start a control plane, but a directory without them was built by an
// older kube-tools.sh: failing at once says to rebuild it.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
	argoPluginBinary, argoControllerBinary}

// builtTools remembers the directory the script printed, so that several
// control planes in one test binary run it once.
var builtTools struct {
	mu  sync.Mutex
	dir string
}

// FindTools returns the directory built by scripts/kube-tools.sh, as Start
// finds it ($SLUICE_KUBE_TOOLS, or else the script is run), for tests that
// read its files without starting a control plane. ErrNoTools is returned
// (wrapped, with how to fix it) when it cannot be found or built.
func FindTools(ctx context.Context) (string, error) {
	return findTools(ctx, "")
}

// findTools returns the tools directory: explicit, from ToolsEnv, or built
// (or found in the cache) by scripts/kube-tools.sh.
func findTools(ctx context.Context, explicit string) (string, error) {
	dir, source := explicit, "Options.ToolsDir"
	if dir == "" {
		dir, source = os.Getenv(ToolsEnv), "$"+ToolsEnv
	}
	if dir == "" {
		var err error
		if dir, err = buildTools(ctx); err != nil {
			return "", err
		}
		source = "scripts/kube-tools.sh"
	}
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, "bin", b)); err != nil {
			return "", fmt.Errorf("kubetest: %w: %s (from %s) has no bin/%s; "+
				"build the tools with `make kube-tools` and point %s at the directory it prints",
				ErrNoTools, dir, source, b, ToolsEnv)
		}
	}
	return dir, nil
}

// buildTools runs scripts/kube-tools.sh from the repository that holds the
// working directory, as `go test` runs tests in their package directory.
func buildTools(ctx context.Context) (string, error) {
	builtTools.mu.Lock()
	defer builtTools.mu.Unlock()
	if builtTools.dir != "" {
		return builtTools.dir, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("kubetest: %w: %s is unset and %v; run `make kube-tools` in the Sluice repository and set %s to the directory it prints",
			ErrNoTools, ToolsEnv, err, ToolsEnv)
	}
	script := filepath.Join(root, "scripts", "kube-tools.sh")
	var stdout bytes.Buffer
	stderr := &tailWriter{max: 40}
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = root
	cmd.Stdout = &stdout
	// Progress of a first, minutes-long build is worth seeing live.
	cmd.Stderr = multiWriter{os.Stderr, stderr}
	fmt.Fprintf(os.Stderr, "kubetest: %s is unset; running %s (builds once, then cached)\n", ToolsEnv, script)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubetest: %w: %s failed (%v); build the tools with `make kube-tools` and read its output:\n%s",
			ErrNoTools, script, err, stderr.String())
	}
	dir := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(dir, '\n'); i >= 0 {
		dir = dir[i+1:]
	}
	if dir == "" {
		return "", fmt.Errorf("kubetest: %w: %s printed no directory", ErrNoTools, script)
	}
	builtTools.dir = dir
	return dir, nil
}

// repoRoot walks up from the working directory to Sluice's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isMainModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", mainModule)
		}
		dir = parent
	}
}

func isMainModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == mainModule
		}
	}
	return false
}

// tailWriter keeps the last max lines written to it.
type tailWriter struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.lines = append(w.lines, string(w.part[:i]))
		w.part = w.part[i+1:]
		if len(w.lines) > w.max {
			w.lines = w.lines[len(w.lines)-w.max:]
		}
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(append(append([]string(nil), w.lines...), string(w.part)), "\n")
}

// multiWriter is io.MultiWriter that keeps writing to the others when one
// fails (os.Stderr may be closed by the time a build ends).
type multiWriter []io.Writer

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		_, _ = w.Write(p)
	}
	return len(p), nil
}
