package dataplane

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/traffictest"
)

func newServer(t *testing.T) *Server {
	t.Helper()
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// The data plane's router meets the contract every Sluice router meets.
func TestRouterMeetsTheRouterContract(t *testing.T) {
	traffictest.Run(t, traffictest.Harness{New: func(t *testing.T) traffic.Router {
		return Router{Client: &Client{URL: newServer(t).URL(), Worker: "test"}}
	}})
}

// The backend guards seq like the router, and every call is recorded
// with its outcome and content.
func TestBackendGuardsSeqAndRecordsEveryCall(t *testing.T) {
	s := newServer(t)
	b := Backend{Client: &Client{URL: s.URL(), Worker: "replicas-1"}}
	ctx := context.Background()
	web := events.Ref{Namespace: "default", Name: "web"}
	scale := func(canary int32) tasks.Scale {
		return tasks.Scale{Revisions: []tasks.RevisionScale{{Revision: 1, PodHash: "s1", Replicas: 4}, {Revision: 2, PodHash: "c1", Replicas: canary}}}
	}
	if st, err := b.Apply(ctx, web, 2, scale(1)); err != nil || len(st) != 2 || st[1].Available != 1 {
		t.Fatalf("Apply = %v, %v", st, err)
	}
	if _, err := b.Apply(ctx, web, 2, scale(1)); err != nil {
		t.Fatalf("the same seq again: %v", err)
	}
	if _, err := b.Apply(ctx, web, 1, scale(4)); !errors.Is(err, tasks.ErrStale) {
		t.Fatalf("a lower seq: err %v, want ErrStale", err)
	}
	recs := s.Records()
	if len(recs) != 3 || recs[0].Outcome != Applied || recs[1].Outcome != Reapplied || recs[2].Outcome != Stale {
		t.Fatalf("records %+v", recs)
	}
	if recs[0].Content != recs[1].Content || recs[0].Content == recs[2].Content || recs[0].Worker != "replicas-1" {
		t.Errorf("contents %q %q %q, worker %q", recs[0].Content, recs[1].Content, recs[2].Content, recs[0].Worker)
	}
}

// Faults run only while the data plane has them on, as its last answer
// said.
func TestHooksRunOnlyWhileFaultsAreOn(t *testing.T) {
	s := newServer(t)
	var before, after int
	c := &Client{URL: s.URL(), Worker: "traffic-1", Before: func() { before++ }, After: func() { after++ }}
	r := Router{Client: c}
	web := events.Ref{Namespace: "default", Name: "web"}
	for seq, on := range []bool{false, true, true, false, false} {
		s.SetFaults(on)
		if _, err := r.Apply(context.Background(), web, int64(seq+1), traffictest.Canary(10)); err != nil {
			t.Fatal(err)
		}
	}
	// After runs on the answer that says faults are on; Before on the call
	// after one did.
	if before != 2 || after != 2 {
		t.Errorf("Before ran %d times, After %d; want 2 and 2", before, after)
	}
}
