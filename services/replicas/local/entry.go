package local

import (
	"fmt"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// A scale entry is a revision's processes or, with Experiment set, those of
// one template of an experiment, which run apart from the revision's even
// when they share its pod hash (a specRef: stable template without
// metadata has the stable's). Both kinds are revisions to the backend;
// only their names differ.

// entryName names a scale entry within its rollout, in the backend's
// memory and in the endpoints bucket (endpoints.EntryName): the pod hash,
// or <hash>.<experiment>.<template>. An experiment's name holds the pod
// hash and step it was started for, so a later experiment of the same
// template is another entry.
func entryName(rs tasks.RevisionScale) string {
	if x := rs.Experiment; x != nil {
		return endpoints.EntryName(rs.PodHash, x.Name, x.Template)
	}
	return rs.PodHash
}

// procPrefix is what the names of an entry's processes (and their files)
// start with: the pod hash, or the experiment template's ReplicaSet name
// (Argo's <experiment>-<template>), which the pod hashes Sluice computes
// (no '-') never are.
func procPrefix(rs tasks.RevisionScale) string {
	if x := rs.Experiment; x != nil {
		return x.ReplicaSetName()
	}
	return rs.PodHash
}

// entryTitle names an entry for people, e.g. "revision 3 (hash abc)" or
// "experiment web-abc-3-2 template baseline (hash def)".
func entryTitle(rs tasks.RevisionScale) string {
	if x := rs.Experiment; x != nil {
		return fmt.Sprintf("experiment %s template %s (hash %s)", x.Name, x.Template, rs.PodHash)
	}
	return fmt.Sprintf("revision %d (hash %s)", rs.Revision, rs.PodHash)
}

// checkEntry checks the names an entry's files and endpoints key are made
// of.
func checkEntry(rs tasks.RevisionScale) error {
	if err := events.ValidateName("pod hash", rs.PodHash); err != nil {
		return err
	}
	if x := rs.Experiment; x != nil {
		if err := events.ValidateName("experiment name", x.Name); err != nil {
			return err
		}
		if err := events.ValidateName("experiment template name", x.Template); err != nil {
			return err
		}
	}
	return nil
}

// entryStatus is an entry's status with no process counted.
func entryStatus(rs tasks.RevisionScale) tasks.RevisionStatus {
	st := tasks.RevisionStatus{Revision: rs.Revision, PodHash: rs.PodHash}
	if x := rs.Experiment; x != nil {
		st.Template = x.Template
	}
	return st
}

func newRevision(ro *rollout, rs tasks.RevisionScale) *revision {
	return &revision{ro: ro, key: entryName(rs), prefix: procPrefix(rs), procs: map[int]*proc{}}
}
