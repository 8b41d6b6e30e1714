package instant

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

func TestApplyIsImmediateAndSeqGuarded(t *testing.T) {
	b := New()
	ctx := context.Background()
	r := events.Ref{Namespace: "default", Name: "web"}
	scale := func(stable, canary int32) tasks.Scale {
		return tasks.Scale{Revisions: []tasks.RevisionScale{{Revision: 1, PodHash: "s", Replicas: stable}, {Revision: 2, PodHash: "c", Replicas: canary}}}
	}
	st, err := b.Apply(ctx, r, 2, scale(4, 1))
	if err != nil || len(st) != 2 || st[1].Available != 1 {
		t.Fatalf("Apply = %v, %v", st, err)
	}
	if _, err := b.Apply(ctx, r, 1, scale(0, 4)); !errors.Is(err, tasks.ErrStale) {
		t.Errorf("older seq: err = %v, want ErrStale", err)
	}
	if _, err := b.Apply(ctx, r, 3, scale(0, 4)); err != nil {
		t.Fatal(err)
	}
	if got := b.Replicas(r); len(got) != 1 || got["c"] != 4 {
		t.Errorf("replicas = %v, want only c=4", got)
	}
}

// An experiment template's pods are reported apart and are not the
// revision's, even with its pod hash.
func TestExperimentEntryIsReportedApart(t *testing.T) {
	b := New()
	r := events.Ref{Namespace: "default", Name: "web"}
	baseline := &tasks.ExperimentPods{Name: "web-c-2-1", Template: "baseline"}
	st, err := b.Apply(context.Background(), r, 1, tasks.Scale{Revisions: []tasks.RevisionScale{
		{Revision: 1, PodHash: "s", Replicas: 3},
		{Revision: 1, PodHash: "s", Replicas: 1, Experiment: baseline},
	}})
	if err != nil || len(st) != 2 || st[0].Template != "" || st[1].Template != "baseline" || st[1].Available != 1 {
		t.Fatalf("Apply = %+v, %v", st, err)
	}
	if got := b.Replicas(r); len(got) != 1 || got["s"] != 3 {
		t.Errorf("replicas = %v, want the revision's own s=3", got)
	}
}
