package job

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/sluicehq/sluice/internal/localcmd"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// waitDelay bounds how long a finished process's output is read after it
// exited (a background child may hold the pipe) or after it was killed.
const waitDelay = 2 * time.Second

// program is a Job's first container as a local process.
type program struct {
	argv []string
	env  []string
	dir  string
	// deadline is activeDeadlineSeconds; zero when unset.
	deadline time.Duration
}

// compileLocal turns a Job's spec into the process the local platform
// runs, or says why it cannot: the image is ignored, and what needs a
// cluster (env valueFrom, envFrom, volumes) is refused.
func compileLocal(s batchv1.JobSpec, environ []string) (program, error) {
	ps := s.Template.Spec
	if len(ps.Containers) == 0 {
		return program{}, errors.New("spec.template.spec.containers: the Job has no container")
	}
	c := ps.Containers[0]
	const at = "spec.template.spec.containers[0]"
	var problems []string
	if len(c.Command) == 0 {
		problems = append(problems, at+".command: required on the local platform, which runs no image and so has no entrypoint")
	}
	for i, e := range c.Env {
		if e.ValueFrom != nil {
			problems = append(problems, fmt.Sprintf("%s.env[%d].valueFrom: %s: not supported on the local platform; set value", at, i, e.Name))
		}
	}
	if len(c.EnvFrom) > 0 {
		problems = append(problems, at+".envFrom: not supported on the local platform; list the variables in env")
	}
	if len(ps.Volumes) > 0 || len(c.VolumeMounts) > 0 {
		problems = append(problems, "spec.template.spec.volumes: not supported on the local platform")
	}
	if len(problems) > 0 {
		return program{}, errors.New(strings.Join(problems, "; "))
	}
	vars := map[string]string{}
	env := append([]string{}, environ...)
	for _, e := range c.Env {
		v := localcmd.Expand(e.Value, vars)
		vars[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	argv := make([]string, 0, len(c.Command)+len(c.Args))
	for _, s := range append(append([]string{}, c.Command...), c.Args...) {
		argv = append(argv, localcmd.Expand(s, vars))
	}
	prog := program{argv: argv, env: env, dir: c.WorkingDir}
	if d := s.ActiveDeadlineSeconds; d != nil && *d > 0 {
		prog.deadline = time.Duration(*d) * time.Second
	}
	return prog, nil
}

// measureLocal runs the Job's first container as a process: exit 0 is
// Successful, any other exit Failed, with the output's tail as the
// message.
func (p *Provider) measureLocal(ctx context.Context, req metrics.Request, m metrics.Measurement, timeout time.Duration) metrics.Measurement {
	prog, err := compileLocal(req.Metric.Provider.Job.Spec, p.cfg.Environ)
	if err != nil {
		return p.finish(m, spec.AnalysisPhaseError, err.Error())
	}
	m.Query = strings.Join(prog.argv, " ")
	path, err := localcmd.LookPath(prog.argv[0], prog.env, prog.dir)
	if err != nil {
		return p.finish(m, spec.AnalysisPhaseError, "start: "+err.Error())
	}

	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rctx := tctx
	if prog.deadline > 0 {
		var dcancel context.CancelFunc
		rctx, dcancel = context.WithTimeout(tctx, prog.deadline)
		defer dcancel()
	}
	out := &tailBuffer{}
	cmd := exec.CommandContext(rctx, path, prog.argv[1:]...)
	cmd.Args[0] = prog.argv[0]
	cmd.Env, cmd.Dir = prog.env, prog.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a kill reaches whatever it started,
	// as a container's end does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return p.finish(m, spec.AnalysisPhaseError, "interrupted: the analyzer is stopping")
		}
		return p.finish(m, spec.AnalysisPhaseError, "start: "+err.Error())
	}
	err = cmd.Wait()
	// Nothing it started outlives it.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	output := tail(out.String())

	switch {
	case ctx.Err() != nil:
		return p.finish(m, spec.AnalysisPhaseError, "interrupted: the analyzer is stopping; the process was killed")
	case tctx.Err() != nil:
		return p.finish(m, spec.AnalysisPhaseError, withOutput(fmt.Sprintf("the process did not finish within %s and was killed", timeout), output))
	case rctx.Err() != nil:
		// As the Job controller fails a Job past its deadline.
		return p.finish(m, spec.AnalysisPhaseFailed, withOutput(fmt.Sprintf("DeadlineExceeded: Job was active longer than specified deadline (%s); the process was killed", prog.deadline), output))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return p.finish(m, spec.AnalysisPhaseSuccessful, output)
	case errors.As(err, &ee):
		return p.finish(m, spec.AnalysisPhaseFailed, withOutput(exitDescription(ee), output))
	}
	return p.finish(m, spec.AnalysisPhaseError, withOutput(err.Error(), output))
}

func exitDescription(ee *exec.ExitError) string {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exit code %d", ee.ExitCode())
}

func withOutput(msg, output string) string {
	if output == "" {
		return msg
	}
	return msg + ": " + output
}

// tailBuffer keeps the last 2*MaxOutput bytes written to it (tail cuts
// them to MaxOutput after trimming).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - 2*MaxOutput; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
