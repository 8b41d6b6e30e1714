package local

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

// baselineOf is the scale entry of an experiment template with the
// stable's pod hash, as a specRef: stable template without metadata has.
func baselineOf(stable tasks.RevisionScale, replicas int32) tasks.RevisionScale {
	rs := stable
	rs.Role, rs.Replicas = spec.RoleExperiment, replicas
	rs.Experiment = &tasks.ExperimentPods{Name: "web-bbb-2-1", Template: "baseline"}
	return rs
}

const baselineEntry = "aaa.web-bbb-2-1.baseline"

func TestExperimentWithTheStablesHashRunsItsOwnProcesses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	b := e.backend(t, dir)
	terms := t.TempDir()
	tmpl := probedApp(terms)
	stable := revScale(1, "aaa", 2, tmpl)
	baseline := baselineOf(stable, 1)

	st, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, stable, baseline))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Template != "" || st[0].Available != 2 || st[1].Template != "baseline" || st[1].Available != 1 {
		t.Fatalf("statuses %+v: want the stable's 2 and the baseline's 1, told apart", st)
	}
	stablePIDs, baselinePIDs := pidsOf(b.procsOf(web, "aaa")), pidsOf(b.procsOf(web, baselineEntry))
	if len(stablePIDs) != 2 || len(baselinePIDs) != 1 || slices.Contains(stablePIDs, baselinePIDs[0]) {
		t.Fatalf("stable processes %v, baseline processes %v: want 2 and 1 apart", stablePIDs, baselinePIDs)
	}

	// Each has its own endpoints entry, and the baseline's names it.
	stableEntry, _ := e.entry(t, web, "aaa")
	expEntry, ok := e.entry(t, web, baselineEntry)
	if len(stableEntry.Ready) != 2 || stableEntry.Template != "" {
		t.Errorf("stable's endpoints entry %+v", stableEntry)
	}
	if !ok || len(expEntry.Ready) != 1 || expEntry.PodHash != "aaa" || expEntry.Experiment != "web-bbb-2-1" || expEntry.Template != "baseline" {
		t.Errorf("baseline's endpoints entry %+v (present %v)", expEntry, ok)
	}
	if slices.Contains(stableEntry.Ready, expEntry.Ready[0]) {
		t.Errorf("the baseline's address %s is in the stable's entry %v", expEntry.Ready[0], stableEntry.Ready)
	}
	if pid := get(t, "http://"+expEntry.Ready[0]+"/"); pid != strconv.Itoa(baselinePIDs[0]) {
		t.Errorf("the baseline's address is served by process %s, want %d", pid, baselinePIDs[0])
	}

	// The process is named as Argo names the ReplicaSet, for `sluice get`
	// and `sluice logs`.
	procs, err := Processes(dir, web)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range procs {
		names = append(names, p.Name())
	}
	if want := []string{"aaa-0", "aaa-1", "web-bbb-2-1-baseline-0"}; !slices.Equal(names, want) {
		t.Errorf("process names %v, want %v: the revision's own first, then the template's", names, want)
	}

	// At 0 and still listed, the baseline's process stops gracefully and
	// its entry goes; the stable's are left alone.
	st, err = b.Apply(waitCtx(t), web, 2, scaleOf(0, stable, baselineOf(stable, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if st[1].Replicas != 0 || st[1].Template != "baseline" || st[0].Available != 2 {
		t.Errorf("after scaling the baseline to 0: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(terms, strconv.Itoa(baselinePIDs[0]))); err != nil {
		t.Errorf("baseline process %d stopped without SIGTERM: %v", baselinePIDs[0], err)
	}
	if got := pidsOf(b.procsOf(web, "aaa")); !slices.Equal(got, stablePIDs) {
		t.Errorf("stable processes %v after the baseline stopped, want %v", got, stablePIDs)
	}
	poll.True(t, "the baseline's endpoints entry removed", func() bool {
		_, ok := e.entry(t, web, baselineEntry)
		return !ok
	})
	if entry, _ := e.entry(t, web, "aaa"); len(entry.Ready) != 2 {
		t.Errorf("stable's endpoints after the baseline stopped: %v", entry.Ready)
	}
	// Dropped from the task, it is forgotten.
	if _, err := b.Apply(waitCtx(t), web, 3, scaleOf(0, stable)); err != nil {
		t.Fatal(err)
	}
	var rf rolloutFile
	if err := readJSON(filepath.Join(b.root, "default", "web", rolloutFileName), &rf); err != nil {
		t.Fatal(err)
	}
	if len(rf.Revisions) != 1 || rf.Revisions[0].Experiment != nil {
		t.Errorf("desired state after the experiment: %+v", rf.Revisions)
	}
}

func TestRestartedBackendAdoptsAnExperimentsProcesses(t *testing.T) {
	t.Parallel()
	e, dir, terms := newEnv(t), t.TempDir(), t.TempDir()
	first, tmpl := e.backend(t, dir, keepRunning), probedApp(terms)
	stable := revScale(1, "aaa", 1, tmpl)
	scale := scaleOf(0, stable, baselineOf(stable, 2))
	if _, err := first.Apply(waitCtx(t), web, 1, scale); err != nil {
		t.Fatal(err)
	}
	stablePIDs, baselinePIDs := pidsOf(first.procsOf(web, "aaa")), pidsOf(first.procsOf(web, baselineEntry))
	if err := first.Close(waitCtx(t)); err != nil {
		t.Fatal(err)
	}

	second := e.backend(t, dir)
	st, err := second.Apply(waitCtx(t), web, 1, scale)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Available != 1 || st[1].Available != 2 {
		t.Fatalf("after adoption: %+v", st)
	}
	if got := pidsOf(second.procsOf(web, "aaa")); !slices.Equal(got, stablePIDs) {
		t.Errorf("stable processes %v after the restart, want %v adopted", got, stablePIDs)
	}
	if got := pidsOf(second.procsOf(web, baselineEntry)); !slices.Equal(got, baselinePIDs) {
		t.Errorf("baseline processes %v after the restart, want %v adopted", got, baselinePIDs)
	}
	if files, _ := filepath.Glob(filepath.Join(terms, "*")); len(files) != 0 {
		t.Errorf("processes stopped by the restart: %v", files)
	}
	if entry, _ := e.entry(t, web, baselineEntry); len(entry.Ready) != 2 || entry.Template != "baseline" {
		t.Errorf("baseline's endpoints after adoption: %+v", entry)
	}
}

func TestExperimentWithANameThatCannotBeAFileIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.backend(t, t.TempDir())
	stable := revScale(1, "aaa", 1, app{}.template())
	bad := baselineOf(stable, 1)
	bad.Experiment.Template = "Base.line"
	_, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, stable, bad))
	if !errors.Is(err, replicas.ErrInvalidTemplate) || !strings.Contains(err.Error(), `experiment web-bbb-2-1 template Base.line (hash aaa): invalid name: experiment template name "Base.line" must be a DNS-1123 label`) {
		t.Fatalf("apply: %v", err)
	}
	if len(b.procsOf(web, "aaa")) != 0 {
		t.Error("processes started for a task that was refused")
	}
}

