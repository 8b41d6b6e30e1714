package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

// A restart replaces one process at a time (maxUnavailable 1): each old
// process is stopped gracefully and the next only once its replacement is
// ready, so the revision's published endpoints never run dry.
func TestRestartReplacesOneAtATimeAndKeepsServing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	terms := t.TempDir()
	tmpl := probedApp(terms)
	if _, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "aaa", 3, tmpl))); err != nil {
		t.Fatal(err)
	}
	before := pidsOf(b.procsOf(web, "aaa"))

	// Every endpoints entry written during the restart.
	var mu sync.Mutex
	var seen []int
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.store.Watch(ctx, func(rev endpoints.Revision) {
		if rev.Ref == web && rev.PodHash == "aaa" {
			mu.Lock()
			seen = append(seen, len(rev.Ready))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}

	rs := revScale(1, "aaa", 3, tmpl)
	rs.RestartAt, rs.MaxUnavailable = time.Now(), 1
	st, err := b.Apply(waitCtx(t), web, 2, scaleOf(0, rs))
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Available != 3 || st[0].Replicas != 3 {
		t.Errorf("status after the restart %+v, want 3 available", st[0])
	}
	after := pidsOf(b.procsOf(web, "aaa"))
	for _, pid := range before {
		if slices.Contains(after, pid) {
			t.Errorf("process %d was not replaced (before %v, after %v)", pid, before, after)
		}
		if _, err := os.Stat(filepath.Join(terms, strconv.Itoa(pid))); err != nil {
			t.Errorf("process %d stopped without SIGTERM: %v", pid, err)
		}
	}
	poll.True(t, "the endpoints entry with the 3 new processes", func() bool {
		entry, ok := e.entry(t, web, "aaa")
		return ok && len(entry.Ready) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	for _, n := range seen {
		if n < 2 {
			t.Errorf("an endpoints entry with %d ready processes during the restart (all: %v); maxUnavailable 1 of 3 allows no fewer than 2", n, seen)
			break
		}
	}
}

// A replacement that never becomes ready stops the restart where it is:
// the other old processes keep serving, and the task fails naming the
// process and why.
func TestRestartThatCannotFinishSaysWhichProcessAndWhy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	tmpl := app{probe: httpProbe(intstr.FromString("http"))}.template()
	if _, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "aaa", 2, tmpl))); err != nil {
		t.Fatal(err)
	}
	before := pidsOf(b.procsOf(web, "aaa"))

	// What changed since the processes started (here, the environment
	// they get) makes every new process exit.
	broken := app{env: map[string]string{helperExit: "1", helperExitMsg: "boom: no database"}, probe: httpProbe(intstr.FromString("http"))}.template()
	rs := revScale(1, "aaa", 2, broken)
	rs.RestartAt, rs.MaxUnavailable = time.Now(), 1
	apply := func() error {
		short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := b.Apply(short, web, 2, scaleOf(0, rs))
		return err
	}
	if err := apply(); !errors.Is(err, replicas.ErrUnavailable) {
		t.Fatalf("restart with a replacement that never starts: %v, want ErrUnavailable", err)
	}
	poll.True(t, "a replacement that exited", func() bool {
		for _, v := range b.procsOf(web, "aaa") {
			if !v.ready && v.restarts > 0 {
				return true
			}
		}
		return false
	})
	err := apply()
	if !errors.Is(err, replicas.ErrUnavailable) {
		t.Fatalf("restart with a replacement that never starts: %v, want ErrUnavailable", err)
	}
	for _, want := range []string{
		"revision 1 (hash aaa): 1 of 2 processes ready",
		"restarting: 1 processes started before",
		"last exit: exit status 1: boom: no database",
		"not ready: process aaa-",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	left := b.procsOf(web, "aaa")
	ready := 0
	for _, v := range left {
		if v.ready {
			ready++
			if !slices.Contains(before, v.pid) {
				t.Errorf("ready process %d is not one of the old ones %v", v.pid, before)
			}
		}
	}
	if ready != 1 {
		t.Errorf("%d ready processes while the restart is stuck, want the 1 old one still serving", ready)
	}
	if entry, _ := e.entry(t, web, "aaa"); len(entry.Ready) != 1 {
		t.Errorf("endpoints while the restart is stuck: %v, want the old process", entry.Ready)
	}
}

