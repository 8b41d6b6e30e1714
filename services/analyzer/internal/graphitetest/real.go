package graphitetest

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
)

// Python is the interpreter Real runs graphite-web with: Debian's, into
// which the graphite-web and python3-whisper packages install (a python3
// earlier on PATH, from pyenv for instance, does not see them).
const Python = "/usr/bin/python3"

// Packages are the Debian packages Real needs; .ci/run installs them.
const Packages = "graphite-web python3-whisper"

// RealStep is the time between two values of a series in Real's whisper
// files.
const RealStep = 10 * time.Second

//go:embed serve.py
var serveScript []byte

// Real starts a real graphite-web (Debian's graphite-web package, run by
// Python's wsgiref server) over whisper files holding series, one file per
// series named by its Target (a dotted metric path). Each series' last
// value is at the latest RealStep boundary before the start and the others
// RealStep apart before it; a nil value is a gap (Graphite returns null for
// it); other values must be finite float64s. It returns the base URL of the
// render API, which serves until the test ends.
//
// Real fails the test, naming the packages to install, when graphite-web or
// whisper cannot be imported by Python.
func Real(t testing.TB, series []Series) string {
	t.Helper()
	root := t.TempDir()
	type file struct {
		Name   string `json:"name"`
		Values []any  `json:"values"`
	}
	spec := struct {
		Step   int    `json:"step"`
		Series []file `json:"series"`
	}{Step: int(RealStep / time.Second)}
	for _, s := range series {
		for _, v := range s.Values {
			if f, ok := v.(float64); v != nil && (!ok || math.IsNaN(f) || math.IsInf(f, 0)) {
				t.Fatalf("graphitetest.Real: series %q: value %v (%T): write finite float64 values and gaps (nil); Graphite functions make infinities (scale(x,1e400))", s.Target, v, v)
			}
		}
		spec.Series = append(spec.Series, file{Name: s.Target, Values: s.Values})
	}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "serve.py")
	for name, content := range map[string][]byte{"series.json": data, "serve.py": serveScript} {
		if err := os.WriteFile(filepath.Join(root, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(Python, script, root)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start graphite-web: %v; %s", err, missing())
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				port <- p
			}
		}
	}()
	var addr string
	poll.Until(t, "graphite-web to listen", func() error {
		select {
		case p := <-port:
			addr = "http://127.0.0.1:" + p
			return nil
		case <-exited:
			t.Fatalf("graphite-web exited before it listened: %v; %s\n%s", waitErr, missing(), stderr.String())
		default:
		}
		return fmt.Errorf("no \"listening PORT\" line yet; stderr so far:\n%s", stderr.String())
	}, poll.Every(20*time.Millisecond))
	return addr
}

// missing says what to install when Python cannot import graphite-web or
// whisper, the usual reason for graphite-web not to start; it is checked
// only then, to keep a healthy start fast.
func missing() string {
	out, err := exec.Command(Python, "-W", "ignore", "-c", "import graphite.settings, whisper, django").CombinedOutput()
	if err == nil {
		return "graphite-web and whisper are installed"
	}
	return fmt.Sprintf("graphitetest.Real needs graphite-web and whisper for %s: install the Debian packages %s (apt-get install %s; .ci/run does): %v: %s",
		Python, Packages, Packages, err, bytes.TrimSpace(out))
}

// lockedBuffer is a bytes.Buffer a process writes while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
