package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/localcmd"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas"
)

var _ replicas.Backend = (*Backend)(nil)

// Defaults of Config.
const (
	DefaultHost              = "127.0.0.1"
	DefaultRestartBackoff    = time.Second
	DefaultRestartBackoffMax = 5 * time.Minute
	DefaultDeregisterDelay   = time.Second
)

// Config configures the local backend.
type Config struct {
	// StateDir holds the backend's state files and the processes' logs,
	// under replicas/ (required; sluice dev uses .sluice).
	StateDir string
	// JetStream and Bus open the endpoints bucket (internal/endpoints).
	JetStream jetstream.JetStream
	Bus       events.BusConfig
	// Host is the address the processes are reached at, in the endpoints
	// entries and by probes without a host (default 127.0.0.1).
	Host string
	// Environ is the environment every process starts from, before its
	// container's env and PORT (default: this process's environment
	// without the NATS_* variables, which may hold the bus credentials).
	Environ []string
	// RestartBackoff is the delay before a crashed process is started
	// again, doubled after each crash up to RestartBackoffMax (defaults 1s
	// and 5m). A process that ran for twice RestartBackoffMax starts the
	// series again.
	RestartBackoff    time.Duration
	RestartBackoffMax time.Duration
	// DeregisterDelay is how long a process being stopped (restart,
	// scale-down, delete) keeps running after the endpoints without it
	// are published, before it is sent SIGTERM: the time the proxy has to
	// hear of the change, as a preStop sleep gives a Kubernetes ingress
	// (default DefaultDeregisterDelay; negative: none). Stopping on Close
	// does not wait.
	DeregisterDelay time.Duration
	// StopOnClose makes Close stop every process gracefully; by default
	// they keep running and the next backend on StateDir adopts them.
	// The desired state is kept either way, so the next start brings the
	// processes back.
	StopOnClose bool
	// Logger receives the backend's logs (default slog.Default()).
	Logger *slog.Logger
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	c.Bus.Defaults()
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.Environ == nil {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "NATS_") {
				c.Environ = append(c.Environ, kv)
			}
		}
	}
	if c.RestartBackoff == 0 {
		c.RestartBackoff = DefaultRestartBackoff
	}
	if c.RestartBackoffMax == 0 {
		c.RestartBackoffMax = DefaultRestartBackoffMax
	}
	if c.DeregisterDelay == 0 {
		c.DeregisterDelay = DefaultDeregisterDelay
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem at once, each wrapping
// events.ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: local platform: %s", events.ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.StateDir == "" {
		bad("the state directory is required")
	}
	if c.JetStream == nil {
		bad("JetStream is required for the endpoints bucket")
	}
	if c.RestartBackoff <= 0 || c.RestartBackoffMax < c.RestartBackoff {
		bad("restart backoff %s..%s must be positive and increasing", c.RestartBackoff, c.RestartBackoffMax)
	}
	if err := c.Bus.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Backend runs each pod of a revision as an OS process on this machine.
// See the package documentation.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	root string // <StateDir>/replicas

	// ctx ends at Close: supervisors then let go of their processes.
	ctx    context.Context
	cancel context.CancelFunc
	// procs counts the goroutines that own a process: supervisors and
	// orphan stoppers.
	procs     sync.WaitGroup
	endpoints *endpointsWriter

	mu       sync.Mutex
	started  bool // Start was called
	running  bool // Start succeeded
	closed   bool
	rollouts map[events.Ref]*rollout
	ports    map[int]bool // ports held by processes
	changed  chan struct{}
}

// rollout is one rollout's revisions.
type rollout struct {
	ref       events.Ref
	dir       string
	seq       int64
	workload  tasks.Workload
	revisions map[string]*revision
	// removing means the rollout is deleted (tasks.Scale.Remove): it is
	// forgotten once its last revision is gone.
	removing bool
}

func (ro *rollout) minReady() time.Duration {
	return time.Duration(ro.workload.MinReadySeconds) * time.Second
}

// file is what rollout.json holds for ro.
func (ro *rollout) file() rolloutFile {
	f := rolloutFile{Seq: ro.seq, Workload: ro.workload, Removing: ro.removing}
	for _, rev := range ro.revisions {
		f.Revisions = append(f.Revisions, rev.spec)
	}
	sort.Slice(f.Revisions, func(i, j int) bool { return f.Revisions[i].Revision < f.Revisions[j].Revision })
	return f
}