// Remove stops every process, drops the endpoints entries and the state
// files, and keeps the logs.
func TestRemoveStopsEverythingAndForgetsTheRollout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	b := e.backend(t, dir)
	tmpl := app{}.template()
	if _, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "aaa", 1, tmpl), revScale(2, "bbb", 2, tmpl))); err != nil {
		t.Fatal(err)
	}
	// Only bbb is listed: aaa, which the rollout still runs, goes too.
	rm := scaleOf(0, revScale(2, "bbb", 0, tmpl))
	rm.Remove = true
	if _, err := b.Apply(waitCtx(t), web, 2, rm); err != nil {
		t.Fatal(err)
	}
	for _, hash := range []string{"aaa", "bbb"} {
		if v := b.procsOf(web, hash); len(v) != 0 {
			t.Errorf("revision %s still runs %v", hash, v)
		}
		poll.True(t, "the endpoints entry of "+hash+" deleted", func() bool {
			_, ok := e.entry(t, web, hash)
			return !ok
		})
	}
	rdir := filepath.Join(dir, stateSubdir, web.Namespace, web.Name)
	if _, err := os.Stat(filepath.Join(rdir, rolloutFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after remove: %v", rolloutFileName, err)
	}
	if logs, _ := filepath.Glob(filepath.Join(rdir, "*.log")); len(logs) != 3 {
		t.Errorf("logs after remove %v, want the 3 processes' logs kept", logs)
	}
	// A restarted backend on the same directory finds nothing to run.
	b2 := e.backend(t, dir)
	if _, err := b2.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "ccc", 1, tmpl))); err != nil {
		t.Fatalf("a new rollout of the same name at seq 1: %v", err)
	}
	if v := b2.procsOf(web, "bbb"); len(v) != 0 {
		t.Errorf("the removed revision came back: %v", v)
	}
}

// Through the local proxy, a restart of 2 processes (maxUnavailable 1)
// fails no request: each old process leaves the endpoints before it is
// told to stop and finishes what it serves, and the proxy sends the
// others to the process that stays.
func TestRestartBehindTheProxyFailsNoRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	proxy := e.proxy(t)
	tmpl := app{env: map[string]string{helperDrain: "1"}, probe: httpProbe(intstr.FromString("http"))}.template()
	if _, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, revScale(1, "aaa", 2, tmpl))); err != nil {
		t.Fatal(err)
	}
	route := tasks.Route{Strategy: spec.StrategyCanary, StableService: "web", CanaryService: "web-canary", StableHash: "aaa",
		Annotations: map[string]string{localproxy.AnnotationListen: "127.0.0.1:0"}}
	if _, err := proxy.Apply(waitCtx(t), web, 1, route); err != nil {
		t.Fatal(err)
	}
	addr, _ := proxy.Addrs(web)
	before := map[string]bool{}
	for _, pid := range pidsOf(b.procsOf(web, "aaa")) {
		before[strconv.Itoa(pid)] = true
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: eventstest.Wait}
	poll.Until(t, "the proxy serving both processes", func() error {
		seen := map[string]bool{}
		for range 10 {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen[string(body)] = true
		}
		if len(seen) != 2 {
			return fmt.Errorf("served by %v", seen)
		}
		return nil
	})

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	served := sync.Map{} // pid -> true
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status+": "+string(body))
					continue
				}
				served.Store(string(body), true)
				ok.Add(1)
			}
		})
	}
	rs := revScale(1, "aaa", 2, tmpl)
	rs.RestartAt, rs.MaxUnavailable = time.Now(), 1
	_, err := b.Apply(waitCtx(t), web, 2, scaleOf(0, rs))
	// Requests go on until the new processes have served some.
	after := pidsOf(b.procsOf(web, "aaa"))
	if err == nil {
		poll.True(t, "both new processes serving through the proxy", func() bool {
			for _, pid := range after {
				if _, ok := served.Load(strconv.Itoa(pid)); !ok {
					return false
				}
			}
			return true
		})
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range after {
		if before[strconv.Itoa(pid)] {
			t.Errorf("process %d was not replaced", pid)
		}
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the restart; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
}
