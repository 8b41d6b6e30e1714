// Package traffictest is the contract every traffic.Router meets, as a test
// suite: each router package runs it against its own router, so the seq
// guard, idempotency and removal (Route.Remove) are proven the same way for
// all of them.
package traffictest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/traffic"
)

// Harness gives the suite the router under test.
type Harness struct {
	// New returns a fresh router, ready to Apply, cleaned up with t.
	New func(t *testing.T) traffic.Router
	// Prepare adds to route what the router needs to accept it for ref
	// (annotations, Services, ingresses it expects). May be nil.
	Prepare func(t *testing.T, ref events.Ref, route *tasks.Route)
}

// Canary returns a canary route with trafficRouting at weight, stable pod
// hash "s1" and canary "c1".
func Canary(weight int32) tasks.Route {
	return tasks.Route{
		Strategy:       spec.StrategyCanary,
		CanaryService:  "web-canary",
		StableService:  "web-stable",
		TrafficRouting: &spec.TrafficRouting{SMI: &spec.SMITrafficRouting{}},
		StableHash:     "s1",
		CanaryHash:     "c1",
		CanaryWeight:   weight,
	}
}

// BlueGreen returns a blue/green route.
func BlueGreen(active, preview string) tasks.Route {
	return tasks.Route{Strategy: spec.StrategyBlueGreen, ActiveService: "web", PreviewService: "web-preview", ActiveHash: active, PreviewHash: preview}
}

// Remove returns route as the orchestrator sends it when the rollout is
// deleted.
func Remove(route tasks.Route) tasks.Route {
	route.Remove = true
	return route
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	web := events.Ref{Namespace: "default", Name: "web"}
	apply := func(t *testing.T, r traffic.Router, ref events.Ref, seq int64, route tasks.Route) (int32, error) {
		t.Helper()
		if h.Prepare != nil {
			h.Prepare(t, ref, &route)
		}
		return r.Apply(context.Background(), ref, seq, route)
	}
	must := func(t *testing.T, r traffic.Router, ref events.Ref, seq int64, route tasks.Route) int32 {
		t.Helper()
		w, err := apply(t, r, ref, seq, route)
		if err != nil {
			t.Fatalf("Apply seq %d: %v", seq, err)
		}
		return w
	}

	t.Run("returns the weight in effect", func(t *testing.T) {
		r := h.New(t)
		if w := must(t, r, web, 1, Canary(30)); w != 30 {
			t.Errorf("weight %d, want 30", w)
		}
		if w := must(t, r, web, 2, Canary(0)); w != 0 {
			t.Errorf("weight %d, want 0", w)
		}
		if w := must(t, r, web, 3, BlueGreen("s1", "c1")); w != 0 {
			t.Errorf("blue/green weight %d, want 0", w)
		}
	})

	t.Run("is idempotent", func(t *testing.T) {
		r := h.New(t)
		for range 3 {
			if w := must(t, r, web, 1, Canary(40)); w != 40 {
				t.Errorf("weight %d, want 40", w)
			}
		}
	})

	t.Run("refuses a lower seq", func(t *testing.T) {
		r := h.New(t)
		must(t, r, web, 5, Canary(0))
		if _, err := apply(t, r, web, 4, Canary(50)); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("seq 4 after 5: %v, want ErrStale", err)
		}
		if w := must(t, r, web, 5, Canary(0)); w != 0 {
			t.Errorf("seq 5 again: weight %d", w)
		}
		must(t, r, web, 6, Canary(10))
		if _, err := apply(t, r, web, 5, Canary(0)); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("seq 5 after 6: %v, want ErrStale", err)
		}
	})

	t.Run("keeps seqs per rollout", func(t *testing.T) {
		r := h.New(t)
		must(t, r, web, 10, Canary(20))
		shop := events.Ref{Namespace: "default", Name: "shop"}
		must(t, r, shop, 1, Canary(20))
		other := events.Ref{Namespace: "other", Name: "web"}
		must(t, r, other, 1, Canary(20))
	})

	t.Run("never refuses the highest of concurrent seqs", func(t *testing.T) {
		r := h.New(t)
		const n = 16
		var wg sync.WaitGroup
		errs := make([]error, n+1)
		for seq := 1; seq <= n; seq++ {
			wg.Go(func() {
				_, errs[seq] = apply(t, r, web, int64(seq), Canary(int32(seq)))
			})
		}
		wg.Wait()
		for seq, err := range errs {
			if err != nil && !errors.Is(err, tasks.ErrStale) {
				t.Errorf("seq %d: %v", seq, err)
			}
		}
		if errs[n] != nil {
			t.Errorf("the highest seq was refused: %v", errs[n])
		}
		if _, err := apply(t, r, web, n-1, Canary(0)); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("seq %d after %d: %v, want ErrStale", n-1, n, err)
		}
	})

	t.Run("remove is idempotent and forgets the rollout", func(t *testing.T) {
		r := h.New(t)
		must(t, r, web, 1, Canary(30))
		for range 2 {
			if w := must(t, r, web, 2, Remove(Canary(30))); w != 0 {
				t.Errorf("remove: weight %d, want 0", w)
			}
		}
		// A new request for the rollout after its delete starts fresh,
		// whatever its seq: the router forgot the rollout.
		if w := must(t, r, web, 1, Canary(10)); w != 10 {
			t.Errorf("after remove: weight %d, want 10", w)
		}
	})

	t.Run("remove refuses a lower seq", func(t *testing.T) {
		r := h.New(t)
		must(t, r, web, 5, Canary(20))
		if _, err := apply(t, r, web, 4, Remove(Canary(20))); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("remove at seq 4 after 5: %v, want ErrStale", err)
		}
		if w := must(t, r, web, 5, Canary(20)); w != 20 {
			t.Errorf("seq 5 again after a stale remove: weight %d, want 20", w)
		}
	})

	t.Run("remove of a rollout never routed is done", func(t *testing.T) {
		r := h.New(t)
		if w := must(t, r, web, 1, Remove(Canary(0))); w != 0 {
			t.Errorf("remove: weight %d, want 0", w)
		}
	})

	t.Run("says which seq was stale", func(t *testing.T) {
		r := h.New(t)
		must(t, r, web, 42, Canary(0))
		_, err := apply(t, r, web, 41, Canary(0))
		if !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "41") {
			t.Errorf("stale error %v does not name seq 41", err)
		}
	})
}
