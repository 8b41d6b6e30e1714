package local

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas"
)

var web = events.Ref{Namespace: "default", Name: "web"}

func pidsOf(views []procView) []int {
	var pids []int
	for _, v := range views {
		pids = append(pids, v.pid)
	}
	slices.Sort(pids)
	return pids
}

func TestScaleUpPublishesEveryReadyProcessThenScaleDownIsGraceful(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	terms, children := t.TempDir(), t.TempDir()
	// The probe names the first containerPort: it must reach PORT.
	tmpl := app{env: map[string]string{helperTermDir: terms, helperChildDir: children}, probe: httpProbe(intstr.FromString("http"))}.template()

	st, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "aaa", 3, tmpl)))
	if err != nil {
		t.Fatal(err)
	}
	if want := (tasks.RevisionStatus{Revision: 1, PodHash: "aaa", Replicas: 3, Ready: 3, Available: 3}); len(st) != 1 || st[0] != want {
		t.Fatalf("status %+v, want %+v", st, want)
	}
	entry, ok := e.entry(t, web, "aaa")
	if !ok || len(entry.Ready) != 3 || entry.Revision != 1 || entry.MetricsPath != "/metrics" {
		t.Fatalf("endpoints entry %+v (present %v), want 3 ready addresses", entry, ok)
	}
	served := map[string]bool{}
	for _, addr := range entry.Ready {
		served[get(t, "http://"+addr+"/")] = true
	}
	if len(served) != 3 {
		t.Errorf("3 addresses served by %d processes", len(served))
	}
	before := pidsOf(b.procsOf(web, "aaa"))

	st, err = b.Apply(waitCtx(t), web, 2, scaleOf(0, revScale(1, "aaa", 1, tmpl)))
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Replicas != 1 || st[0].Available != 1 {
		t.Errorf("after scaling down: %+v", st[0])
	}
	after := pidsOf(b.procsOf(web, "aaa"))
	for _, pid := range before {
		if slices.Contains(after, pid) {
			continue
		}
		// Apply returned once the process was gone, after it had been
		// told to stop with SIGTERM.
		if _, err := os.Stat(filepath.Join(terms, strconv.Itoa(pid))); err != nil {
			t.Errorf("process %d stopped without SIGTERM: %v", pid, err)
		}
	}
	if entry, _ := e.entry(t, web, "aaa"); len(entry.Ready) != 1 {
		t.Errorf("endpoints after scaling down: %v", entry.Ready)
	}

	st, err = b.Apply(waitCtx(t), web, 3, scaleOf(0, revScale(1, "aaa", 0, tmpl)))
	if err != nil {
		t.Fatal(err)
	}
	if st[0] != (tasks.RevisionStatus{Revision: 1, PodHash: "aaa"}) {
		t.Errorf("after scaling to 0: %+v", st[0])
	}
	if entry, ok := e.entry(t, web, "aaa"); ok {
		t.Errorf("entry of a revision without processes: %+v", entry)
	}
	// What the processes started went with them: they share its group.
	files, _ := filepath.Glob(filepath.Join(children, "*"))
	if len(files) != 3 {
		t.Errorf("%d children recorded, want 3", len(files))
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		child, _ := strconv.Atoi(string(data))
		poll.True(t, "child "+string(data)+" gone", func() bool {
			state, _, err := procStat(child)
			return err != nil || state == 'Z'
		})
	}
	if files, _ := filepath.Glob(filepath.Join(b.root, "default", "web", "aaa-*.json")); len(files) != 0 {
		t.Errorf("state files left: %v", files)
	}
	if logs, _ := filepath.Glob(filepath.Join(b.root, "default", "web", "aaa-*.log")); len(logs) != 3 {
		t.Errorf("logs %v, want one per process slot", logs)
	} else if data, _ := os.ReadFile(logs[0]); !strings.Contains(string(data), "helper listening on 127.0.0.1:") {
		t.Errorf("log holds %q", data)
	}
}

