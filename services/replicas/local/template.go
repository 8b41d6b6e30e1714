package local

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/localcmd"
	"github.com/sluicehq/sluice/internal/tasks"
)

// Kubernetes defaults the local platform applies the same way.
const (
	defaultGracePeriod    = 30 * time.Second
	defaultProbePeriod    = 10 * time.Second
	defaultProbeTimeout   = 1 * time.Second
	defaultProbeFailures  = 3
	defaultProbeSuccesses = 1
	defaultMetricsPath    = "/metrics"
	metricsPathAnnotation = "prometheus.io/path"
)

// program is how every pod of one revision runs as a process: the pod
// template's first container, checked once. Values are as written; $(VAR)
// references are expanded per process, once its PORT is known.
type program struct {
	container  string
	command    []string
	args       []string
	env        []corev1.EnvVar // literal values only
	workingDir string
	probe      *probe // nil: ready once started
	grace      time.Duration
	// metricsPath is where the processes serve metrics, for the endpoints
	// entry.
	metricsPath string
	// ignored lists the parts of the template the local platform does
	// not run, for a warning.
	ignored []string
}

// portRef is a port a probe targets: the process's PORT, or a fixed
// number.
type portRef struct {
	port   bool
	number int
}

func (p portRef) resolve(port int) int {
	if p.port {
		return port
	}
	return p.number
}

// probe is a readiness probe with Kubernetes' defaults applied.
type probe struct {
	// http or tcp.
	http         bool
	scheme, path string
	host         string // empty: the backend's host
	headers      http.Header
	port         portRef

	initialDelay, period, timeout time.Duration
	successes, failures           int
}

// compile checks what the local platform needs from rs's pod template and
// returns the program, or every problem with its field path.
func compile(rs tasks.RevisionScale) (*program, error) {
	p, problems := compileProgram(rs)
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return p, nil
}

// CheckTemplate returns every problem, each with its field path, that
// makes the local backend refuse to run t's processes: what it cannot run
// (no command, env valueFrom, an unsupported probe) and a program it
// cannot find with environ (nil: this process's environment, as the
// backend's default). `sluice lint --platform local` calls it.
func CheckTemplate(t corev1.PodTemplateSpec, environ []string) []string {
	p, problems := compileProgram(tasks.RevisionScale{Template: t, Replicas: 1})
	if len(problems) > 0 {
		return problems
	}
	if environ == nil {
		var cfg Config
		cfg.Defaults()
		environ = cfg.Environ
	}
	inv := p.invoke(environ, 0)
	if _, err := localcmd.LookPath(inv.argv[0], inv.env, p.workingDir); err != nil {
		return []string{fmt.Sprintf("spec.template.spec.containers[0].command[0]: %v", err)}
	}
	return nil
}

