package influxdbtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
)

// InfluxdEnv names the variable holding the path of the influxd binary
// built by scripts/influxdb.sh. `make test` sets it; without it, StartInfluxd
// runs the script (which builds once, then answers from its cache).
const InfluxdEnv = "SLUICE_INFLUXD"

// Influxd is a real InfluxDB 1.8 serving Flux at /api/v2/query, with
// authentication on and one admin user.
type Influxd struct {
	// URL is the HTTP API's base URL, the profile's address.
	URL                string
	Username, Password string
}

// Token is what InfluxDB 1.8 takes as a v2 API token: "username:password".
func (d *Influxd) Token() string { return d.Username + ":" + d.Password }

// StartInfluxd starts influxd with fresh data in a temporary directory until
// the test ends. It fails the test, never skips it, when influxd cannot be
// built or does not come up.
func StartInfluxd(t testing.TB) *Influxd {
	t.Helper()
	bin, err := influxdBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	httpAddr, rpcAddr := freeAddr(t), freeAddr(t)
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = %q
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = %q
  auth-enabled = true
  flux-enabled = true
  log-enabled = false
  unix-socket-enabled = false
[continuous_queries]
  enabled = false
`, rpcAddr, filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), httpAddr)
	confPath := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "influxd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", confPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("influxdbtest: start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logFile.Close()
	})
	d := &Influxd{URL: "http://" + httpAddr, Username: "admin", Password: "influxdbtest-password"}
	logTail := func() string {
		b, _ := os.ReadFile(logFile.Name())
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return string(b)
	}
	poll.Until(t, "influxd to answer /ping", func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("influxdbtest: influxd exited: %v\n%s", err, logTail())
		default:
		}
		resp, err := http.Get(d.URL + "/ping")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("/ping: %s", resp.Status)
		}
		return nil
	}, poll.Timeout(2*time.Minute))
	// With no user yet, InfluxDB lets anyone create the first admin.
	d.influxQL(t, "", fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", d.Username, d.Password))
	return d
}

// CreateDatabase creates database db; Flux reads it as bucket "db/autogen".
func (d *Influxd) CreateDatabase(t testing.TB, db string) {
	t.Helper()
	d.influxQL(t, d.Username, fmt.Sprintf("CREATE DATABASE %q", db))
}

// Write writes points in line protocol, timestamps in seconds, to db.
func (d *Influxd) Write(t testing.TB, db, lines string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL+"/write?"+url.Values{"db": {db}, "precision": {"s"}}.Encode(), strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(d.Username, d.Password)
	d.do(t, req, http.StatusNoContent)
}

func (d *Influxd) influxQL(t testing.TB, user, q string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL+"/query", strings.NewReader(url.Values{"q": {q}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(d.Username, d.Password)
	}
	body := d.do(t, req, http.StatusOK)
	if bytes.Contains(body, []byte(`"error"`)) {
		t.Fatalf("influxdbtest: %s: %s", q, body)
	}
}

func (d *Influxd) do(t testing.TB, req *http.Request, want int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("influxdbtest: %s %s: %v", req.Method, req.URL.Path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("influxdbtest: %s %s: %s: %s", req.Method, req.URL.Path, resp.Status, body)
	}
	return body
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// built remembers the binary the script printed, so that the tests of one
// package run it once.
var built struct {
	once sync.Once
	path string
	err  error
}

// influxdBinary is $SLUICE_INFLUXD, or the binary scripts/influxdb.sh builds
// (or finds in its cache).
func influxdBinary() (string, error) {
	if p := os.Getenv(InfluxdEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("influxdbtest: $%s: %v; rebuild it with scripts/influxdb.sh", InfluxdEnv, err)
		}
		return p, nil
	}
	built.once.Do(func() { built.path, built.err = buildInfluxd() })
	return built.path, built.err
}

func buildInfluxd() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("influxdbtest: $%s is unset and the repository root is not found (go env GOMOD: %v); run scripts/influxdb.sh and set %s to the path it prints", InfluxdEnv, err, InfluxdEnv)
	}
	script := filepath.Join(filepath.Dir(gomod), "scripts", "influxdb.sh")
	fmt.Fprintf(os.Stderr, "influxdbtest: %s is unset; running %s (builds once, then cached)\n", InfluxdEnv, script)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
	if err := cmd.Run(); err != nil {
		tail := stderr.String()
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		return "", fmt.Errorf("influxdbtest: %s failed (%v), so the real InfluxDB cannot run:\n%s", script, err, tail)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	path := lines[len(lines)-1]
	if path == "" {
		return "", fmt.Errorf("influxdbtest: %s printed no path", script)
	}
	return path, nil
}
