package orchestrator

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
)

func TestShareAndWhatToGiveBack(t *testing.T) {
	for _, c := range []struct {
		name                 string
		held                 []int
		partitions, replicas int
		want                 int
	}{
		{"alone holds all", []int{0, 1, 2, 3, 4, 5, 6, 7}, 8, 1, 0},
		{"two replicas, one holds all", []int{0, 1, 2, 3, 4, 5, 6, 7}, 8, 2, 1},
		{"three replicas, 3 of 8 is the share", []int{0, 1, 2}, 8, 3, 0},
		{"three replicas, 4 of 8 is one too many", []int{0, 1, 2, 3}, 8, 3, 1},
		{"more replicas than partitions", []int{5}, 4, 6, 0},
		{"more replicas than partitions, two held", []int{1, 2}, 4, 6, 1},
		{"no replica counted", []int{1, 2}, 4, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := toGive(c.held, c.partitions, c.replicas)
			if len(got) != c.want {
				t.Fatalf("toGive(%v, %d, %d) = %v, want %d partition(s)", c.held, c.partitions, c.replicas, got, c.want)
			}
			for _, p := range got {
				if !slices.Contains(c.held, p) {
					t.Errorf("gives back %d, which it does not hold (%v)", p, c.held)
				}
			}
		})
	}
}

// replica is an orchestrator replica of a rebalancing test and its metrics.
type replica struct {
	*orchestratorProc
	reg *prometheus.Registry
}

func startReplica(t *testing.T, url string, ttl time.Duration) replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := telemetry.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return replica{startOrchestratorWith(t, url, Config{Partitions: rebalanceParts, OwnerTTL: ttl, Metrics: m}), reg}
}

const rebalanceParts = 8

// spread names two rollouts in each partition, so that every partition
// has messages, and so a pin, in each wave.
func spread(t *testing.T) []events.Ref {
	t.Helper()
	tr := ownersStream(events.BusConfig{}, rebalanceParts, nil).Sources[0].SubjectTransforms[0]
	st, err := server.NewSubjectTransform(tr.Source, tr.Destination)
	if err != nil {
		t.Fatal(err)
	}
	per := map[int]int{}
	var refs []events.Ref
	for i := 0; len(refs) < 2*rebalanceParts; i++ {
		r := events.Ref{Namespace: "spread", Name: fmt.Sprintf("app-%d", i)}
		to, err := st.Match(events.CommandRoot + "." + r.Namespace + "." + r.Name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(strings.Split(to, ".")[2])
		if err != nil {
			t.Fatalf("partition of %s: %q", r, to)
		}
		if per[p] < 2 {
			per[p]++
			refs = append(refs, r)
		}
	}
	return refs
}

// held is how many partitions each replica holds.
func held(t *testing.T, rs []replica) []int {
	t.Helper()
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = len(r.svc.held(t.Context()))
	}
	return out
}

// waves updates every rollout and waits until each completed.
type waves struct {
	t      *testing.T
	c      *events.Client
	status *statusLog
	refs   []events.Ref
	n      int
}

func (w *waves) next() {
	w.t.Helper()
	w.n++
	for _, r := range w.refs {
		request(w.t, w.c, r, fmt.Sprintf("app:%d", w.n), `    canary:
      steps: [{setWeight: 50}]`)
	}
	for _, r := range w.refs {
		waitForN(w.t, w.status, r, events.TypeRolloutCompleted, w.n)
	}
}

func sumCounter(t *testing.T, rs []replica, name string) float64 {
	t.Helper()
	n := 0.0
	for _, r := range rs {
		n += counterValue(t, r.reg, name, "")
	}
	return n
}