// revision is one revision's desired state and processes.
type revision struct {
	ro *rollout
	// key is the entry's name in ro.revisions and in the endpoints bucket
	// (entryName), and prefix what its processes' names start with
	// (procPrefix); neither changes, so both are readable without the
	// lock.
	key, prefix string
	// spec is the desired state (its revision number changes when an undo
	// brings the template back).
	spec tasks.RevisionScale
	// prog runs the processes; progErr says why there is none (a template
	// restored from the state directory that no longer compiles).
	prog    *program
	progErr error
	procs   map[int]*proc // by slot
	// timer reconciles the revision again when time alone moves a
	// restart on (see restartLocked).
	timer *time.Timer
}

func (rev *revision) desired() int { return int(rev.spec.Replicas) }

func (rev *revision) name() string { return entryTitle(rev.spec) }

// New checks cfg and returns a backend. Call Start before Apply.
func New(cfg Config) (*Backend, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Backend{
		cfg:      cfg,
		log:      cfg.Logger.With("platform", "local"),
		root:     filepath.Join(cfg.StateDir, stateSubdir),
		ctx:      ctx,
		cancel:   cancel,
		rollouts: map[events.Ref]*rollout{},
		ports:    map[int]bool{},
		changed:  make(chan struct{}),
	}, nil
}

// changedLocked wakes everything waiting on the backend's state and, for
// rev, schedules its endpoints entry.
func (b *Backend) changedLocked(rev *revision) {
	close(b.changed)
	b.changed = make(chan struct{})
	if rev != nil && b.endpoints != nil {
		b.endpoints.mark(revKey{rev.ro.ref, rev.key})
	}
}

// Start opens the endpoints bucket and takes over what an earlier backend
// on the same state directory left: it adopts the processes still alive
// (same pid and kernel start time) that the desired state wants, stops
// the others gracefully, starts the missing ones, and removes endpoints
// entries of revisions it does not run.
func (b *Backend) Start(ctx context.Context) error {
	b.mu.Lock()
	if b.started || b.closed {
		b.mu.Unlock()
		return errors.New("local backend: Start called twice or after Close")
	}
	b.started = true
	b.mu.Unlock()
	store, err := endpoints.Open(ctx, b.cfg.JetStream, b.cfg.Bus)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	b.mu.Lock()
	b.endpoints = newEndpointsWriter(b, store)
	b.mu.Unlock()
	if err := b.restore(); err != nil {
		return err
	}
	// Entries this backend does not run are stale (its state directory
	// was removed, or a revision ended while no backend ran).
	if err := b.endpoints.markBucket(ctx); err != nil {
		return err
	}
	go b.endpoints.loop(b.ctx)
	b.mu.Lock()
	b.running = true
	b.mu.Unlock()
	return nil
}

// errNotRunning is returned by Apply before a successful Start and after
// Close.
var errNotRunning = errors.New("local backend is not running")

// Apply makes the rollout's listed revisions run their replica counts and
// waits until each is available (see replicas.Backend). The desired state
// is written to the state directory before any process changes.
func (b *Backend) Apply(ctx context.Context, ref events.Ref, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error) {
	if err := ref.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", replicas.ErrInvalidTemplate, err)
	}
	if scale.Remove {
		return b.remove(ctx, ref, seq, scale)
	}
	progs, missing, err := compileScale(scale, b.cfg.Environ)
	if err != nil {
		// A stale task is Stale whatever it holds.
		b.mu.Lock()
		var applied int64
		if ro := b.rollouts[ref]; ro != nil {
			applied = ro.seq
		}
		b.mu.Unlock()
		if seq < applied {
			return nil, fmt.Errorf("%w: seq %d, but seq %d was applied for %s", tasks.ErrStale, seq, applied, ref)
		}
		return nil, err
	}

	b.mu.Lock()
	if !b.running || b.closed {
		b.mu.Unlock()
		return nil, errNotRunning
	}
	ro := b.rollouts[ref]
	if ro == nil {
		ro = &rollout{ref: ref, dir: filepath.Join(b.root, ref.Namespace, ref.Name), revisions: map[string]*revision{}}
	}
	if seq < ro.seq {
		applied := ro.seq
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: seq %d, but seq %d was applied for %s", tasks.ErrStale, seq, applied, ref)
	}
	// A program that cannot be found fails a new revision at once rather
	// than after a progress deadline. A running revision keeps going: its
	// binary may be in the middle of a rebuild.
	var problems []string
	for i, rs := range scale.Revisions {
		if missing[i] != nil && ro.revisions[entryName(rs)] == nil {
			problems = append(problems, fmt.Sprintf("%s: spec.template.spec.containers[0].command[0]: %v", entryTitle(rs), missing[i]))
		}
	}
	if len(problems) > 0 {
		b.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", replicas.ErrInvalidTemplate, strings.Join(problems, "; "))
	}
	if err := b.recordLocked(ro, seq, scale); err != nil {
		b.mu.Unlock()
		return nil, err
	}
	b.rollouts[ref] = ro
	for i, rs := range scale.Revisions {
		rev := ro.revisions[entryName(rs)]
		if rev == nil {
			rev = newRevision(ro, rs)
			ro.revisions[rev.key] = rev
			if p := progs[i]; p != nil && len(p.ignored) > 0 {
				b.log.Warn("the local platform ignores parts of the pod template", "rollout", ref.String(),
					"revision", rs.Revision, "hash", rs.PodHash, "ignored", strings.Join(p.ignored, ", "))
			}
		}
		rev.spec = rs
		if progs[i] != nil {
			rev.prog, rev.progErr = progs[i], nil
		}
		b.reconcileLocked(rev)
	}
	b.mu.Unlock()
	return b.wait(ctx, ro, seq, scale)
}