func TestCrashedProcessIsRestartedAndUnavailableMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	gate := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := app{env: map[string]string{helperReadyFile: gate}, probe: httpProbe(intstr.FromInt32(8080))}.template()
	scale := scaleOf(0, revScale(1, "aaa", 1, tmpl))
	if _, err := b.Apply(waitCtx(t), web, 1, scale); err != nil {
		t.Fatal(err)
	}
	entry, _ := e.entry(t, web, "aaa")
	first := b.procsOf(web, "aaa")[0].pid

	// The restarted process will not be ready until the gate is back.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get("http://" + entry.Ready[0] + "/crash"); err == nil {
		resp.Body.Close()
	}
	poll.True(t, "a restarted, unready process", func() bool {
		v := b.procsOf(web, "aaa")
		return len(v) == 1 && v[0].pid != 0 && v[0].pid != first && v[0].restarts == 1 && !v[0].ready
	})
	v := b.procsOf(web, "aaa")[0]
	if !strings.HasPrefix(v.lastExit, "exit status 3: ") || !strings.HasSuffix(v.lastExit, "crashing on request") {
		t.Errorf("last exit %q", v.lastExit)
	}
	poll.True(t, "the crashed process out of the endpoints", func() bool {
		entry, ok := e.entry(t, web, "aaa")
		return ok && len(entry.Ready) == 0
	})
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st, err := b.Apply(short, web, 1, scale)
	if !errors.Is(err, replicas.ErrUnavailable) {
		t.Fatalf("apply while restarting: %v", err)
	}
	if st[0].Available != 0 || st[0].Replicas != 1 {
		t.Errorf("status while restarting: %+v", st[0])
	}
	for _, want := range []string{"revision 1 (hash aaa): 0 of 1 processes ready, 1 restarts", "last exit: exit status 3: ", "crashing on request"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = b.Apply(waitCtx(t), web, 1, scale)
	if err != nil || st[0].Available != 1 {
		t.Fatalf("after the restart: %+v, %v", st, err)
	}
	if entry, _ := e.entry(t, web, "aaa"); len(entry.Ready) != 1 {
		t.Errorf("endpoints after the restart: %v", entry.Ready)
	}
}

func TestUnavailableRevisionFailsWithTheReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	for _, tc := range []struct {
		name  string
		app   app
		until func(procView) bool
		want  []string
	}{
		{
			name:  "never ready",
			app:   app{env: map[string]string{helperNotReady: "1"}, probe: httpProbe(intstr.FromString("http"))},
			until: func(v procView) bool { return strings.Contains(v.lastProbe, "503") },
			want:  []string{"revision 1 (hash nr1): 0 of 2 processes ready; readiness probe: HTTP probe failed with status code 503"},
		},
		{
			name:  "crash loop",
			app:   app{env: map[string]string{helperExit: "1", helperExitMsg: "boom: no database"}, probe: httpProbe(intstr.FromString("http"))},
			until: func(v procView) bool { return v.restarts > 0 },
			want:  []string{"revision 1 (hash cl1): 0 of 2 processes ready, ", "restarts; last exit: exit status 1: boom: no database"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := events.Ref{Namespace: "default", Name: strings.ReplaceAll(tc.name, " ", "-")}
			hash := map[string]string{"never ready": "nr1", "crash loop": "cl1"}[tc.name]
			scale := scaleOf(0, revScale(1, hash, 2, tc.app.template()))
			short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if _, err := b.Apply(short, r, 1, scale); !errors.Is(err, replicas.ErrUnavailable) {
				t.Fatalf("first apply: %v", err)
			}
			poll.True(t, tc.name, func() bool {
				v := b.procsOf(r, hash)
				return len(v) == 2 && tc.until(v[0]) && tc.until(v[1])
			})
			short, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			st, err := b.Apply(short, r, 1, scale)
			if !errors.Is(err, replicas.ErrUnavailable) {
				t.Fatalf("apply: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
			if len(st) != 1 || st[0].Ready != 0 || st[0].Available != 0 {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestMinReadySecondsDelaysAvailability(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	const minReady = 2
	scale := scaleOf(minReady, revScale(1, "aaa", 1, app{probe: probe}.template()))
	done := make(chan error, 1)
	go func() {
		_, err := b.Apply(waitCtx(t), web, 1, scale)
		done <- err
	}()
	poll.True(t, "a ready process", func() bool {
		v := b.procsOf(web, "aaa")
		return len(v) == 1 && v[0].ready
	})
	// Ready processes are in the endpoints at once; availability waits.
	poll.True(t, "the ready process in the endpoints", func() bool {
		entry, _ := e.entry(t, web, "aaa")
		return len(entry.Ready) == 1
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	v := b.procsOf(web, "aaa")[0]
	if since := time.Since(v.readySince); since < minReady*time.Second {
		t.Errorf("available %s after it became ready, before minReadySeconds %d", since, minReady)
	}
	b.mu.Lock()
	st, _ := b.revStatus(b.rollouts[web].revisions["aaa"], v.readySince.Add(minReady*time.Second-time.Millisecond))
	b.mu.Unlock()
	if st.Ready != 1 || st.Available != 0 {
		t.Errorf("just before minReadySeconds: %+v, want ready and not available", st)
	}
}

func TestStaleSeq(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	never := app{env: map[string]string{helperNotReady: "1"}, probe: httpProbe(intstr.FromString("http"))}.template()

	if _, err := b.Apply(waitCtx(t), web, 5, scaleOf(0)); err != nil {
		t.Fatal(err)
	}
	_, err := b.Apply(waitCtx(t), web, 4, scaleOf(0, revScale(1, "aaa", 1, never)))
	if !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "seq 4, but seq 5 was applied for default/web") {
		t.Fatalf("lower seq: %v", err)
	}
	if len(b.procsOf(web, "aaa")) != 0 {
		t.Error("a stale task started processes")
	}
	// A stale task is Stale even when its template cannot run here.
	if _, err := b.Apply(waitCtx(t), web, 4, scaleOf(0, revScale(1, "bad", 1, corev1.PodTemplateSpec{}))); !errors.Is(err, tasks.ErrStale) {
		t.Errorf("lower seq, bad template: %v", err)
	}
	if _, err := b.Apply(waitCtx(t), web, 6, scaleOf(0, revScale(1, "bad", 1, corev1.PodTemplateSpec{}))); !errors.Is(err, replicas.ErrInvalidTemplate) {
		t.Errorf("bad template: %v", err)
	}

	// A task waiting for availability goes stale when a later one arrives.
	waiting := make(chan error, 1)
	go func() {
		_, err := b.Apply(waitCtx(t), web, 6, scaleOf(0, revScale(1, "aaa", 1, never)))
		waiting <- err
	}()
	poll.True(t, "the process of seq 6", func() bool { return len(b.procsOf(web, "aaa")) == 1 })
	if _, err := b.Apply(waitCtx(t), web, 7, scaleOf(0, revScale(1, "aaa", 0, never))); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "seq 7 was applied") {
		t.Errorf("superseded wait: %v", err)
	}
}

func TestRestartedBackendAdoptsRunningProcesses(t *testing.T) {
	t.Parallel()
	e, dir, terms := newEnv(t), t.TempDir(), t.TempDir()
	first, tmpl := e.backend(t, dir, keepRunning), probedApp(terms)
	scale := scaleOf(0, revScale(1, "aaa", 3, tmpl))
	if _, err := first.Apply(waitCtx(t), web, 3, scale); err != nil {
		t.Fatal(err)
	}
	orphan := events.Ref{Namespace: "default", Name: "orphan"}
	if _, err := first.Apply(waitCtx(t), orphan, 1, scaleOf(0, revScale(1, "bbb", 1, tmpl))); err != nil {
		t.Fatal(err)
	}
	before := pidsOf(first.procsOf(web, "aaa"))
	orphanPID := first.procsOf(orphan, "bbb")[0].pid
	if err := first.Close(waitCtx(t)); err != nil {
		t.Fatal(err)
	}

	// While no backend runs: one process dies, and the orphan rollout's
	// desired state is lost.
	_, ticks, err := procStat(before[2])
	if err != nil {
		t.Fatal(err)
	}
	signalGroup(before[2], syscall.SIGKILL)
	poll.True(t, "the killed process gone", func() bool { return !alive(before[2], ticks) })
	if err := os.Remove(filepath.Join(dir, stateSubdir, "default", "orphan", rolloutFileName)); err != nil {
		t.Fatal(err)
	}

	second := e.backend(t, dir)
	st, err := second.Apply(waitCtx(t), web, 3, scale)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Available != 3 {
		t.Fatalf("after adoption: %+v", st[0])
	}
	after := pidsOf(second.procsOf(web, "aaa"))
	for _, pid := range before[:2] {
		if !slices.Contains(after, pid) {
			t.Errorf("process %d was not adopted: before %v, after %v", pid, before, after)
		}
	}
	if slices.Contains(after, before[2]) || len(after) != 3 {
		t.Errorf("the dead process was not replaced: before %v, after %v", before, after)
	}
	poll.True(t, "the orphan stopped with SIGTERM", func() bool {
		_, err := os.Stat(filepath.Join(terms, strconv.Itoa(orphanPID)))
		return err == nil
	})
	for _, pid := range before[:2] {
		if _, err := os.Stat(filepath.Join(terms, strconv.Itoa(pid))); err == nil {
			t.Errorf("adopted process %d got SIGTERM", pid)
		}
	}
	if entry, _ := e.entry(t, web, "aaa"); len(entry.Ready) != 3 {
		t.Errorf("endpoints after adoption: %v", entry.Ready)
	}
	poll.True(t, "the orphan's endpoints removed", func() bool {
		_, ok := e.entry(t, orphan, "bbb")
		return !ok
	})
	// The seq guard survived the restart.
	if _, err := second.Apply(waitCtx(t), web, 2, scale); !errors.Is(err, tasks.ErrStale) {
		t.Errorf("lower seq after a restart: %v", err)
	}
}

func TestNewRevisionWithAMissingProgramFailsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	tmpl := app{}.template()
	tmpl.Spec.Containers[0].Command = []string{"./no-such-app"}
	_, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "aaa", 1, tmpl)))
	if !errors.Is(err, replicas.ErrInvalidTemplate) || !strings.Contains(err.Error(), "revision 1 (hash aaa): spec.template.spec.containers[0].command[0]: stat ") {
		t.Fatalf("apply: %v", err)
	}
	if len(b.procsOf(web, "aaa")) != 0 {
		t.Error("processes started for a template that cannot run")
	}
}
