package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// State directory layout, under Config.StateDir:
//
//	replicas/<namespace>/<rollout>/rollout.json    the seq guard and desired state
//	replicas/<namespace>/<rollout>/<hash>-<n>.json one per running process
//	replicas/<namespace>/<rollout>/<hash>-<n>.log  its stdout and stderr
//
// An experiment template's processes are <experiment>-<template>-<n>
// instead of <hash>-<n> (see procPrefix).
const (
	stateSubdir     = "replicas"
	rolloutFileName = "rollout.json"
)

// rolloutFile is what a rollout's rollout.json holds: enough to resume
// managing its revisions after a restart.
type rolloutFile struct {
	// Seq is the highest seq applied: the stale-task guard.
	Seq       int64                 `json:"seq"`
	Workload  tasks.Workload        `json:"workload"`
	Revisions []tasks.RevisionScale `json:"revisions"`
	// Removing means the rollout is being deleted: once its revisions
	// are gone, the file is removed.
	Removing bool `json:"removing,omitempty"`
}

// procFile is a running process's state file: who it is (pid and the
// kernel's start time, which tell it from a later process that reuses the
// pid), where it listens, and its readiness.
type procFile struct {
	PID int `json:"pid"`
	// StartTicks is field 22 of /proc/<pid>/stat: the start time in clock
	// ticks since boot.
	StartTicks uint64    `json:"startTicks"`
	StartedAt  time.Time `json:"startedAt"`
	Port       int       `json:"port"`
	Revision   int64     `json:"revision"`
	PodHash    string    `json:"podHash"`
	// Experiment is set on a process of an experiment's template.
	Experiment *tasks.ExperimentPods `json:"experiment,omitempty"`
	Slot       int                   `json:"slot"`
	Ready      bool                  `json:"ready"`
	ReadySince time.Time             `json:"readySince,omitzero"`
	// LogOffset is where this process's output starts in its log file.
	LogOffset int64 `json:"logOffset"`
	// Restarts counts the slot's earlier processes that exited; Command is
	// the argv it runs and Image the container's image, for people
	// (`sluice get`).
	Restarts int      `json:"restarts,omitempty"`
	Command  []string `json:"command,omitempty"`
	Image    string   `json:"image,omitempty"`
}

// Process is one running process of a rollout as its state file describes
// it: what `sluice get` shows and where `sluice logs` reads.
type Process struct {
	Revision int64  `json:"revision"`
	PodHash  string `json:"podHash"`
	// Experiment is set on a process of an experiment's template, which
	// runs apart from the revision's own processes even with its PodHash.
	Experiment *tasks.ExperimentPods `json:"experiment,omitempty"`
	Slot       int                   `json:"slot"`
	PID        int                   `json:"pid"`
	Port       int                   `json:"port"`
	Ready      bool                  `json:"ready"`
	Restarts   int                   `json:"restarts"`
	StartedAt  time.Time             `json:"startedAt"`
	Command    []string              `json:"command,omitempty"`
	Image      string                `json:"image,omitempty"`
	// Log is the file that holds its output (and its slot's earlier
	// processes'), from LogOffset on.
	Log       string `json:"log"`
	LogOffset int64  `json:"logOffset"`
}

// Entry names the scale entry the process belongs to, which processes of
// one revision or one experiment template share: the pod hash, or
// <hash>.<experiment>.<template>.
func (p Process) Entry() string {
	return entryName(tasks.RevisionScale{PodHash: p.PodHash, Experiment: p.Experiment})
}

// Name is the process's name for people, as its files are named:
// <podHash>-<slot>, or <experiment>-<template>-<slot> for an experiment
// template's (its ReplicaSet's name on Kubernetes, then the slot).
func (p Process) Name() string {
	return procBase(procPrefix(tasks.RevisionScale{PodHash: p.PodHash, Experiment: p.Experiment}), p.Slot)
}

