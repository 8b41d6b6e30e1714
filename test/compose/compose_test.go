// Package compose checks docker-compose.yaml against the code it runs: the
// file must be valid by the Compose specification's own loader, and every
// command line, environment variable and healthcheck of a service that runs
// a Sluice binary must be one that binary accepts. A renamed flag or
// environment variable fails here, not at `docker compose up`.
//
// Docker itself is not needed: the binaries the Dockerfile builds (the main
// packages of its go build line) are asked for their --help. They come from
// package testbin, built without the Dockerfile's CGO_ENABLED=0, which
// changes no flag.
package compose

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sluicehq/sluice/internal/testbin"
)

var update = flag.Bool("update", false, "rewrite deploy/compose/examples from examples/")

const root = "../.."

// loadProject loads docker-compose.yaml as `docker compose` does, with
// validation and consistency checks on.
func loadProject(t *testing.T) *types.Project {
	t.Helper()
	wd, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "docker-compose.yaml")}},
		Environment: types.Mapping{},
	})
	if err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return p
}

func TestComposeFileIsValid(t *testing.T) {
	p := loadProject(t)
	for _, name := range []string{"nats", "prometheus", "sluice-orchestrator", "sluice-analyzer", "sluice-replicas", "sluice-traffic", "sluice-gateway", "sluice-notifier", "demo", "loadgen"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
	nats, err := p.GetService("nats")
	if err == nil && !slices.Contains(nats.Command, "--jetstream") {
		t.Errorf("nats runs %q: JetStream is not enabled", nats.Command)
	}
}

// dockerBinaries are the names of the binaries the Dockerfile builds: the
// main packages its go build line names.
var dockerBinaries = sync.OnceValues(func() (map[string]bool, error) {
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	m := regexp.MustCompile(`go build [^\n]*-o /out/bin/ ((?:\./\S+ ?)+)`).FindSubmatch(dockerfile)
	if m == nil {
		return nil, errors.New("the Dockerfile has no go build line with -o /out/bin/")
	}
	args := append([]string{"list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{end}}`}, strings.Fields(string(m[1]))...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	names := map[string]bool{}
	for _, pkg := range strings.Fields(string(out)) {
		names[path.Base(pkg)] = true
	}
	return names, nil
})

// builtByDocker reports whether the Dockerfile builds binary bin.
func builtByDocker(t *testing.T, bin string) bool {
	t.Helper()
	names, err := dockerBinaries()
	if err != nil {
		t.Fatalf("reading the Dockerfile's binaries: %v", err)
	}
	return names[bin]
}

// usage is what a binary's --help says it accepts.
type usage struct {
	flags map[string]bool // long and short names, without dashes
	env   map[string]bool // variables named as "(env NAME)"
}

var (
	flagLine = regexp.MustCompile(`(?m)^\s+(?:-([a-zA-Z0-9]), )?-{1,2}([a-zA-Z0-9][a-zA-Z0-9_-]*)`)
	envName  = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)\)`)
)

// help runs bin with args and --help (the std flag package and pflag
// both print their flags; exit codes differ and do not matter).
func help(t *testing.T, bin string, args ...string) usage {
	t.Helper()
	out, _ := exec.Command(testbin.Path(t, bin), append(args, "--help")...).CombinedOutput()
	u := usage{flags: map[string]bool{}, env: map[string]bool{}}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		if m[1] != "" {
			u.flags[m[1]] = true
		}
		u.flags[m[2]] = true
	}
	for _, m := range envName.FindAllStringSubmatch(string(out), -1) {
		u.env[m[1]] = true
	}
	if len(u.flags) == 0 {
		t.Fatalf("%s %s --help lists no flags:\n%s", bin, strings.Join(args, " "), out)
	}
	return u
}

// runsSluiceImage reports whether svc runs the image this repository's
// Dockerfile builds.
func runsSluiceImage(t *testing.T, svc types.ServiceConfig) bool {
	if svc.Build == nil {
		return false
	}
	wd, _ := filepath.Abs(root)
	if filepath.Clean(svc.Build.Context) != wd {
		t.Errorf("service %s builds %s, not the repository's Dockerfile", svc.Name, svc.Build.Context)
	}
	return true
}

func TestServicesMatchTheBinaries(t *testing.T) {
	p := loadProject(t)
	var image string
	seen := 0
	for _, svc := range p.Services {
		if !runsSluiceImage(t, svc) {
			continue
		}
		seen++
		t.Run(svc.Name, func(t *testing.T) {
			if image == "" {
				image = svc.Image
			} else if svc.Image != image {
				t.Errorf("image %q, others run %q: one image carries every binary", svc.Image, image)
			}
			if len(svc.Command) == 0 {
				t.Fatal("no command: the image has no entrypoint, the command names the binary")
			}
			bin := svc.Command[0]
			if !builtByDocker(t, bin) {
				t.Fatalf("command %q: the Dockerfile builds no binary %s", svc.Command, bin)
			}
			// Leading words are subcommands (sluice apply ...).
			rest := svc.Command[1:]
			var sub []string
			for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
				sub, rest = append(sub, rest[0]), rest[1:]
			}
			u := help(t, bin, sub...)
			for _, arg := range rest {
				if !strings.HasPrefix(arg, "-") {
					continue // a flag's value
				}
				name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
				if !u.flags[name] {
					t.Errorf("command %q: %s %s has no flag %q", svc.Command, bin, strings.Join(sub, " "), arg)
				}
			}
			for name := range svc.Environment {
				if !u.env[name] {
					t.Errorf("environment %s: %s does not read it (its --help names %v)", name, bin, keys(u.env))
				}
			}
			checkHealthcheck(t, svc)
		})
	}
	if seen < 6 {
		t.Errorf("%d services run the Sluice image; want the five services and the demo", seen)
	}
}

// checkHealthcheck: a probe runs httpcheck against the service's own
// --http-listen port.
func checkHealthcheck(t *testing.T, svc types.ServiceConfig) {
	t.Helper()
	hc := svc.HealthCheck
	if hc == nil || hc.Disable {
		if strings.HasPrefix(svc.Command[0], "sluice-") {
			t.Errorf("service %s has no healthcheck on /readyz", svc.Name)
		}
		return
	}
	if len(hc.Test) != 3 || hc.Test[0] != "CMD" || hc.Test[1] != "httpcheck" {
		t.Fatalf("healthcheck %q: want [CMD httpcheck URL] (the image has no shell)", hc.Test)
	}
	listen := svc.Environment["HTTP_LISTEN"]
	if listen == nil {
		t.Fatalf("healthcheck %q but no HTTP_LISTEN", hc.Test)
	}
	_, port, err := net.SplitHostPort(*listen)
	if err != nil {
		t.Fatalf("HTTP_LISTEN %q: %v", *listen, err)
	}
	if want := "http://127.0.0.1:" + port + "/readyz"; hc.Test[2] != want {
		t.Errorf("healthcheck probes %s, want %s", hc.Test[2], want)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Processes run in sluice-replicas' container, the proxy in
// sluice-traffic's: the endpoints must name the replicas container, and
// every proxy address must listen on all interfaces and be published.
func TestLocalPlatformNetworking(t *testing.T) {
	p := loadProject(t)
	replicas, err := p.GetService("sluice-replicas")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(replicas.Command, "--advertise-host="+replicas.Name) {
		t.Errorf("sluice-replicas runs %q: want --advertise-host=%s, the name the proxy reaches it by", replicas.Command, replicas.Name)
	}
	traffic, err := p.GetService("sluice-traffic")
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]bool{}
	for _, port := range traffic.Ports {
		published[strconv.Itoa(int(port.Target))] = true
	}
	listen := regexp.MustCompile(`local\.sluice\.io/(?:preview-)?listen: "?([^"\s]+)`)
	files, _ := filepath.Glob(filepath.Join(root, "deploy/compose/examples/*.yaml"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range listen.FindAllStringSubmatch(string(data), -1) {
			host, port, err := net.SplitHostPort(m[1])
			if err != nil {
				t.Errorf("%s: %s: %v", f, m[0], err)
				continue
			}
			if host != "0.0.0.0" && host != "" {
				t.Errorf("%s: %s: only this container could reach it; listen on 0.0.0.0", f, m[0])
			}
			if !published[port] {
				t.Errorf("%s: %s: sluice-traffic does not publish port %s", f, m[0], port)
			}
		}
	}
}

// composeManifest is one manifest under deploy/compose/examples and how it
// is made from examples/.
type composeManifest struct {
	name, from string
	replace    []string // old, new pairs
}

var manifests = []composeManifest{
	{"analysis-templates.yaml", "analysis-templates.yaml", []string{"address: http://127.0.0.1:9090", "address: http://prometheus:9090"}},
	{"web-v1.yaml", "canary-analysis.yaml", webChanges("v1", "0")},
	{"web-v2.yaml", "canary-analysis.yaml", webChanges("v2", "0")},
	{"web-v3.yaml", "canary-analysis.yaml", webChanges("v3", "0.5")},
}

func webChanges(version, errorRate string) []string {
	return []string{
		"local.sluice.io/listen: 127.0.0.1:8080", "local.sluice.io/listen: 0.0.0.0:8080",
		`command: ["bin/demoapp"]`, `command: ["bin/demoapp"]` + "\n        args: [\"--addr=:$(PORT)\"]",
		"{name: VERSION, value: v1}", "{name: VERSION, value: " + version + "}",
		`{name: ERROR_RATE, value: "0"}`, `{name: ERROR_RATE, value: "` + errorRate + `"}`,
	}
}

func (m composeManifest) render(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "examples", m.from))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i < len(m.replace); i += 2 {
		if !strings.Contains(s, m.replace[i]) {
			t.Fatalf("examples/%s no longer contains %q: update test/compose", m.from, m.replace[i])
		}
		s = strings.ReplaceAll(s, m.replace[i], m.replace[i+1])
	}
	return []byte("# Generated from examples/" + m.from + " by `go test ./test/compose -update`\n" +
		"# for docker-compose.yaml (see the networking notes there). Do not edit.\n" + s)
}

func TestComposeManifestsFollowTheExamples(t *testing.T) {
	for _, m := range manifests {
		t.Run(m.name, func(t *testing.T) {
			path := filepath.Join(root, "deploy/compose/examples", m.name)
			want := m.render(t)
			if *update {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from examples/%s with the Compose changes; run go test ./test/compose -update", path, m.from)
			}
			// The rollouts reference the templates of analysis-templates.yaml.
			args := []string{"lint", "-f", path}
			if m.name != "analysis-templates.yaml" {
				args = append(args, "-f", filepath.Join(root, "deploy/compose/examples/analysis-templates.yaml"))
			}
			if out, err := exec.Command(testbin.Path(t, "sluice"), args...).CombinedOutput(); err != nil {
				t.Errorf("sluice lint -f %s: %v\n%s", path, err, out)
			}
		})
	}
	if u := help(t, "demoapp"); !u.flags["addr"] {
		t.Errorf("the manifests run demoapp --addr, which it no longer has")
	}
}
