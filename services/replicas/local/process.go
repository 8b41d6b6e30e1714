package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/localcmd"
	"github.com/sluicehq/sluice/pkg/events"
)

// pollInterval is how often an adopted process, which is not this
// process's child and cannot be waited for, is checked in /proc.
const pollInterval = 200 * time.Millisecond

// killWait bounds the wait for a process to go after SIGKILL.
const killWait = 10 * time.Second

// proc is one pod of a revision: a slot that a supervisor goroutine keeps
// filled with a running process, restarting it when it exits.
type proc struct {
	rev  *revision
	slot int
	// stop is closed to stop the process gracefully and end the slot.
	stop chan struct{}

	// Guarded by Backend.mu.
	h          *handle // the running process; nil between runs
	stopping   bool
	ready      bool
	readySince time.Time
	restarts   int
	lastExit   string
	lastExitAt time.Time
	lastProbe  string
	lastPort   int
}

func newProc(rev *revision, slot int) *proc {
	return &proc{rev: rev, slot: slot, stop: make(chan struct{})}
}

func (p *proc) startedAt() time.Time {
	if p.h == nil {
		return time.Time{}
	}
	return p.h.startedAt
}

func (p *proc) statePath() string {
	return filepath.Join(p.rev.ro.dir, procBase(p.rev.prefix, p.slot)+".json")
}

// handle is one running process.
type handle struct {
	pid       int
	ticks     uint64 // kernel start time, see procFile
	startedAt time.Time
	port      int
	logPath   string
	logOffset int64
	adopted   bool
	argv      []string      // what it runs, for the state file
	exited    chan struct{} // closed when a child has been waited for
	exitDesc  string        // set before exited is closed
}

const adoptedExit = "exited (status unknown: the process was adopted from an earlier run of the replicas service)"

// watch returns a channel closed when the process has exited. An adopted
// process is polled until ctx ends.
func (h *handle) watch(ctx context.Context) <-chan struct{} {
	if !h.adopted {
		return h.exited
	}
	ch := make(chan struct{})
	go func() {
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			if !alive(h.pid, h.ticks) {
				close(ch)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return ch
}

// waitExit reports whether the process exits within d.
func (h *handle) waitExit(d time.Duration) bool {
	if !h.adopted {
		select {
		case <-h.exited:
			return true
		case <-time.After(d):
			return false
		}
	}
	deadline := time.Now().Add(d)
	for alive(h.pid, h.ticks) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval / 4)
	}
	return true
}

// signalGroup signals the process group the process leads: the process and
// whatever it started that did not leave the group.
func signalGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}

// terminate stops a process as Kubernetes stops a container: SIGTERM, then
// SIGKILL once grace has passed; then anything left in its group is
// killed.
func (b *Backend) terminate(h *handle, grace time.Duration, log *slog.Logger) {
	if h.adopted && !alive(h.pid, h.ticks) {
		return
	}
	signalGroup(h.pid, syscall.SIGTERM)
	if !h.waitExit(grace) {
		log.Warn("process did not stop within its grace period; killing it", "pid", h.pid, "grace", grace)
		signalGroup(h.pid, syscall.SIGKILL)
		if !h.waitExit(killWait) {
			log.Error("process survived SIGKILL", "pid", h.pid)
		}
	}
	signalGroup(h.pid, syscall.SIGKILL)
}

type outcome int

const (
	exited   outcome = iota // the process ended by itself
	stopped                 // stopped on request; the slot is gone
	detached                // the backend closed; the process runs on
)

// supervise keeps p's slot filled until it is stopped or the backend
// closes. h is an adopted process to watch first, or nil.
func (b *Backend) supervise(p *proc, h *handle) {
	defer b.procs.Done()
	log := b.log.With("rollout", p.rev.ro.ref.String(), "entry", p.rev.key, "slot", p.slot)
	delay := b.cfg.RestartBackoff
	for {
		if h == nil {
			select {
			case <-p.stop:
				b.gone(p, nil)
				return
			case <-b.ctx.Done():
				return
			default:
			}
			var err error
			if h, err = b.start(p); err != nil {
				log.Warn("process did not start", "error", err)
				b.exited(p, nil, "start: "+err.Error())
			}
		}
		if h != nil {
			switch b.run(p, h, log) {
			case stopped, detached:
				return
			}
			if time.Since(h.startedAt) >= 2*b.cfg.RestartBackoffMax {
				delay = b.cfg.RestartBackoff
			}
			h = nil
		}
		select {
		case <-time.After(delay):
		case <-p.stop:
			b.gone(p, nil)
			return
		case <-b.ctx.Done():
			return
		}
		delay = min(2*delay, b.cfg.RestartBackoffMax)
	}
}