// compileScale checks the task and compiles every revision that is to run.
// A revision at 0 needs no program: its processes only stop. missing[i]
// says why revision i's program cannot be found in the environment base
// plus the container's env.
func compileScale(scale tasks.Scale, base []string) (progs []*program, missing []error, err error) {
	var problems []string
	progs = make([]*program, len(scale.Revisions))
	missing = make([]error, len(scale.Revisions))
	seen := map[string]bool{}
	for i, rs := range scale.Revisions {
		what := entryTitle(rs)
		if err := checkEntry(rs); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		if seen[entryName(rs)] {
			problems = append(problems, what+": listed twice")
		}
		seen[entryName(rs)] = true
		if rs.Replicas < 0 {
			problems = append(problems, fmt.Sprintf("%s: replicas %d must not be negative", what, rs.Replicas))
		}
		p, err := compile(rs)
		switch {
		case err != nil && rs.Replicas > 0:
			problems = append(problems, fmt.Sprintf("%s: %v", what, err))
		case err == nil:
			progs[i] = p
			if rs.Replicas > 0 {
				inv := p.invoke(base, 0)
				_, missing[i] = localcmd.LookPath(inv.argv[0], inv.env, p.workingDir)
			}
		}
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("%w: %s", replicas.ErrInvalidTemplate, strings.Join(problems, "; "))
	}
	return progs, missing, nil
}

