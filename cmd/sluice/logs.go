package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/replicas/local"
)

// followInterval is how often `logs -f` looks for new output and new
// processes.
const followInterval = 250 * time.Millisecond

func newLogsCmd(conn *events.ConnConfig) *cobra.Command {
	var ns, stateDir, pod string
	var revision int64
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs <rollout>",
		Short: "Print the output of a rollout's processes on the local platform (-f: follow)",
		Long: `Print the output of a rollout's processes on the local platform, each line
prefixed with its process (<pod-hash>-<slot>, or <experiment>-<template>-<slot>
for an experiment's template). It reads the log files in the state
directory of sluice dev or sluice-replicas (--state-dir, on this machine):
those of the running processes, or every log the rollout left when none
runs. A standalone Experiment's name prints its templates' processes. --revision or --pod narrows to one revision or process;
-f keeps printing new output, of new processes too, until Ctrl-C.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRollouts(conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := rolloutRef(args[0], ns)
			if err != nil {
				return err
			}
			sel := logSelection{stateDir: stateDir, ref: r, revision: revision, pod: pod}
			files, err := sel.files()
			if err != nil {
				return err
			}
			lf := &logFollower{out: cmd.OutOrStdout(), offsets: map[string]int64{}, partial: map[string][]byte{}}
			if err := lf.read(files); err != nil {
				return err
			}
			if !follow {
				lf.flushPartial()
				return nil
			}
			return lf.follow(cmd.Context(), sel)
		},
	}
	addNamespaceFlag(cmd, &ns)
	cmd.Flags().StringVar(&stateDir, "state-dir", defaultStateDir, "the state directory of sluice dev or sluice-replicas")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until Ctrl-C")
	cmd.Flags().Int64Var(&revision, "revision", 0, "only the processes of this revision")
	cmd.Flags().StringVar(&pod, "pod", "", "only this process (<pod-hash>-<slot>, as logs prefixes its lines)")
	return cmd
}

// logSelection is which log files `logs` reads.
type logSelection struct {
	stateDir string
	ref      events.Ref
	revision int64
	pod      string
}

// files returns the selected log files by process name.
func (s logSelection) files() (map[string]string, error) {
	all, err := local.LogFiles(s.stateDir, s.ref)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no processes of %s under %s: logs reads the local platform's state directory on this machine (--state-dir, as given to sluice dev or sluice-replicas)", s.ref, s.stateDir)
	}
	if err != nil {
		return nil, err
	}
	procs, _ := local.Processes(s.stateDir, s.ref)
	if s.revision != 0 {
		procs = slices.DeleteFunc(procs, func(p local.Process) bool { return p.Revision != s.revision })
		if len(procs) == 0 {
			return nil, fmt.Errorf("no running process of %s has revision %d", s.ref, s.revision)
		}
	}
	out := map[string]string{}
	switch {
	case s.pod != "":
		f, ok := all[s.pod]
		if !ok {
			names := slices.Sorted(func(yield func(string) bool) {
				for n := range all {
					if !yield(n) {
						return
					}
				}
			})
			return nil, fmt.Errorf("%s has no process %q; it has %s", s.ref, s.pod, strings.Join(names, ", "))
		}
		out[s.pod] = f
	case len(procs) > 0:
		for _, p := range procs {
			out[p.Name()] = p.Log
		}
	default:
		out = all
	}
	return out, nil
}

// logFollower prints log files line by line with their process's name,
// from where it last stopped in each.
type logFollower struct {
	out     io.Writer
	offsets map[string]int64
	partial map[string][]byte
}

// read prints what each file holds past its offset.
func (lf *logFollower) read(files map[string]string) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := lf.readFile(n, files[n]); err != nil {
			return err
		}
	}
	return nil
}

func (lf *logFollower) readFile(name, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(lf.offsets[path], io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	lf.offsets[path] += int64(len(data))
	data = append(lf.partial[name], data...)
	lines := bytes.Split(data, []byte("\n"))
	// The last piece is an unfinished line (or empty): keep it for later.
	lf.partial[name] = slices.Clone(lines[len(lines)-1])
	for _, l := range lines[:len(lines)-1] {
		if _, err := fmt.Fprintf(lf.out, "[%s] %s\n", name, l); err != nil {
			return err
		}
	}
	return nil
}

// flushPartial prints the unfinished last lines.
func (lf *logFollower) flushPartial() {
	for name, p := range lf.partial {
		if len(p) > 0 {
			fmt.Fprintf(lf.out, "[%s] %s\n", name, p)
		}
	}
}

// follow prints new output until ctx ends, looking for new processes too.
func (lf *logFollower) follow(ctx context.Context, sel logSelection) error {
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			lf.flushPartial()
			return nil
		case <-t.C:
		}
		files, err := sel.files()
		if err != nil {
			continue // the rollout's processes are being replaced
		}
		if err := lf.read(files); err != nil {
			return err
		}
	}
}