// compileProgram is compile, returning the problems as a list.
func compileProgram(rs tasks.RevisionScale) (*program, []string) {
	var problems []string
	bad := func(path, format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	}
	spec := rs.Template.Spec
	if len(spec.Containers) == 0 {
		return nil, []string{"spec.template.spec.containers: the pod template has no container"}
	}
	c := spec.Containers[0]
	const at = "spec.template.spec.containers[0]"
	p := &program{
		container:   c.Name,
		command:     c.Command,
		args:        c.Args,
		workingDir:  c.WorkingDir,
		grace:       defaultGracePeriod,
		metricsPath: defaultMetricsPath,
	}
	if v := rs.Template.Annotations[metricsPathAnnotation]; v != "" {
		p.metricsPath = v
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil && *g >= 0 {
		p.grace = time.Duration(*g) * time.Second
	}

	switch {
	case len(c.Command) == 0 && len(c.Args) > 0:
		bad(at+".command", "required on the local platform, which has no image entrypoint to pass args to: put the program in command")
	case len(c.Command) == 0:
		bad(at+".command", "required on the local platform, which has no image entrypoint to run")
	}
	for i, e := range c.Env {
		if e.ValueFrom != nil {
			bad(fmt.Sprintf("%s.env[%d].valueFrom", at, i), "%s: not supported on the local platform; set value", e.Name)
			continue
		}
		p.env = append(p.env, corev1.EnvVar{Name: e.Name, Value: e.Value})
	}
	if len(c.EnvFrom) > 0 {
		bad(at+".envFrom", "not supported on the local platform; list the variables in env")
	}
	if rp := c.ReadinessProbe; rp != nil {
		pr, errs := compileProbe(at+".readinessProbe", rp, c)
		problems = append(problems, errs...)
		p.probe = pr
	}

	if len(spec.Containers) > 1 {
		p.ignored = append(p.ignored, fmt.Sprintf("containers after the first (%d)", len(spec.Containers)-1))
	}
	if len(spec.InitContainers) > 0 {
		p.ignored = append(p.ignored, "initContainers")
	}
	if len(spec.Volumes) > 0 || len(c.VolumeMounts) > 0 {
		p.ignored = append(p.ignored, "volumes")
	}
	if c.LivenessProbe != nil {
		p.ignored = append(p.ignored, "livenessProbe")
	}
	if c.StartupProbe != nil {
		p.ignored = append(p.ignored, "startupProbe")
	}
	if c.Lifecycle != nil {
		p.ignored = append(p.ignored, "lifecycle hooks")
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return p, nil
}

func compileProbe(at string, rp *corev1.Probe, c corev1.Container) (*probe, []string) {
	var problems []string
	bad := func(path, format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	}
	pr := &probe{
		initialDelay: time.Duration(rp.InitialDelaySeconds) * time.Second,
		period:       seconds(rp.PeriodSeconds, defaultProbePeriod),
		timeout:      seconds(rp.TimeoutSeconds, defaultProbeTimeout),
		successes:    positive(rp.SuccessThreshold, defaultProbeSuccesses),
		failures:     positive(rp.FailureThreshold, defaultProbeFailures),
	}
	for _, f := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", rp.InitialDelaySeconds}, {"periodSeconds", rp.PeriodSeconds}, {"timeoutSeconds", rp.TimeoutSeconds},
		{"successThreshold", rp.SuccessThreshold}, {"failureThreshold", rp.FailureThreshold},
	} {
		if f.v < 0 {
			bad(at+"."+f.name, "%d must not be negative", f.v)
		}
	}
	switch h := rp.ProbeHandler; {
	case h.HTTPGet != nil:
		pr.http = true
		pr.path = h.HTTPGet.Path
		if pr.path == "" {
			pr.path = "/"
		} else if !strings.HasPrefix(pr.path, "/") {
			pr.path = "/" + pr.path
		}
		pr.host = h.HTTPGet.Host
		switch h.HTTPGet.Scheme {
		case "", corev1.URISchemeHTTP:
			pr.scheme = "http"
		case corev1.URISchemeHTTPS:
			pr.scheme = "https"
		default:
			bad(at+".httpGet.scheme", "%q: want HTTP or HTTPS", h.HTTPGet.Scheme)
		}
		pr.headers = http.Header{}
		for _, hd := range h.HTTPGet.HTTPHeaders {
			pr.headers.Add(hd.Name, hd.Value)
		}
		var err error
		if pr.port, err = resolvePort(h.HTTPGet.Port, c); err != nil {
			bad(at+".httpGet.port", "%v", err)
		}
	case h.TCPSocket != nil:
		pr.host = h.TCPSocket.Host
		var err error
		if pr.port, err = resolvePort(h.TCPSocket.Port, c); err != nil {
			bad(at+".tcpSocket.port", "%v", err)
		}
	case h.Exec != nil:
		bad(at+".exec", "not supported on the local platform; use httpGet or tcpSocket")
	case h.GRPC != nil:
		bad(at+".grpc", "not supported on the local platform; use httpGet or tcpSocket")
	default:
		bad(at, "has no handler: set httpGet or tcpSocket")
	}
	return pr, problems
}

// resolvePort maps a probe's port onto the process: the container's first
// containerPort, by number or by name, means PORT; another named port is
// that port's number; another number is used as written.
func resolvePort(v intstr.IntOrString, c corev1.Container) (portRef, error) {
	if v.Type == intstr.String {
		for i, cp := range c.Ports {
			if cp.Name == v.StrVal {
				if i == 0 {
					return portRef{port: true}, nil
				}
				return portRef{number: int(cp.ContainerPort)}, nil
			}
		}
		if n, err := strconv.Atoi(v.StrVal); err == nil {
			return resolvePort(intstr.FromInt32(int32(n)), c)
		}
		return portRef{}, fmt.Errorf("%q: the container has no port of that name", v.StrVal)
	}
	n := int(v.IntVal)
	if len(c.Ports) > 0 && n == int(c.Ports[0].ContainerPort) {
		return portRef{port: true}, nil
	}
	if n < 1 || n > 65535 {
		return portRef{}, fmt.Errorf("%d: must be between 1 and 65535", n)
	}
	return portRef{number: n}, nil
}

func seconds(v int32, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return time.Duration(v) * time.Second
}

func positive(v int32, def int) int {
	if v <= 0 {
		return def
	}
	return int(v)
}

// invocation is one process's command line and environment.
type invocation struct {
	argv []string
	env  []string
}

// invoke expands the program for a process listening on port. The
// environment is base, then the container's env in order (each value may
// refer to PORT and to the variables before it), then PORT, which replaces
// any PORT the others set. $(VAR) in command and args refers to the
// container's env and PORT, not to base.
func (p *program) invoke(base []string, port int) invocation {
	ps := strconv.Itoa(port)
	vars := map[string]string{"PORT": ps}
	env := make([]string, 0, len(base)+len(p.env)+1)
	env = append(env, base...)
	for _, e := range p.env {
		v := localcmd.Expand(e.Value, vars)
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	vars["PORT"] = ps
	env = append(env, "PORT="+ps)
	argv := make([]string, 0, len(p.command)+len(p.args))
	for _, s := range p.command {
		argv = append(argv, localcmd.Expand(s, vars))
	}
	for _, s := range p.args {
		argv = append(argv, localcmd.Expand(s, vars))
	}
	return invocation{argv: argv, env: env}
}