// run watches a started process until it exits, is stopped, or the
// backend closes.
func (b *Backend) run(p *proc, h *handle, log *slog.Logger) outcome {
	ctx, cancel := context.WithCancel(b.ctx)
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		b.probe(ctx, p, h)
	}()
	done := h.watch(ctx)
	end := func() {
		cancel()
		<-probed
	}
	select {
	case <-done:
		end()
		// As when a container's main process ends, nothing it started
		// outlives it.
		signalGroup(h.pid, syscall.SIGKILL)
		desc := adoptedExit
		if !h.adopted {
			desc = h.exitDesc
		}
		if t := tail(h.logPath, h.logOffset); t != "" {
			desc += ": " + t
		}
		log.Warn("process exited; restarting it after a backoff", "pid", h.pid, "exit", desc)
		b.exited(p, h, desc)
		return exited
	case <-p.stop:
		end()
		// p left the endpoints when it was asked to stop: tell the proxy
		// before the process starts shutting down.
		sctx, scancel := context.WithTimeout(b.ctx, 2*time.Second)
		_ = b.endpoints.sync(sctx, revKey{p.rev.ro.ref, p.rev.key})
		scancel()
		// The proxy hears of it through a watch: until it does, it may
		// still send new connections here, so the process keeps
		// listening a moment.
		b.mu.Lock()
		closing := b.closed
		b.mu.Unlock()
		if d := b.cfg.DeregisterDelay; d > 0 && !closing {
			select {
			case <-time.After(d):
			case <-b.ctx.Done():
			}
		}
		b.mu.Lock()
		grace := defaultGracePeriod
		if p.rev.prog != nil {
			grace = p.rev.prog.grace
		}
		b.mu.Unlock()
		log.Info("stopping process", "pid", h.pid, "grace", grace)
		b.terminate(h, grace, log)
		b.gone(p, h)
		return stopped
	case <-b.ctx.Done():
		end()
		return detached
	}
}

// exited records the end of p's process h (nil: it did not start).
func (b *Backend) exited(p *proc, h *handle, desc string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p.restarts++
	p.lastExit, p.lastExitAt = desc, time.Now()
	p.ready = false
	if h != nil && p.h == h {
		p.h = nil
		delete(b.ports, h.port)
		_ = os.Remove(p.statePath())
	}
	b.changedLocked(p.rev)
}

// gone ends p's slot after its process h (if any) stopped.
func (b *Backend) gone(p *proc, h *handle) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h != nil {
		delete(b.ports, h.port)
	}
	_ = os.Remove(p.statePath())
	p.h, p.ready = nil, false
	rev := p.rev
	if rev.procs[p.slot] == p {
		delete(rev.procs, p.slot)
	}
	if rev.desired() == 0 && len(rev.procs) == 0 {
		b.removeLocked(rev)
	}
	b.changedLocked(rev)
}

// start starts a process for p with a free port and writes its state file.
func (b *Backend) start(p *proc) (*handle, error) {
	b.mu.Lock()
	prog, progErr := p.rev.prog, p.rev.progErr
	prefer := p.lastPort
	dir := p.rev.ro.dir
	logPath := filepath.Join(dir, procBase(p.rev.prefix, p.slot)+".log")
	b.mu.Unlock()
	if prog == nil {
		if progErr == nil {
			progErr = errors.New("no pod template")
		}
		return nil, progErr
	}
	port, err := b.takePort(prefer)
	if err != nil {
		return nil, err
	}
	h, err := b.spawn(prog, port, logPath)
	if err != nil {
		b.mu.Lock()
		delete(b.ports, port)
		b.mu.Unlock()
		return nil, err
	}
	b.mu.Lock()
	p.h, p.lastPort, p.ready = h, port, false
	b.writeProcLocked(p)
	b.changedLocked(p.rev)
	b.mu.Unlock()
	return h, nil
}

