// Package replicastest is the contract every replicas.Backend meets, as a
// test suite: each backend package runs it against its own backend, so the
// seq guard, idempotency, the statuses Apply returns, restarts
// (RevisionScale.RestartAt) and removal (Scale.Remove) are proven the same
// way for Kubernetes, local processes and the instant backend.
package replicastest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
)

// Harness gives the suite the backend under test.
type Harness struct {
	// New returns a started backend, closed when t ends.
	New func(t *testing.T) replicas.Backend
	// Namespace returns the namespace the suite's rollouts live in, one
	// per test (nil: "default").
	Namespace func(t *testing.T) string
	// Template returns a pod template that becomes ready on the backend,
	// carrying labels; nil: a template with one container and labels.
	Template func(t *testing.T, labels map[string]string) corev1.PodTemplateSpec
	// Pods lists the pods (processes) of one revision of ref that are not
	// being stopped, each named uniquely for its lifetime; nil for a
	// backend without pods (instant), whose restarts and removals are then
	// judged by the statuses Apply returns only.
	Pods func(t *testing.T, b replicas.Backend, ref events.Ref, hash string) []string
}

// Run runs the suite. Each subtest uses its own backend and rollouts.
func Run(t *testing.T, h Harness) {
	type rollout struct {
		ref      events.Ref
		workload tasks.Workload
		template corev1.PodTemplateSpec
	}
	newRollout := func(t *testing.T, name string) rollout {
		t.Helper()
		ns := "default"
		if h.Namespace != nil {
			ns = h.Namespace(t)
		}
		labels := map[string]string{"app": name}
		tmpl := corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/" + name + ":v1"}}},
		}
		if h.Template != nil {
			tmpl = h.Template(t, labels)
		}
		return rollout{
			ref:      events.Ref{Namespace: ns, Name: name},
			workload: tasks.Workload{Selector: &metav1.LabelSelector{MatchLabels: labels}},
			template: tmpl,
		}
	}
	// scale is the desired state of r with replicas per pod hash, in the
	// order given as hash, count pairs; revision n is the n-th hash.
	scale := func(r rollout, pairs ...any) tasks.Scale {
		sc := tasks.Scale{Workload: r.workload}
		for i := 0; i < len(pairs); i += 2 {
			sc.Revisions = append(sc.Revisions, tasks.RevisionScale{
				Revision: int64(i/2 + 1), PodHash: pairs[i].(string), Role: spec.RoleStable,
				Replicas: int32(pairs[i+1].(int)), Template: *r.template.DeepCopy(),
			})
		}
		return sc
	}
	apply := func(t *testing.T, b replicas.Backend, r rollout, seq int64, sc tasks.Scale) ([]tasks.RevisionStatus, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), poll.Default)
		defer cancel()
		return b.Apply(ctx, r.ref, seq, sc)
	}
	must := func(t *testing.T, b replicas.Backend, r rollout, seq int64, sc tasks.Scale) []tasks.RevisionStatus {
		t.Helper()
		st, err := apply(t, b, r, seq, sc)
		if err != nil {
			t.Fatalf("Apply seq %d: %v", seq, err)
		}
		return st
	}
	// available checks that st has one status per revision of sc, in its
	// order, each available at the desired count.
	available := func(t *testing.T, st []tasks.RevisionStatus, sc tasks.Scale) {
		t.Helper()
		if len(st) != len(sc.Revisions) {
			t.Fatalf("%d statuses %+v, want one per revision of %d", len(st), st, len(sc.Revisions))
		}
		for i, want := range sc.Revisions {
			got := st[i]
			if got.PodHash != want.PodHash || got.Revision != want.Revision || got.Replicas != want.Replicas || got.Available != want.Replicas || got.Ready < got.Available {
				t.Errorf("status %+v, want revision %d (%s) with %d replicas, all available", got, want.Revision, want.PodHash, want.Replicas)
			}
		}
	}

	t.Run("returns each revision available at its count", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		for seq, sc := range []tasks.Scale{
			scale(web, "aaa", 2),
			scale(web, "aaa", 1, "bbb", 1),
			scale(web, "aaa", 0, "bbb", 2),
		} {
			available(t, must(t, b, web, int64(seq+1), sc), sc)
		}
	})

	t.Run("runs an experiment template apart from the revision with its hash", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		withBaseline := func(stable, baseline int) tasks.Scale {
			sc := scale(web, "aaa", stable)
			x := sc.Revisions[0]
			x.Role, x.Replicas = spec.RoleExperiment, int32(baseline)
			x.Experiment = &tasks.ExperimentPods{Name: "web-bbb-2-1", Template: "baseline"}
			sc.Revisions = append(sc.Revisions, x)
			return sc
		}
		for seq, c := range []struct{ stable, baseline int }{{2, 1}, {2, 0}} {
			sc := withBaseline(c.stable, c.baseline)
			st := must(t, b, web, int64(seq+1), sc)
			available(t, st, sc)
			if st[0].Template != "" || st[1].Template != "baseline" {
				t.Errorf("statuses %+v: want the revision's, then the template's naming it", st)
			}
		}
		sc := scale(web, "aaa", 2)
		available(t, must(t, b, web, 3, sc), sc)
	})

	t.Run("is idempotent", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		sc := scale(web, "aaa", 1)
		for range 3 {
			available(t, must(t, b, web, 1, sc), sc)
		}
	})

	t.Run("refuses a lower seq", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		must(t, b, web, 5, scale(web, "aaa", 1))
		if _, err := apply(t, b, web, 4, scale(web, "aaa", 0)); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("seq 4 after 5: %v, want ErrStale", err)
		}
		available(t, must(t, b, web, 5, scale(web, "aaa", 1)), scale(web, "aaa", 1))
		must(t, b, web, 6, scale(web, "aaa", 1))
		if _, err := apply(t, b, web, 5, scale(web, "aaa", 1)); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("seq 5 after 6: %v, want ErrStale", err)
		}
	})

	t.Run("says which seq was stale", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		must(t, b, web, 42, scale(web, "aaa", 1))
		_, err := apply(t, b, web, 41, scale(web, "aaa", 1))
		if !errors.Is(err, tasks.ErrStale) || !strings.Contains(err.Error(), "41") {
			t.Errorf("stale error %v does not name seq 41", err)
		}
	})

	t.Run("keeps seqs per rollout", func(t *testing.T) {
		b := h.New(t)
		web, shop := newRollout(t, "web"), newRollout(t, "shop")
		must(t, b, web, 10, scale(web, "aaa", 1))
		available(t, must(t, b, shop, 1, scale(shop, "sss", 1)), scale(shop, "sss", 1))
	})

	// pods lists a revision's pods, sorted; nil without Harness.Pods.
	pods := func(t *testing.T, b replicas.Backend, r rollout, hash string) []string {
		t.Helper()
		if h.Pods == nil {
			return nil
		}
		p := h.Pods(t, b, r.ref, hash)
		slices.Sort(p)
		return p
	}
	restart := func(sc tasks.Scale, at time.Time, maxUnavailable int32) tasks.Scale {
		for i := range sc.Revisions {
			sc.Revisions[i].RestartAt, sc.Revisions[i].MaxUnavailable = at, maxUnavailable
		}
		return sc
	}
	remove := func(sc tasks.Scale) tasks.Scale {
		for i := range sc.Revisions {
			sc.Revisions[i].Replicas = 0
		}
		sc.Remove = true
		return sc
	}

	t.Run("restart replaces every pod started before restartAt, once", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		sc := scale(web, "aaa", 2)
		available(t, must(t, b, web, 1, sc), sc)
		before := pods(t, b, web, "aaa")
		rs := restart(scale(web, "aaa", 2), time.Now(), 1)
		available(t, must(t, b, web, 2, rs), sc)
		after := pods(t, b, web, "aaa")
		if h.Pods != nil {
			if len(after) != 2 {
				t.Fatalf("pods after the restart %v, want 2", after)
			}
			for _, p := range after {
				if slices.Contains(before, p) {
					t.Errorf("pod %s was not replaced (before %v, after %v)", p, before, after)
				}
			}
		}
		// The orchestrator resends the same restartAt (a redelivery, or
		// the next task of the rollout): the new pods stay.
		available(t, must(t, b, web, 2, rs), sc)
		available(t, must(t, b, web, 3, rs), sc)
		if again := pods(t, b, web, "aaa"); !slices.Equal(again, after) {
			t.Errorf("pods %v after the same restart again, want %v untouched", again, after)
		}
	})

	t.Run("restart refuses a lower seq", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		must(t, b, web, 5, scale(web, "aaa", 1))
		before := pods(t, b, web, "aaa")
		if _, err := apply(t, b, web, 4, restart(scale(web, "aaa", 1), time.Now(), 1)); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("restart at seq 4 after 5: %v, want ErrStale", err)
		}
		available(t, must(t, b, web, 5, scale(web, "aaa", 1)), scale(web, "aaa", 1))
		if after := pods(t, b, web, "aaa"); !slices.Equal(after, before) {
			t.Errorf("pods %v after a stale restart, want %v", after, before)
		}
	})

	t.Run("remove removes every revision and forgets the rollout", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		sc := scale(web, "aaa", 1, "bbb", 2)
		available(t, must(t, b, web, 1, sc), sc)
		rm := remove(scale(web, "aaa", 0, "bbb", 0))
		for range 2 { // applying it twice is fine
			available(t, must(t, b, web, 2, rm), rm)
			for _, hash := range []string{"aaa", "bbb"} {
				if p := pods(t, b, web, hash); len(p) != 0 {
					t.Errorf("revision %s still has pods %v after remove", hash, p)
				}
			}
		}
		// A new request after the delete starts fresh, whatever its seq.
		fresh := scale(web, "bbb", 1)
		available(t, must(t, b, web, 1, fresh), fresh)
		if p := pods(t, b, web, "bbb"); h.Pods != nil && len(p) != 1 {
			t.Errorf("pods %v after a fresh start, want 1", p)
		}
	})

	t.Run("remove refuses a lower seq", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		must(t, b, web, 5, scale(web, "aaa", 1))
		if _, err := apply(t, b, web, 4, remove(scale(web, "aaa", 0))); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("remove at seq 4 after 5: %v, want ErrStale", err)
		}
		available(t, must(t, b, web, 5, scale(web, "aaa", 1)), scale(web, "aaa", 1))
	})

	t.Run("remove of an unknown rollout is done", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		rm := remove(scale(web, "aaa", 0))
		available(t, must(t, b, web, 7, rm), rm)
	})

	t.Run("never refuses the highest of concurrent seqs", func(t *testing.T) {
		b, web := h.New(t), newRollout(t, "web")
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n+1)
		for seq := 1; seq <= n; seq++ {
			wg.Go(func() {
				_, errs[seq] = apply(t, b, web, int64(seq), scale(web, "aaa", 1))
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
		if _, err := apply(t, b, web, n-1, scale(web, "aaa", 1)); !errors.Is(err, tasks.ErrStale) {
			t.Errorf("seq %d after %d: %v, want ErrStale", n-1, n, err)
		}
	})
}