// recordLocked writes ro's new desired state to rollout.json, then to
// memory. Nothing changes when the write fails.
func (b *Backend) recordLocked(ro *rollout, seq int64, scale tasks.Scale) error {
	next := rolloutFile{Seq: seq, Workload: scale.Workload, Removing: scale.Remove}
	listed := map[string]bool{}
	for _, rs := range scale.Revisions {
		listed[entryName(rs)] = true
		next.Revisions = append(next.Revisions, rs)
	}
	for _, rs := range ro.file().Revisions {
		if !listed[entryName(rs)] {
			next.Revisions = append(next.Revisions, rs)
		}
	}
	sort.Slice(next.Revisions, func(i, j int) bool { return next.Revisions[i].Revision < next.Revisions[j].Revision })
	if err := os.MkdirAll(ro.dir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := writeJSON(filepath.Join(ro.dir, rolloutFileName), next); err != nil {
		return fmt.Errorf("record desired state of %s: %w", ro.ref, err)
	}
	ro.seq, ro.workload, ro.removing = seq, scale.Workload, scale.Remove
	return nil
}

// persistLocked rewrites rollout.json after a change that Apply did not
// make (a revision at 0 whose last process stopped).
func (b *Backend) persistLocked(ro *rollout) {
	if err := writeJSON(filepath.Join(ro.dir, rolloutFileName), ro.file()); err != nil {
		b.log.Warn("state file not written", "rollout", ro.ref.String(), "error", err)
	}
}

// reconcileLocked starts or stops processes so that rev runs its desired
// count. It stops the least useful first: not ready, then not running,
// then the youngest.
func (b *Backend) reconcileLocked(rev *revision) {
	b.scheduleLocked(rev, b.restartLocked(rev, time.Now()))
	var live []*proc
	for _, p := range rev.procs {
		if !p.stopping {
			live = append(live, p)
		}
	}
	want := rev.desired()
	for n := len(live); n < want; n++ {
		slot := 0
		for rev.procs[slot] != nil {
			slot++
		}
		p := newProc(rev, slot)
		rev.procs[slot] = p
		b.procs.Add(1)
		go b.supervise(p, nil)
	}
	if len(live) > want {
		sort.Slice(live, func(i, j int) bool {
			a, c := live[i], live[j]
			if a.ready != c.ready {
				return !a.ready
			}
			if (a.h == nil) != (c.h == nil) {
				return a.h == nil
			}
			if !a.startedAt().Equal(c.startedAt()) {
				return a.startedAt().After(c.startedAt())
			}
			return a.slot > c.slot
		})
		for _, p := range live[:len(live)-want] {
			b.stopLocked(p)
		}
	}
	if want == 0 && len(rev.procs) == 0 {
		b.removeLocked(rev)
	}
	b.changedLocked(rev)
}

// stopLocked asks p's supervisor to stop it gracefully. p leaves the
// endpoints at once.
func (b *Backend) stopLocked(p *proc) {
	if p.stopping {
		return
	}
	p.stopping = true
	p.ready = false
	close(p.stop)
	b.changedLocked(p.rev)
}

// removeLocked forgets a revision at 0 with no process left.
func (b *Backend) removeLocked(rev *revision) {
	ro := rev.ro
	if ro.revisions[rev.key] != rev {
		return
	}
	b.scheduleLocked(rev, time.Time{})
	delete(ro.revisions, rev.key)
	b.changedLocked(rev)
	if ro.removing && len(ro.revisions) == 0 {
		b.forgetLocked(ro)
		return
	}
	b.persistLocked(ro)
}

// revStatus counts rev's processes at now. Processes being stopped are not
// counted; stopping says how many there are.
func (b *Backend) revStatus(rev *revision, now time.Time) (st tasks.RevisionStatus, stopping int) {
	st = entryStatus(rev.spec)
	minReady := rev.ro.minReady()
	for _, p := range rev.procs {
		if p.stopping {
			stopping++
			continue
		}
		st.Replicas++
		if p.ready {
			st.Ready++
			if now.Sub(p.readySince) >= minReady {
				st.Available++
			}
		}
	}
	return st, stopping
}

// wait blocks until every revision of scale is available at its count with
// nothing left to stop, a later seq is applied, or ctx ends.
func (b *Backend) wait(ctx context.Context, ro *rollout, seq int64, scale tasks.Scale) ([]tasks.RevisionStatus, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, errNotRunning
		}
		if ro.seq > seq {
			applied := ro.seq
			b.mu.Unlock()
			return nil, fmt.Errorf("%w: seq %d was applied for %s while seq %d waited", tasks.ErrStale, applied, ro.ref, seq)
		}
		now := time.Now()
		statuses := make([]tasks.RevisionStatus, len(scale.Revisions))
		var reasons []string
		var wake time.Time
		for i, rs := range scale.Revisions {
			rev := ro.revisions[entryName(rs)]
			if rev == nil {
				statuses[i] = entryStatus(rs)
				continue
			}
			st, stopping := b.revStatus(rev, now)
			statuses[i] = st
			old, early := rev.restartingLocked(now)
			if int(st.Available) == rev.desired() && int(st.Replicas) == rev.desired() && stopping == 0 && old == 0 && !early {
				continue
			}
			reasons = append(reasons, b.reasonLocked(rev, st, stopping, now))
			if t := rev.nextAvailable(); !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
				wake = t
			}
		}
		if scale.Remove && len(reasons) == 0 {
			if n := len(ro.revisions); n > 0 {
				reasons = append(reasons, fmt.Sprintf("%d revisions not listed still stopping", n))
			} else {
				b.forgetLocked(ro)
			}
		}
		changed := b.changed
		b.mu.Unlock()
		if len(reasons) == 0 {
			keys := make([]revKey, len(scale.Revisions))
			for i, rs := range scale.Revisions {
				keys[i] = revKey{ro.ref, entryName(rs)}
			}
			// Whoever acts on this result (a route to the new revision)
			// finds its endpoints in the bucket.
			// Availability was reached: publishing it is not cut short
			// by ctx ending meanwhile.
			if err := b.endpoints.sync(context.WithoutCancel(ctx), keys...); err != nil {
				return statuses, fmt.Errorf("publish endpoints of %s: %w", ro.ref, err)
			}
			return statuses, nil
		}
		var timer <-chan time.Time
		if !wake.IsZero() {
			timer = time.After(time.Until(wake))
		}
		select {
		case <-changed:
		case <-timer:
		case <-ctx.Done():
			return statuses, fmt.Errorf("%w: %s", replicas.ErrUnavailable, strings.Join(reasons, "; "))
		}
	}
}