// Processes reads the processes of rollout r that are alive now from the
// state directory stateDir (Config.StateDir), sorted by revision, then
// entry (the revision's own processes first, then each experiment
// template's), then slot.
// It returns os.ErrNotExist (wrapped) when stateDir holds nothing of r: the
// rollout runs elsewhere, or on another platform.
func Processes(stateDir string, r events.Ref) ([]Process, error) {
	dir := filepath.Join(stateDir, stateSubdir, r.Namespace, r.Name)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("processes of %s: %w", r, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, path := range files {
		var pf procFile
		if filepath.Base(path) == rolloutFileName || readJSON(path, &pf) != nil || !alive(pf.PID, pf.StartTicks) {
			continue
		}
		out = append(out, Process{
			Revision: pf.Revision, PodHash: pf.PodHash, Experiment: pf.Experiment, Slot: pf.Slot, PID: pf.PID, Port: pf.Port,
			Ready: pf.Ready, Restarts: pf.Restarts, StartedAt: pf.StartedAt, Command: pf.Command, Image: pf.Image,
			Log: filepath.Join(dir, pf.name()+".log"), LogOffset: pf.LogOffset,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Revision != out[j].Revision {
			return out[i].Revision > out[j].Revision
		}
		// A revision's own processes, then each experiment template's.
		if ei, ej := out[i].Entry(), out[j].Entry(); ei != ej {
			if (out[i].Experiment == nil) != (out[j].Experiment == nil) {
				return out[i].Experiment == nil
			}
			return ei < ej
		}
		return out[i].Slot < out[j].Slot
	})
	return out, nil
}

// LogFiles lists every log file of rollout r in stateDir, by process name
// (<podHash>-<slot>), those of stopped processes included: a log is kept
// after its process.
func LogFiles(stateDir string, r events.Ref) (map[string]string, error) {
	dir := filepath.Join(stateDir, stateSubdir, r.Namespace, r.Name)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("logs of %s: %w", r, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(files))
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), ".log")] = f
	}
	return out, nil
}

func procBase(hash string, slot int) string { return fmt.Sprintf("%s-%d", hash, slot) }

// writeJSON replaces path with v's encoding atomically: a crash leaves the
// old file or the new one, never a torn one.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := f.Write(append(data, '\n'))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// procStat reads a process's state letter and start time from
// /proc/<pid>/stat.
func procStat(pid int) (state byte, startTicks uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// spaces and parentheses included: the fields after it start after the
	// last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 > len(data) {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(data[i+2:]))
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	if len(fields) < 20 || len(fields[0]) == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return fields[0][0], ticks, nil
}

// alive reports whether pid is still the process that started at
// startTicks and has not exited (a zombie has).
func alive(pid int, startTicks uint64) bool {
	if pid <= 0 {
		return false
	}
	state, ticks, err := procStat(pid)
	return err == nil && ticks == startTicks && state != 'Z' && state != 'X' && state != 'x'
}

// Limits of the output quoted in messages.
const (
	tailBytes = 4096
	tailLines = 5
	tailChars = 400
)

// tail returns the last lines a process wrote to its log after offset, on
// one line.
func tail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() <= offset {
		return ""
	}
	from := max(offset, fi.Size()-tailBytes)
	buf := make([]byte, fi.Size()-from)
	if _, err := f.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(string(buf), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if from > offset && len(lines) > 0 {
		lines = lines[1:] // the first may be cut
	}
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > tailChars {
		s = "..." + s[len(s)-tailChars:]
	}
	return s
}

// entry is the name of the scale entry the process belongs to (entryName).
func (f procFile) entry() string {
	return entryName(tasks.RevisionScale{PodHash: f.PodHash, Experiment: f.Experiment})
}

// name is the process's name, which its files have (see Process.Name).
func (f procFile) name() string {
	return procBase(procPrefix(tasks.RevisionScale{PodHash: f.PodHash, Experiment: f.Experiment}), f.Slot)
}