// Behind the local proxy, a template with the stable's pod hash and a
// weight is served by its own processes: the replicas backend and the
// proxy agree on its endpoints entry.
func TestExperimentProcessesServeTheirShareBehindTheProxy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b, proxy := e.backend(t, t.TempDir()), e.proxy(t)
	stable := revScale(1, "aaa", 1, probedApp(t.TempDir()))
	if _, err := b.Apply(waitCtx(t), web, 1, scaleOf(0, stable, baselineOf(stable, 1))); err != nil {
		t.Fatal(err)
	}
	route := tasks.Route{Strategy: spec.StrategyCanary, StableService: "web", CanaryService: "web-canary", StableHash: "aaa",
		TrafficRouting: &spec.TrafficRouting{SMI: &spec.SMITrafficRouting{}},
		Experiments:    []tasks.ExperimentRoute{{Pods: *baselineOf(stable, 1).Experiment, PodHash: "aaa", Weight: 50}},
		Annotations:    map[string]string{localproxy.AnnotationListen: "127.0.0.1:0"}}
	if _, err := proxy.Apply(waitCtx(t), web, 1, route); err != nil {
		t.Fatal(err)
	}
	addr, _ := proxy.Addrs(web)
	stablePID, baselinePID := strconv.Itoa(b.procsOf(web, "aaa")[0].pid), strconv.Itoa(b.procsOf(web, baselineEntry)[0].pid)
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: eventstest.Wait}
	serve := func() string {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(body)
	}
	poll.Until(t, "the proxy to know the baseline's process", func() error {
		if got := serve(); got != "200 OK "+baselinePID {
			return fmt.Errorf("served by %s", got)
		}
		return nil
	})
	// 400 draws at 50%: the baseline's count is 200 ± 10 (one standard
	// deviation); 100 to 300 is ten deviations either way.
	counts := map[string]int{}
	for range 400 {
		counts[serve()]++
	}
	if n := counts["200 OK "+baselinePID]; n < 100 || n > 300 || n+counts["200 OK "+stablePID] != 400 {
		t.Errorf("responses %v: want 400 between the stable (pid %s) and the baseline (pid %s), about half each", counts, stablePID, baselinePID)
	}
}