// spawn starts prog's process on port, its output appended to logPath, in
// a process group of its own so that it and its children are signalled
// together (and a Ctrl-C meant for the service does not reach them).
func (b *Backend) spawn(prog *program, port int, logPath string) (*handle, error) {
	inv := prog.invoke(b.cfg.Environ, port)
	path, err := localcmd.LookPath(inv.argv[0], inv.env, prog.workingDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	// The log file is the process's stdout and stderr, not a pipe: the
	// process keeps writing to it after this process exits, and can be
	// adopted by the next one.
	cmd := &exec.Cmd{
		Path:        path,
		Args:        inv.argv,
		Env:         inv.env,
		Dir:         prog.workingDir,
		Stdout:      f,
		Stderr:      f,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &handle{pid: cmd.Process.Pid, startedAt: time.Now(), port: port, logPath: logPath, logOffset: off, argv: inv.argv, exited: make(chan struct{})}
	_, h.ticks, _ = procStat(h.pid)
	go func() {
		err := cmd.Wait()
		h.exitDesc = describeExit(err)
		close(h.exited)
	}()
	return h, nil
}

func describeExit(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		return ee.ProcessState.String()
	}
	return err.Error()
}

// takePort reserves a free port, prefer when it is free.
func (b *Backend) takePort(prefer int) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	free := func(port int) bool {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	if prefer > 0 && !b.ports[prefer] && free(prefer) {
		b.ports[prefer] = true
		return prefer, nil
	}
	for range 32 {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !b.ports[port] {
			b.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find a free port: every port offered is taken")
}

// writeProcLocked writes p's state file.
func (b *Backend) writeProcLocked(p *proc) {
	h := p.h
	if h == nil {
		return
	}
	pf := procFile{
		PID: h.pid, StartTicks: h.ticks, StartedAt: h.startedAt, Port: h.port,
		Revision: p.rev.spec.Revision, PodHash: p.rev.spec.PodHash, Experiment: p.rev.spec.Experiment, Slot: p.slot,
		Ready: p.ready, ReadySince: p.readySince, LogOffset: h.logOffset,
		Restarts: p.restarts, Command: h.argv,
	}
	if cs := p.rev.spec.Template.Spec.Containers; len(cs) > 0 {
		pf.Image = cs[0].Image
	}
	if !p.ready {
		pf.ReadySince = time.Time{}
	}
	if err := writeJSON(p.statePath(), pf); err != nil {
		b.log.Warn("process state file not written; a restarted backend will not adopt the process", "pid", h.pid, "error", err)
	}
}

// probe runs p's readiness probe against h until ctx ends, as the kubelet
// does: not ready until successThreshold successes in a row, then not
// ready again after failureThreshold failures in a row. Without a probe,
// the process is ready once started.
func (b *Backend) probe(ctx context.Context, p *proc, h *handle) {
	b.mu.Lock()
	var pr *probe
	if p.rev.prog != nil {
		pr = p.rev.prog.probe
	}
	ready := p.ready
	b.mu.Unlock()
	if pr == nil {
		b.observe(p, h, true, "")
		return
	}
	t := time.NewTimer(time.Until(h.startedAt.Add(pr.initialDelay)))
	defer t.Stop()
	successes, failures := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := pr.check(ctx, b.cfg.Host, h.port)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			successes, failures = successes+1, 0
			if !ready && successes >= pr.successes {
				ready = true
			}
			b.observe(p, h, ready, "")
		} else {
			successes, failures = 0, failures+1
			if ready && failures >= pr.failures {
				ready = false
			}
			b.observe(p, h, ready, err.Error())
		}
		t.Reset(pr.period)
	}
}

// observe records a probe result for p's process h.
func (b *Backend) observe(p *proc, h *handle, ready bool, failure string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.h != h || p.stopping {
		return
	}
	p.lastProbe = failure
	if p.ready == ready {
		return
	}
	p.ready = ready
	if ready {
		p.readySince = time.Now()
	}
	b.writeProcLocked(p)
	if ready && !p.rev.spec.RestartAt.IsZero() {
		b.reconcileLocked(p.rev) // a restart may replace the next process
	}
	b.changedLocked(p.rev)
}

// restore rebuilds the backend from the state directory (see Start).
func (b *Backend) restore() error {
	namespaces, err := os.ReadDir(b.root)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, ns := range namespaces {
		if !ns.IsDir() {
			continue
		}
		names, err := os.ReadDir(filepath.Join(b.root, ns.Name()))
		if err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		for _, name := range names {
			ref := events.Ref{Namespace: ns.Name(), Name: name.Name()}
			if !name.IsDir() || ref.Validate() != nil {
				continue
			}
			b.restoreRollout(ref, filepath.Join(b.root, ns.Name(), name.Name()))
		}
	}
	return nil
}

func (b *Backend) restoreRollout(ref events.Ref, dir string) {
	log := b.log.With("rollout", ref.String())
	var rf rolloutFile
	if err := readJSON(filepath.Join(dir, rolloutFileName), &rf); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("desired state unreadable; its processes will be stopped", "error", err)
		rf = rolloutFile{}
	}
	ro := &rollout{ref: ref, dir: dir, seq: rf.Seq, workload: rf.Workload, removing: rf.Removing, revisions: map[string]*revision{}}
	for _, rs := range rf.Revisions {
		rev := newRevision(ro, rs)
		rev.spec = rs
		if prog, err := compile(rs); err != nil {
			rev.progErr = fmt.Errorf("%s: %v", rev.name(), err)
		} else {
			rev.prog = prog
		}
		ro.revisions[rev.key] = rev
	}

	type found struct {
		procFile
		path string
	}
	var procs []found
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, path := range files {
		if filepath.Base(path) == rolloutFileName {
			continue
		}
		var pf procFile
		if err := readJSON(path, &pf); err != nil {
			log.Warn("process state file unreadable; removing it", "file", path, "error", err)
			_ = os.Remove(path)
			continue
		}
		procs = append(procs, found{pf, path})
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].Slot < procs[j].Slot })

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range procs {
		if !alive(f.PID, f.StartTicks) {
			_ = os.Remove(f.path)
			continue
		}
		h := &handle{pid: f.PID, ticks: f.StartTicks, startedAt: f.StartedAt, port: f.Port, adopted: true,
			logPath: filepath.Join(dir, f.name()+".log"), logOffset: f.LogOffset, argv: f.Command}
		rev := ro.revisions[f.entry()]
		if rev == nil || len(rev.procs) >= rev.desired() || rev.procs[f.Slot] != nil {
			grace := defaultGracePeriod
			if rev != nil && rev.prog != nil {
				grace = rev.prog.grace
			}
			b.stopOrphanLocked(h, f.path, grace, log)
			continue
		}
		p := newProc(rev, f.Slot)
		p.h, p.ready, p.readySince, p.lastPort, p.restarts = h, f.Ready, f.ReadySince, f.Port, f.Restarts
		rev.procs[f.Slot] = p
		b.ports[f.Port] = true
		b.procs.Add(1)
		go b.supervise(p, h)
		log.Info("adopted process", "pid", f.PID, "process", f.name(), "port", f.Port, "ready", f.Ready)
	}
	if len(ro.revisions) > 0 || ro.seq > 0 {
		b.rollouts[ref] = ro
	}
	for _, rev := range ro.revisions {
		b.reconcileLocked(rev)
	}
	if ro.removing && len(ro.revisions) == 0 {
		b.forgetLocked(ro)
	}
}

// stopOrphanLocked stops an adopted process that no revision wants.
func (b *Backend) stopOrphanLocked(h *handle, statePath string, grace time.Duration, log *slog.Logger) {
	b.ports[h.port] = true
	b.procs.Add(1)
	go func() {
		defer b.procs.Done()
		log.Info("stopping a process the desired state no longer has", "pid", h.pid, "file", statePath)
		b.terminate(h, grace, log)
		_ = os.Remove(statePath)
		b.mu.Lock()
		delete(b.ports, h.port)
		b.mu.Unlock()
	}()
}
