package job

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// localRequest is a measurement of a Job whose container edit shapes.
func localRequest(edit func(s *batchv1.JobSpec, c *corev1.Container)) metrics.Request {
	s := batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever}}}
	c := corev1.Container{Name: "smoke", Image: "busybox"}
	edit(&s, &c)
	s.Template.Spec.Containers = append([]corev1.Container{c}, s.Template.Spec.Containers...)
	return metrics.Request{
		Namespace: "default", Rollout: "web", Run: "web-1", ID: "web-1.smoke.1",
		Metric: spec.Metric{Name: "smoke", Provider: spec.MetricProvider{Job: &spec.JobMetric{Spec: s}}},
	}
}

func sh(script string) func(*batchv1.JobSpec, *corev1.Container) {
	return func(_ *batchv1.JobSpec, c *corev1.Container) { c.Command = []string{"sh", "-c", script} }
}

func TestLocalJobs(t *testing.T) {
	p, err := New(Config{Environ: []string{"PATH=" + os.Getenv("PATH"), "FROM_ANALYZER=1"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	deadline := int64(1)
	for _, tc := range []struct {
		name    string
		edit    func(*batchv1.JobSpec, *corev1.Container)
		phase   spec.AnalysisPhase
		message string // wanted in the message
		exact   bool
	}{
		{"exit 0", sh("echo smoke passed"), spec.AnalysisPhaseSuccessful, "smoke passed", true},
		{"exit 3", sh("echo smoke failed; echo on stderr >&2; exit 3"), spec.AnalysisPhaseFailed, "exit code 3: smoke failed\non stderr", true},
		{"silent failure", sh("exit 1"), spec.AnalysisPhaseFailed, "exit code 1", true},
		{"no shell unless asked", func(_ *batchv1.JobSpec, c *corev1.Container) {
			c.Command, c.Args = []string{"echo"}, []string{"$HOME", "; exit 1"}
		}, spec.AnalysisPhaseSuccessful, "$HOME ; exit 1", true},
		{"env and $(VAR) expansion", func(_ *batchv1.JobSpec, c *corev1.Container) {
			c.Env = []corev1.EnvVar{{Name: "TARGET", Value: "http://web"}, {Name: "URL", Value: "$(TARGET)/healthz"}}
			c.Command, c.Args = []string{"sh", "-c"}, []string{`echo "$(URL) $URL $FROM_ANALYZER"`}
		}, spec.AnalysisPhaseSuccessful, "http://web/healthz http://web/healthz 1", true},
		{"workingDir", func(_ *batchv1.JobSpec, c *corev1.Container) {
			c.WorkingDir = dir
			c.Command = []string{"pwd"}
		}, spec.AnalysisPhaseSuccessful, dir, true},
		{"output is bounded to its tail", sh("i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; exit 1"), spec.AnalysisPhaseFailed, "line 1999", false},
		{"activeDeadlineSeconds kills the process group", func(s *batchv1.JobSpec, c *corev1.Container) {
			s.ActiveDeadlineSeconds = &deadline
			c.Command = []string{"sh", "-c", "echo started; sleep 60 & sleep 60"}
		}, spec.AnalysisPhaseFailed, "DeadlineExceeded: Job was active longer than specified deadline (1s); the process was killed: started", true},
		{"a missing program", func(_ *batchv1.JobSpec, c *corev1.Container) { c.Command = []string{"no-such-smoke-test"} }, spec.AnalysisPhaseError, `start: "no-such-smoke-test": executable file not found in PATH`, true},
		{"no command", func(_ *batchv1.JobSpec, c *corev1.Container) { c.Args = []string{"x"} }, spec.AnalysisPhaseError, "spec.template.spec.containers[0].command: required on the local platform", false},
		{"valueFrom", func(_ *batchv1.JobSpec, c *corev1.Container) {
			c.Command = []string{"true"}
			c.Env = []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "t"}}}}
		}, spec.AnalysisPhaseError, "spec.template.spec.containers[0].env[0].valueFrom: TOKEN: not supported on the local platform; set value", true},
		{"volumes", func(s *batchv1.JobSpec, c *corev1.Container) {
			c.Command = []string{"true"}
			s.Template.Spec.Volumes = []corev1.Volume{{Name: "data"}}
		}, spec.AnalysisPhaseError, "spec.template.spec.volumes: not supported on the local platform", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			m := p.Measure(t.Context(), localRequest(tc.edit))
			if m.Phase != tc.phase {
				t.Errorf("phase %q, want %q (message %q)", m.Phase, tc.phase, m.Message)
			}
			if tc.exact && m.Message != tc.message || !tc.exact && !strings.Contains(m.Message, tc.message) {
				t.Errorf("message %q, want %q", m.Message, tc.message)
			}
			if len(m.Message) > MaxOutput+100 {
				t.Errorf("message of %d bytes", len(m.Message))
			}
			if m.Provider != Type || m.FinishedAt.Before(m.StartedAt) {
				t.Errorf("provider %q, times %v..%v", m.Provider, m.StartedAt, m.FinishedAt)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

// TestLocalJobDeadlineKillsChildren: the whole process group goes when the
// deadline passes, not only the process the Job started.
func TestLocalJobDeadlineKillsChildren(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	deadline := int64(1)
	m := p.Measure(t.Context(), localRequest(func(s *batchv1.JobSpec, c *corev1.Container) {
		s.ActiveDeadlineSeconds = &deadline
		c.Command = []string{"sh", "-c", "sleep 300 & echo $! > " + pidFile + "; wait"}
	}))
	if m.Phase != spec.AnalysisPhaseFailed {
		t.Fatalf("phase %q: %s", m.Phase, m.Message)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the Job's child process to be gone", func() error {
		if err := syscall.Kill(pid, 0); err == nil {
			return os.ErrExist
		}
		return nil
	})
}

func TestLocalJobDefaultTimeoutIsAnError(t *testing.T) {
	p, err := New(Config{DefaultTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := p.Measure(t.Context(), localRequest(sh("echo waiting; sleep 60")))
	if m.Phase != spec.AnalysisPhaseError || m.Message != "the process did not finish within 500ms and was killed: waiting" {
		t.Errorf("%q: %q", m.Phase, m.Message)
	}
}

func TestLocalJobInterrupted(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	started := filepath.Join(t.TempDir(), "started")
	done := make(chan metrics.Measurement)
	go func() { done <- p.Measure(ctx, localRequest(sh("touch "+started+"; sleep 60"))) }()
	poll.Until(t, "the process to start", func() error { _, err := os.Stat(started); return err })
	cancel()
	m := <-done
	if m.Phase != spec.AnalysisPhaseError || !strings.HasPrefix(m.Message, "interrupted") {
		t.Errorf("%q: %q", m.Phase, m.Message)
	}
}

func TestLocalJobEnvironmentLeavesCredentialsOut(t *testing.T) {
	got := baseEnviron([]string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "NATS_PASSWORD=x", "SLUICE_SECRET_DATADOG_API_KEY=k", "AWS_SECRET_ACCESS_KEY=s", "HTTPS_PROXY=http://proxy"})
	want := "PATH=/bin HOME=/root LC_ALL=C HTTPS_PROXY=http://proxy"
	if strings.Join(got, " ") != want {
		t.Errorf("baseEnviron = %v, want %s", got, want)
	}
}

func TestTimeout(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	d := int64(120)
	with := localRequest(func(s *batchv1.JobSpec, _ *corev1.Container) { s.ActiveDeadlineSeconds = &d }).Metric
	if got := p.Timeout(with); got != 120*time.Second+DeadlineMargin {
		t.Errorf("with activeDeadlineSeconds: %s", got)
	}
	if got := p.Timeout(localRequest(sh("true")).Metric); got != DefaultTimeout {
		t.Errorf("without: %s", got)
	}
}