// nextAvailable is the earliest time a ready process of rev becomes
// available, or zero.
func (rev *revision) nextAvailable() time.Time {
	var next time.Time
	for _, p := range rev.procs {
		if p.ready && !p.stopping {
			if t := p.readySince.Add(rev.ro.minReady()); t.After(time.Now()) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next
}

// reasonLocked says why rev is not at its count, e.g. "revision 3 (hash
// abc): 1 of 2 processes ready, 4 restarts; last exit: exit status 1: boom".
func (b *Backend) reasonLocked(rev *revision, st tasks.RevisionStatus, stopping int, now time.Time) string {
	parts := []string{fmt.Sprintf("%d of %d processes ready", st.Ready, rev.desired())}
	if st.Available < st.Ready {
		parts[0] += fmt.Sprintf(", %d available (minReadySeconds %d)", st.Available, rev.ro.workload.MinReadySeconds)
	}
	restarts := 0
	var last *proc
	var probe string
	var notReady []string
	for _, p := range rev.procs {
		if p.stopping {
			continue
		}
		restarts += p.restarts
		if p.lastExit != "" && (last == nil || p.lastExitAt.After(last.lastExitAt)) {
			last = p
		}
		if p.h != nil && !p.ready && p.lastProbe != "" {
			probe = p.lastProbe
		}
		if !p.ready {
			notReady = append(notReady, procName(p))
		}
	}
	if restarts > 0 {
		parts[0] += fmt.Sprintf(", %d restarts", restarts)
	}
	if stopping > 0 {
		parts = append(parts, fmt.Sprintf("%d stopping", stopping))
	}
	if old, early := rev.restartingLocked(now); early {
		parts = append(parts, fmt.Sprintf("restart waits for restartAt %s", rev.spec.RestartAt.UTC().Format(time.RFC3339)))
	} else if !rev.spec.RestartAt.IsZero() && (old > 0 || len(notReady) > 0) {
		parts = append(parts, fmt.Sprintf("restarting: %d processes started before %s still to replace", old, rev.spec.RestartAt.UTC().Format(time.RFC3339)))
	}
	if rev.progErr != nil && rev.desired() > 0 {
		parts = append(parts, "cannot start: "+rev.progErr.Error())
	}
	if last != nil {
		parts = append(parts, "last exit: "+last.lastExit)
	}
	if probe != "" {
		parts = append(parts, "readiness probe: "+probe)
	}
	if len(notReady) > 0 && rev.desired() > 0 {
		sort.Strings(notReady)
		parts = append(parts, "not ready: "+strings.Join(notReady, ", "))
	}
	return rev.name() + ": " + strings.Join(parts, "; ")
}

// Close stops managing the processes (see Config.StopOnClose) and returns
// once every supervisor is done and the endpoints entries are up to date,
// or ctx ends.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.changedLocked(nil) // waiting Apply calls return
	if b.cfg.StopOnClose {
		for _, ro := range b.rollouts {
			for _, rev := range ro.revisions {
				for _, p := range rev.procs {
					b.stopLocked(p)
				}
			}
		}
	}
	b.mu.Unlock()
	var err error
	if b.cfg.StopOnClose {
		err = waitGroup(ctx, &b.procs)
	}
	b.cancel()
	err = errors.Join(err, waitGroup(ctx, &b.procs))
	if b.endpoints != nil {
		err = errors.Join(err, b.endpoints.flush(ctx))
	}
	return err
}

func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Needs is what the local backend uses on the bus besides the replicas
// service's own: it publishes each revision's processes in the endpoints
// bucket (provisioned by endpoints.Open).
var Needs = events.Needs{Buckets: []events.Bucket{{Name: endpoints.Bucket}}}