// A replica started after the others hold every pin gets its share: the
// others give back what they hold beyond ceil(P/N), while every rollout
// keeps completing its updates.
func TestPinsRebalanceToAReplicaStartedLater(t *testing.T) {
	srv := startServer(t)
	rs := []replica{startReplica(t, srv.ClientURL(), DefaultOwnerTTL), startReplica(t, srv.ClientURL(), DefaultOwnerTTL)}
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	w := &waves{t: t, c: c, status: watchStatus(t, c), refs: spread(t)}
	w.next()
	poll.Until(t, "the two replicas to hold every partition", func() error {
		if h := held(t, rs); h[0]+h[1] != rebalanceParts {
			return fmt.Errorf("they hold %v", h)
		}
		return nil
	}, poll.Timeout(time.Minute))

	rs = append(rs, startReplica(t, srv.ClientURL(), DefaultOwnerTTL))
	late := time.Now()
	most := share(rebalanceParts, len(rs))
	poll.Until(t, fmt.Sprintf("the late replica to hold a partition and none more than %d, rollouts updated meanwhile", most), func() error {
		w.next()
		h := held(t, rs)
		if h[2] == 0 || slices.Max(h) > most {
			return fmt.Errorf("after %d waves the replicas hold %v", w.n, h)
		}
		t.Logf("after %s and %d waves the replicas hold %v", time.Since(late).Round(time.Millisecond), w.n, h)
		return nil
	}, poll.Timeout(3*time.Minute))
	if n := sumCounter(t, rs, "sluice_orchestrator_partitions_given_back_total"); n < 1 {
		t.Errorf("%v partitions given back, want at least one", n)
	}
	w.next()
	for _, r := range w.refs {
		if n := countOf(w.status, r, events.TypeRolloutCompleted); n != w.n {
			t.Errorf("%s completed %d times over %d updates", r, n, w.n)
		}
	}
	t.Logf("compare-and-swap conflicts (the fence): %v", sumCounter(t, rs, "sluice_orchestrator_cas_conflicts_total"))
}

// With the same replicas throughout, the pins settle and then stay: no
// partition is given back or pinned anew over several checks.
func TestPinsStayWithStableReplicas(t *testing.T) {
	srv := startServer(t)
	// A longer TTL than the default, so that a stall of a loaded
	// machine's pulls (a pinned replica must pull again within half of
	// it, under -race beside the rest of make test) does not move a pin
	// by itself.
	const ttl = 6 * time.Second
	var rs []replica
	for range 3 {
		rs = append(rs, startReplica(t, srv.ClientURL(), ttl))
	}
	c := connect(t, srv.ClientURL())
	startFakeWorkers(t, c)
	w := &waves{t: t, c: c, status: watchStatus(t, c), refs: spread(t)}
	most := share(rebalanceParts, len(rs))
	poll.Until(t, fmt.Sprintf("the pins to settle: every partition held, none more than %d a replica", most), func() error {
		w.next()
		h := held(t, rs)
		if h[0]+h[1]+h[2] != rebalanceParts || slices.Max(h) > most {
			return fmt.Errorf("after %d waves the replicas hold %v", w.n, h)
		}
		return nil
	}, poll.Timeout(3*time.Minute))
	pins := sumCounter(t, rs, "sluice_orchestrator_pin_changes_total")
	given := sumCounter(t, rs, "sluice_orchestrator_partitions_given_back_total")
	checks := make([]int, len(rs))
	for i, r := range rs {
		checks[i] = r.svc.rebalance.Checks()
	}
	poll.Until(t, "every replica to check its share twice more, rollouts updated meanwhile", func() error {
		w.next()
		for i, r := range rs {
			if n := r.svc.rebalance.Checks(); n < checks[i]+2 {
				return fmt.Errorf("replica %d checked %d times since", i, n-checks[i])
			}
		}
		return nil
	}, poll.Timeout(3*time.Minute))
	if n := sumCounter(t, rs, "sluice_orchestrator_partitions_given_back_total"); n != given {
		t.Errorf("%v partitions given back with balanced pins, want none", n-given)
	}
	if n := sumCounter(t, rs, "sluice_orchestrator_pin_changes_total"); n != pins {
		t.Errorf("%v partitions pinned anew with the same replicas throughout, want none", n-pins)
	}
	t.Logf("held %v after %d waves; %v given back while settling", held(t, rs), w.n, given)
}
