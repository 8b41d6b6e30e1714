package local

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/tasks"
)

func container(edit func(c *corev1.Container)) tasks.RevisionScale {
	c := corev1.Container{Name: "app", Command: []string{"/bin/app"}, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090}}}
	if edit != nil {
		edit(&c)
	}
	return tasks.RevisionScale{Revision: 1, PodHash: "abc", Replicas: 1, Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}}
}

func TestCompileRejectsWhatCannotRunLocally(t *testing.T) {
	for _, tc := range []struct {
		name string
		rs   tasks.RevisionScale
		want []string
	}{
		{"no container", tasks.RevisionScale{}, []string{"containers: the pod template has no container"}},
		{"no command", container(func(c *corev1.Container) { c.Command = nil }), []string{"containers[0].command: required on the local platform"}},
		{"args without command", container(func(c *corev1.Container) { c.Command, c.Args = nil, []string{"--serve"} }),
			[]string{"containers[0].command: required", "args"}},
		{"valueFrom", container(func(c *corev1.Container) {
			c.Env = []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "pw"}}}}
		}), []string{"containers[0].env[1].valueFrom: DB_PASSWORD: not supported on the local platform; set value"}},
		{"envFrom", container(func(c *corev1.Container) {
			c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{}}}
		}), []string{"containers[0].envFrom: not supported"}},
		{"exec probe", container(func(c *corev1.Container) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		}), []string{"readinessProbe.exec: not supported on the local platform; use httpGet or tcpSocket"}},
		{"grpc probe", container(func(c *corev1.Container) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 8080}}}
		}), []string{"readinessProbe.grpc: not supported"}},
		{"probe without handler", container(func(c *corev1.Container) { c.ReadinessProbe = &corev1.Probe{} }),
			[]string{"readinessProbe: has no handler"}},
		{"unknown port name", container(func(c *corev1.Container) { c.ReadinessProbe = httpProbe(intstr.FromString("metrics")) }),
			[]string{`readinessProbe.httpGet.port: "metrics": the container has no port of that name`}},
		{"port out of range", container(func(c *corev1.Container) {
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(70000)}}}
		}), []string{"readinessProbe.tcpSocket.port: 70000: must be between 1 and 65535"}},
		{"bad scheme", container(func(c *corev1.Container) {
			c.ReadinessProbe = httpProbe(intstr.FromInt32(8080))
			c.ReadinessProbe.HTTPGet.Scheme = "FTP"
		}), []string{`httpGet.scheme: "FTP": want HTTP or HTTPS`}},
		{"negative period", container(func(c *corev1.Container) {
			c.ReadinessProbe = httpProbe(intstr.FromInt32(8080))
			c.ReadinessProbe.PeriodSeconds = -1
		}), []string{"readinessProbe.periodSeconds: -1 must not be negative"}},
		{"every problem at once", container(func(c *corev1.Container) {
			c.Command = nil
			c.EnvFrom = []corev1.EnvFromSource{{}}
		}), []string{"command: required", "envFrom: not supported"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compile(tc.rs)
			if err == nil {
				t.Fatal("compiled")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestCompileResolvesPortsAndDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		port intstr.IntOrString
		want portRef
	}{
		{"first port by name means PORT", intstr.FromString("http"), portRef{port: true}},
		{"first port by number means PORT", intstr.FromInt32(8080), portRef{port: true}},
		{"another named port is its number", intstr.FromString("admin"), portRef{number: 9090}},
		{"another number is as written", intstr.FromInt32(7000), portRef{number: 7000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := compile(container(func(c *corev1.Container) {
				c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: tc.port}}}
			}))
			if err != nil {
				t.Fatal(err)
			}
			if p.probe.port != tc.want {
				t.Errorf("port = %+v, want %+v", p.probe.port, tc.want)
			}
			// Kubernetes' defaults.
			pr := p.probe
			if pr.path != "/" || pr.scheme != "http" || pr.period != 10*time.Second || pr.timeout != time.Second || pr.successes != 1 || pr.failures != 3 {
				t.Errorf("defaults not applied: %+v", pr)
			}
		})
	}
	rs := container(func(c *corev1.Container) {
		c.LivenessProbe = &corev1.Probe{}
		c.Ports = nil
	})
	rs.Template.Spec.InitContainers = []corev1.Container{{Name: "migrate"}}
	rs.Template.Spec.Containers = append(rs.Template.Spec.Containers, corev1.Container{Name: "sidecar"})
	rs.Template.Annotations = map[string]string{metricsPathAnnotation: "/stats"}
	grace := int64(3)
	rs.Template.Spec.TerminationGracePeriodSeconds = &grace
	p, err := compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	if p.probe != nil || p.grace != 3*time.Second || p.metricsPath != "/stats" {
		t.Errorf("program = %+v", p)
	}
	if got := strings.Join(p.ignored, ", "); got != "containers after the first (1), initContainers, livenessProbe" {
		t.Errorf("ignored = %q", got)
	}
}

func TestInvokeExpandsFromContainerEnvAndPort(t *testing.T) {
	p, err := compile(tasks.RevisionScale{Template: corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Name: "x"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Command: []string{"$(BIN)", "--port=$(PORT)"},
			Args:    []string{"--addr=$(ADDR)", "--home=$(HOME)", "$$(PORT)"},
			Env: []corev1.EnvVar{
				{Name: "BIN", Value: "/usr/bin/app"},
				{Name: "ADDR", Value: "127.0.0.1:$(PORT)"},
				{Name: "PORT", Value: "1"},
				{Name: "LATER", Value: "$(NEXT)"},
				{Name: "NEXT", Value: "n"},
			},
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	inv := p.invoke([]string{"HOME=/home/me", "PORT=2"}, 4321)
	wantArgv := []string{"/usr/bin/app", "--port=4321", "--addr=127.0.0.1:4321", "--home=$(HOME)", "$(PORT)"}
	if !slices.Equal(inv.argv, wantArgv) {
		t.Errorf("argv = %q, want %q", inv.argv, wantArgv)
	}
	env := map[string]string{}
	for _, kv := range inv.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v // the last one wins, as for exec.Cmd
	}
	for k, want := range map[string]string{"HOME": "/home/me", "PORT": "4321", "ADDR": "127.0.0.1:4321", "LATER": "$(NEXT)", "NEXT": "n"} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
}

func TestTailQuotesTheLastLinesAfterTheOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.log")
	if err := os.WriteFile(path, []byte("from an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	for _, l := range []string{"starting", "", "a", "b", "c", "d", "panic: boom"} {
		f.WriteString(l + "\n")
	}
	f.Close()
	if got := tail(path, fi.Size()); got != "a | b | c | d | panic: boom" {
		t.Errorf("tail = %q", got)
	}
	if got := tail(path, 1<<20); got != "" {
		t.Errorf("past the end: %q", got)
	}
}

func TestAliveTellsAReusedPid(t *testing.T) {
	_, ticks, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !alive(os.Getpid(), ticks) {
		t.Error("this process is not alive")
	}
	if alive(os.Getpid(), ticks+1) {
		t.Error("a different start time is the same process")
	}
	if alive(0, 0) || alive(1<<30, 0) {
		t.Error("no such process is alive")
	}
}
