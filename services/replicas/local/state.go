package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
)

// State directory layout, under Config.StateDir:
//
//	replicas/<namespace>/<rollout>/rollout.json    the seq guard and desired state
//	replicas/<namespace>/<rollout>/<hash>-<n>.json one per running process
//	replicas/<namespace>/<rollout>/<hash>-<n>.log  its stdout and stderr
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
	Slot       int       `json:"slot"`
	Ready      bool      `json:"ready"`
	ReadySince time.Time `json:"readySince,omitzero"`
	// LogOffset is where this process's output starts in its log file.
	LogOffset int64 `json:"logOffset"`
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
