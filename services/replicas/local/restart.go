package local

import (
	"fmt"
	"sort"
	"time"
)

// A restart (tasks.RevisionScale.RestartAt) replaces each process of a
// revision started before RestartAt by a new one, as Argo's restartAt
// replaces pods: an old process that is not available is stopped at once
// (stopping it costs nothing), an available one only while fewer than
// MaxUnavailable (at least 1) of the revision's processes are unavailable.
// reconcileLocked starts the replacement in a new slot as soon as the old
// process leaves, so the proxy keeps serving from the others; the next one
// is stopped when the replacement is available, which observe and the
// revision's timer (minReadySeconds, a RestartAt still to come) notice.

// oldLocked reports whether p runs a process started before rev's
// RestartAt, which a restart replaces.
func (rev *revision) oldLocked(p *proc) bool {
	at := rev.spec.RestartAt
	return !at.IsZero() && !p.stopping && p.h != nil && p.h.startedAt.Before(at)
}

// restartingLocked counts the processes rev still has to replace, and says
// whether the restart waits for RestartAt to come.
func (rev *revision) restartingLocked(now time.Time) (old int, early bool) {
	at := rev.spec.RestartAt
	if at.IsZero() || rev.desired() == 0 {
		return 0, false
	}
	if at.After(now) {
		return 0, true
	}
	for _, p := range rev.procs {
		if rev.oldLocked(p) {
			old++
		}
	}
	return old, false
}

// restartLocked stops the old processes of rev that may be stopped now and
// returns when to look again (zero: when something changes).
func (b *Backend) restartLocked(rev *revision, now time.Time) (wake time.Time) {
	at := rev.spec.RestartAt
	if at.IsZero() || rev.desired() == 0 {
		return time.Time{}
	}
	if at.After(now) {
		return at
	}
	maxUnavailable := max(int(rev.spec.MaxUnavailable), 1)
	minReady := rev.ro.minReady()
	available := 0
	var oldAvailable []*proc
	for _, p := range rev.procs {
		if p.stopping {
			continue
		}
		avail := p.ready && now.Sub(p.readySince) >= minReady
		if avail {
			available++
		}
		switch {
		case !rev.oldLocked(p):
		case avail:
			oldAvailable = append(oldAvailable, p)
		default:
			b.log.Info("restart: replacing a process that is not available", "rollout", rev.ro.ref.String(), "entry", rev.key, "process", procName(p), "restartAt", at)
			b.stopLocked(p)
		}
	}
	sort.Slice(oldAvailable, func(i, j int) bool { return oldAvailable[i].slot < oldAvailable[j].slot })
	budget := maxUnavailable - max(rev.desired()-available, 0)
	for _, p := range oldAvailable[:min(max(budget, 0), len(oldAvailable))] {
		b.log.Info("restart: replacing a process", "rollout", rev.ro.ref.String(), "entry", rev.key, "process", procName(p), "restartAt", at)
		b.stopLocked(p)
		available--
	}
	if len(oldAvailable) > 0 && budget < len(oldAvailable) {
		// The next one goes once a replacement is available: on a
		// readiness change (observe), or once minReadySeconds passed.
		wake = rev.nextAvailable()
	}
	return wake
}

// scheduleLocked reconciles rev again at t (zero: never), replacing the
// time set before.
func (b *Backend) scheduleLocked(rev *revision, t time.Time) {
	if rev.timer != nil {
		rev.timer.Stop()
		rev.timer = nil
	}
	if t.IsZero() || b.closed {
		return
	}
	rev.timer = time.AfterFunc(time.Until(t)+time.Millisecond, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.closed && rev.ro.revisions[rev.key] == rev && b.rollouts[rev.ro.ref] == rev.ro {
			b.reconcileLocked(rev)
		}
	})
}

// procName names a process as its log file does: <hash>-<slot>, with its
// pid and port when it runs.
func procName(p *proc) string {
	name := "process " + procBase(p.rev.prefix, p.slot)
	if p.h != nil {
		name += fmt.Sprintf(" (pid %d, port %d)", p.h.pid, p.h.port)
	}
	return name
}
