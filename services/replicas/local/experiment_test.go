package local

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
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
