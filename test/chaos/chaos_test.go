// Package chaos is Sluice's fault-injection suite: the real orchestrator
// and analyzer binaries and the real replicas and traffic services (on a
// recording data plane, package dataplane), two processes of each, on a
// real NATS server and a real PromQL engine, rolling many rollouts out
// while the suite kills processes, restarts NATS, delivers every event twice
// and out of order, slows workers, breaks Prometheus and sends poison.
// Package invariants then checks the whole history.
//
// `make test` runs the short form; `make chaos` (SLUICE_CHAOS=full) the
// long one. docs/reliability.md records the figures.
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/orchestrator/machine"
	"github.com/sluicehq/sluice/test/chaos/invariants"
	"github.com/sluicehq/sluice/test/systest"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

// size is how much chaos a run makes.
type size struct {
	perClass int           // rollouts per class
	waves    int           // updates of every rollout, one wave after another
	every    time.Duration // time between waves
	spread   time.Duration // a wave's updates are requested over this long
	tail     time.Duration // faults go on this long after the last wave
	kill     time.Duration // mean time between SIGKILLs
	restarts int           // NATS restarts while faults go on
	bound    time.Duration // every rollout settles this soon after the faults clear
	// crash and slow are the probabilities that a worker kills itself
	// before or after an effect, and that an effect is slow. They are per
	// effect, so the long run, with ten times the effects per second, has
	// them ten times smaller: a worker that dies every second makes every
	// rollout fail for want of workers, which is a correct outcome but
	// checks nothing else.
	crash, slow float64
}

// phase is how long faults are injected.
func (s size) phase() time.Duration { return time.Duration(s.waves)*s.every + s.tail }

var (
	short = size{perClass: 2, waves: 3, every: 8 * time.Second, spread: 3 * time.Second, tail: 4 * time.Second,
		kill: 1500 * time.Millisecond, restarts: 1, bound: 90 * time.Second, crash: 0.03, slow: 0.05}
	full = size{perClass: 20, waves: 8, every: 15 * time.Second, spread: 10 * time.Second, tail: 10 * time.Second,
		kill: 800 * time.Millisecond, restarts: 3, bound: 120 * time.Second, crash: 0.003, slow: 0.005}
)

// class is a kind of rollout: what its analysis sees and what it must end as.
type class struct {
	name string
	// template is the AnalysisTemplate its analysis step uses.
	template string
	// outcome is the phase it must end in.
	outcome string
	// noPromotion: its analysis has no good data, so the new revision
	// must never be promoted.
	noPromotion bool
	// abort: the suite aborts it at a random moment; conflict: two
	// different updates are requested for it at the same moment.
	abort, conflict bool
}

var classes = []class{
	{name: "good", template: "good", outcome: "Healthy"},
	{name: "slow", template: "slow", outcome: "Healthy"},
	{name: "conflict", template: "good", outcome: "Healthy", conflict: true},
	{name: "abort", template: "good", outcome: "Degraded", abort: true},
	{name: "bad", template: "bad", outcome: "Degraded", noPromotion: true},
	{name: "nan", template: "nan", outcome: "Degraded", noPromotion: true},
	{name: "empty", template: "empty", outcome: "Degraded", noPromotion: true},
	{name: "down", template: "down", outcome: "Degraded", noPromotion: true},
	{name: "stalled", template: "stalled", outcome: "Degraded", noPromotion: true},
}

const namespace = "chaos"

// preAnalysisWeight is the canary weight of the step before the analysis.
const preAnalysisWeight = 20

// templates are the AnalysisTemplates, by name: the same success ratio
// metric over different Prometheus behaviours. Two consecutive errors
// make a run Errored, one failure Failed.
func templates(p systest.Prometheus) map[string]string {
	tmpl := func(name, address, selector string, timeout int) string {
		return fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
  "metadata": {"name": %q, "namespace": %q},
  "spec": {"metrics": [{"name": "success", "interval": "1s", "count": 3, "failureLimit": 0, "consecutiveErrorLimit": 1,
    "successCondition": "result[0] >= 0.95",
    "provider": {"prometheus": {"address": %q, "timeout": %d, "query": "chaos_success_ratio{%s}"}}}]}}`,
			name, namespace, address, timeout, strings.ReplaceAll(selector, `"`, `\"`))
	}
	return map[string]string{
		"good":    tmpl("good", p.URL, `class="good"`, 2),
		"slow":    tmpl("slow", p.SlowURL, `class="good"`, 2),
		"bad":     tmpl("bad", p.URL, `class="bad"`, 2),
		"nan":     tmpl("nan", p.URL, `class="nan"`, 2),
		"empty":   tmpl("empty", p.URL, `class="none"`, 2),
		"down":    tmpl("down", p.DownURL, `class="good"`, 2),
		"stalled": tmpl("stalled", p.Stalled, `class="good"`, 1),
	}
}

// manifest is a canary through a router with an analysis step; an abort
// rollout ends in an indefinite pause, so only the abort ends it.
func manifest(name string, c class, image string) string {
	last := `{"setWeight": 80}`
	if c.abort {
		last = `{"pause": {}}`
	}
	return fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
  "metadata": {"name": %q, "namespace": %q},
  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": %[1]q}},
    "template": {"metadata": {"labels": {"app": %[1]q}}, "spec": {"containers": [{"name": "app", "image": %[3]q}]}},
    "strategy": {"canary": {"stableService": "stable", "canaryService": "canary", "trafficRouting": {"smi": {}},
      "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1,
      "steps": [{"setWeight": %[4]d}, {"analysis": {"templates": [{"templateName": %[5]q}]}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}, %[6]s]}}}}`,
		name, namespace, image, preAnalysisWeight, c.template, last)
}

// rollout is one rollout of the run.
type rollout struct {
	ref   events.Ref
	class class
}

func TestChaos(t *testing.T) { chaos(t) }

// TestChaosPartitioned is TestChaos with one owner per rollout: the
// orchestrators consume eight partitions, each pinned to one of them at a
// time (--partitions, docs/orchestrator.md). The SIGKILLs at random kill
// owners in the middle of decisions, and a replica that was paused or
// slow may still decide on a rollout whose partition moved on: the
// invariants must hold all the same.
func TestChaosPartitioned(t *testing.T) { chaos(t, "--partitions", "8") }

// chaos runs the suite with the orchestrators' extra flags.
func chaos(t *testing.T, orchestratorFlags ...string) {
	sz := short
	if os.Getenv("SLUICE_CHAOS") == "full" {
		sz = full
	}
	logDir := t.TempDir()
	if d := os.Getenv("SLUICE_CHAOS_LOGS"); d != "" {
		logDir = d
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nats := systest.StartBus(t)
	dp, err := dataplane.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	prom := systest.StartPrometheus(t)
	sys := systest.Start(t, systest.Spec{
		NATS: nats.URL, DataPlane: dp.URL(), LogDir: logDir,
		// Two of each service, so that a killed one has a peer that
		// takes its work.
		Replicas:     2,
		WorkerFaults: []string{"--crash-before", fmt.Sprint(sz.crash), "--crash-after", fmt.Sprint(sz.crash), "--slow", fmt.Sprint(sz.slow), "--slow-max", "1500ms"},
		Orchestrator: append([]string{"--task-start-timeout", "5s", "--task-max-attempts", "5"}, orchestratorFlags...),
	})
	defer func() {
		if t.Failed() {
			t.Logf("process logs (%s):\n%s", logDir, sys.LogTails(15))
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := events.Connect(ctx, events.ConnConfig{URLs: []string{nats.URL}, Name: "chaos-suite"}, events.WithLogger(systest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	js := client.JetStream()
	poll.True(t, "every service ready", sys.Ready, poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))

	// The rollouts, their templates, and the state bucket followed from
	// the start.
	var rollouts []rollout
	for _, c := range classes {
		for i := range sz.perClass {
			rollouts = append(rollouts, rollout{ref: events.Ref{Namespace: namespace, Name: fmt.Sprintf("%s-%d", c.name, i)}, class: c})
		}
	}
	for name, body := range templates(prom) {
		publish(t, client, events.Ref{Namespace: namespace, Name: name}, events.TypeAnalysisTemplateApply, body)
	}
	tkv, err := js.KeyValue(ctx, analyzer.BucketTemplates)
	if err != nil {
		t.Fatal(err)
	}
	poll.True(t, "the templates stored", func() bool {
		keys, err := tkv.ListKeys(ctx)
		if err != nil {
			return false
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n == len(templates(prom))
	}, poll.Timeout(30*time.Second), poll.Every(100*time.Millisecond))
	kv, err := js.KeyValue(ctx, orchestrator.BucketRollouts)
	if err != nil {
		t.Fatal(err)
	}
	watch := followStates(ctx, t, kv)

	// The first revision goes live without faults.
	for _, r := range rollouts {
		publish(t, client, r.ref, events.TypeRolloutRequested, manifest(r.ref.Name, r.class, "app:v1"))
	}
	live := make([]events.Ref, len(rollouts))
	for i, r := range rollouts {
		live[i] = r.ref
	}
	watch.waitLive(t, live, 2*time.Minute)
	expect := map[events.Ref]invariants.Expectation{}
	for _, r := range rollouts {
		st, _ := watch.state(r.ref)
		// One revision per distinct template: the first, then one per wave
		// (two for a conflict).
		e := invariants.Expectation{Phase: r.class.outcome, Revisions: 1 + int64(sz.waves), StableHash: st.StableHash}
		if r.class.conflict {
			e.Revisions = 1 + 2*int64(sz.waves)
		}
		if r.class.noPromotion {
			e.NoPromotion, e.MaxWeight = true, preAnalysisWeight
		}
		expect[r.ref] = e
	}
	watch.expect(expect)

	// Faults on: the workers' own (crash before and after effects, slow
	// effects), duplicates and reordering, poison, SIGKILLs, NATS restarts.
	dp.SetFaults(true)
	fctx, stopFaults := context.WithCancel(ctx)
	var faults sync.WaitGroup
	dup, err := startDuplicator(fctx, js, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	poison := &poisoner{js: js, kinds: map[string]int{}}
	for _, r := range rollouts {
		poison.refs = append(poison.refs, r.ref)
	}
	faults.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-fctx.Done():
				return
			case <-time.After(300 * time.Millisecond):
			}
			poison.publishOne(fctx, i)
		}
	})
	faults.Go(func() {
		for {
			select {
			case <-fctx.Done():
				return
			case <-time.After(sz.kill/2 + rand.N(sz.kill)):
			}
			sys.KillRandom()
		}
	})
	faults.Go(func() {
		for i := 1; i <= sz.restarts; i++ {
			select {
			case <-fctx.Done():
				return
			case <-time.After(sz.phase() / time.Duration(sz.restarts+1)):
			}
			if err := nats.Restart(time.Second); err != nil {
				t.Errorf("NATS restart: %v", err)
			}
		}
	})
	var aborts sync.WaitGroup
	begun := time.Now()
	for w := range sz.waves {
		image := fmt.Sprintf("app:v%d", w+2)
		for i, r := range rollouts {
			at := time.Duration(w)*sz.every + time.Duration(int64(sz.spread)*int64(i)/int64(len(rollouts)))
			time.Sleep(time.Until(begun.Add(at)))
			if !r.class.conflict {
				publishRetrying(fctx, t, client, r.ref, events.TypeRolloutRequested, manifest(r.ref.Name, r.class, image))
			} else {
				var both sync.WaitGroup
				for _, variant := range []string{image + "a", image + "b"} {
					both.Go(func() {
						publishRetrying(fctx, t, client, r.ref, events.TypeRolloutRequested, manifest(r.ref.Name, r.class, variant))
					})
				}
				both.Wait()
			}
			if r.class.abort {
				aborts.Go(func() {
					time.Sleep(time.Second + rand.N(5*time.Second))
					publishRetrying(ctx, t, client, r.ref, events.TypeRolloutAbort, "{}")
				})
			}
		}
	}
	aborts.Wait()
	time.Sleep(time.Until(begun.Add(sz.phase())))
	stopFaults()
	faults.Wait()
	dup.wg.Wait()
	dp.SetFaults(false)
	cleared := time.Now()
	t.Logf("faults cleared after %s", cleared.Sub(begun).Round(time.Millisecond))

	// Every rollout settles; then nothing is left in any consumer.
	// Neither wait fails the test itself: the invariants below report what
	// did not settle or drain, with the whole history.
	if err := poll.Wait("every rollout to settle", func() error {
		if n := watch.settledCount(); n != len(rollouts) {
			return fmt.Errorf("%d of %d settled", n, len(rollouts))
		}
		return nil
	}, poll.Timeout(sz.bound), poll.Every(200*time.Millisecond)); err != nil {
		t.Log(err)
	}
	h := collectHistory(ctx, t, js, expect, watch, dp, cleared, sz.bound)
	violations := invariants.Check(h)
	report(t, sz, rollouts, h, sys, dp, dup.copies.Load(), poison.counts(), nats.Restarts(), cleared, violations)
	for _, v := range violations {
		t.Error(v)
	}
}

// collectHistory is what the invariants check once the faults are over:
// it waits (up to 30 s each, without failing) for every consumer to drain
// and for the data plane to agree with the records, then reads the status
// stream, the dead letters and the state writes seen. cleared is when the
// faults cleared, bound the settle bound.
func collectHistory(ctx context.Context, t *testing.T, js jetstream.JetStream, expect map[events.Ref]invariants.Expectation, watch *states, dp *dataplane.Server, cleared time.Time, bound time.Duration) invariants.History {
	t.Helper()
	var backlogs []invariants.Backlog
	if err := poll.Wait("every consumer to drain", func() error {
		backlogs = consumerBacklogs(ctx, t, js)
		if !drained(backlogs) {
			return fmt.Errorf("backlogs %+v", backlogs)
		}
		return nil
	}, poll.Timeout(30*time.Second), poll.Every(250*time.Millisecond)); err != nil {
		t.Log(err)
	}
	awaitAgreement(t, expect, watch, dp)
	return invariants.History{
		Expect:      expect,
		Final:       watch.finals(),
		Calls:       dp.Records(),
		Status:      statusEvents(ctx, t, js),
		Writes:      watch.writes(),
		DeadLetters: deadLetters(ctx, t, js),
		Backlogs:    backlogs,
		Cleared:     cleared,
		Bound:       bound,
	}
}

// awaitAgreement waits until the data plane's last applied routing and
// replica counts are what each rollout's record says (a delayed scale-down
// may still be on its way when the rollouts settle). It does not fail the
// test: the invariants report what still disagrees.
func awaitAgreement(t *testing.T, expect map[events.Ref]invariants.Expectation, watch *states, dp *dataplane.Server) {
	if err := poll.Wait("the data plane to agree with the record", func() error {
		if d := invariants.Disagreements(invariants.History{Expect: expect, Final: watch.finals(), Calls: dp.Records()}); len(d) > 0 {
			return fmt.Errorf("%d disagree, first %s", len(d), d[0])
		}
		return nil
	}, poll.Timeout(30*time.Second), poll.Every(250*time.Millisecond)); err != nil {
		t.Log(err)
	}
}

func publish(t *testing.T, c *events.Client, r events.Ref, typ, data string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev, err := events.New("/chaos", typ, r.String(), json.RawMessage(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, events.CommandSubject(r), ev); err != nil {
		t.Fatalf("publish %s for %s: %v", typ, r, err)
	}
}

// publishRetrying publishes through NATS restarts: Publish retries until
// its context ends, and the event id makes a retried publish count once.
func publishRetrying(ctx context.Context, t *testing.T, c *events.Client, r events.Ref, typ, data string) {
	ev, err := events.New("/chaos", typ, r.String(), json.RawMessage(data))
	if err != nil {
		t.Error(err)
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := c.Publish(pctx, events.CommandSubject(r), ev); err != nil {
		t.Errorf("publish %s for %s: %v (a request the suite cannot make is not a fault of Sluice's)", typ, r, err)
	}
}

// states follows the orchestrator's state bucket: every write's version,
// and each rollout's latest state and when it first settled.
type states struct {
	mu      sync.Mutex
	ws      []invariants.StateWrite
	latest  map[events.Ref]machine.State
	settled map[events.Ref]time.Time
	want    map[events.Ref]invariants.Expectation
}

func followStates(ctx context.Context, t *testing.T, kv jetstream.KeyValue) *states {
	s := &states{latest: map[events.Ref]machine.State{}, settled: map[events.Ref]time.Time{}}
	_, err := events.WatchKV(ctx, kv, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut || orchestrator.IsRevisionPart(e.Key()) {
			return
		}
		// The state without its revision part (spec, templates), which
		// the checks here do not need.
		st, err := orchestrator.DecodeState(e.Value())
		if err != nil {
			t.Errorf("state of %s unreadable: %v", e.Key(), err)
			return
		}
		r := st.Ref
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ws = append(s.ws, invariants.StateWrite{Ref: r, Version: st.Version})
		s.latest[r] = st
		if w, ok := s.want[r]; ok && s.settled[r].IsZero() && isFinal(st, w) {
			s.settled[r] = time.Now()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// isFinal reports whether st is the end the expectation asks for.
func isFinal(st machine.State, w invariants.Expectation) bool {
	if st.Revision != w.Revisions || st.Phase != w.Phase {
		return false
	}
	if w.Phase == "Healthy" {
		return st.Completed && st.StableHash == st.PodHash
	}
	return st.Aborted
}

func (s *states) expect(w map[events.Ref]invariants.Expectation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = w
}

// waitLive waits up to timeout until every rollout of refs is live at its
// first revision (Healthy, completed), and fails the test naming one that
// is not.
func (s *states) waitLive(t *testing.T, refs []events.Ref, timeout time.Duration) {
	t.Helper()
	poll.Until(t, "every rollout live at its first revision", func() error {
		for _, r := range refs {
			if st, ok := s.state(r); !ok || st.Phase != "Healthy" || !st.Completed || st.Revision != 1 {
				return fmt.Errorf("%s: revision %d, phase %q", r, st.Revision, st.Phase)
			}
		}
		return nil
	}, poll.Timeout(timeout), poll.Every(100*time.Millisecond))
}

func (s *states) state(r events.Ref) (machine.State, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.latest[r]
	return st, ok
}

func (s *states) settledCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.settled)
}

func (s *states) writes() []invariants.StateWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]invariants.StateWrite(nil), s.ws...)
}

func (s *states) finals() map[events.Ref]invariants.Final {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[events.Ref]invariants.Final{}
	for r, st := range s.latest {
		f := invariants.Final{Phase: st.Phase, Revision: st.Revision, PodHash: st.PodHash, StableHash: st.StableHash, SettledAt: s.settled[r],
			Routing: st.Routing, Replicas: map[string]int32{}}
		for _, p := range st.Pods {
			if p.Replicas > 0 {
				f.Replicas[p.Hash] = p.Replicas
			}
		}
		out[r] = f
	}
	return out
}

// streamMessages returns every message stored in a stream.
func streamMessages(ctx context.Context, t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, m)
	}
	return out
}

func statusEvents(ctx context.Context, t *testing.T, js jetstream.JetStream) []invariants.StatusEvent {
	var out []invariants.StatusEvent
	for _, m := range streamMessages(ctx, t, js, events.StreamStatus) {
		ev, err := events.Decode(m.Data, m.Header)
		if err != nil {
			t.Errorf("status event %d unreadable: %v", m.Sequence, err)
			continue
		}
		var d events.StatusData
		if err := events.DecodeData(ev, &d); err != nil {
			t.Errorf("status event %s: %v", ev.ID(), err)
			continue
		}
		r, err := events.RefFromSubject(m.Subject)
		if err != nil {
			continue
		}
		se := invariants.StatusEvent{ID: ev.ID(), Type: ev.Type(), Ref: r, Time: ev.Time(), Snapshot: d.Status}
		if d.Step != nil {
			i := d.Step.Index
			se.Step = &i
		}
		out = append(out, se)
	}
	return out
}

func deadLetters(ctx context.Context, t *testing.T, js jetstream.JetStream) []invariants.DeadLetter {
	var out []invariants.DeadLetter
	for _, m := range streamMessages(ctx, t, js, events.StreamDeadLetter) {
		out = append(out, invariants.DeadLetter{
			Subject: m.Header.Get(events.HeaderDLQSubject),
			Reason:  m.Header.Get(events.HeaderDLQReason),
			Poison:  m.Header.Get(headerPoison) != "",
		})
	}
	return out
}

// consumerBacklogs lists every durable consumer's unfinished work.
func consumerBacklogs(ctx context.Context, t *testing.T, js jetstream.JetStream) []invariants.Backlog {
	var out []invariants.Backlog
	for _, name := range []string{events.StreamCommands, events.StreamTasks, events.StreamResults, orchestrator.StreamOwners} {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) && name == orchestrator.StreamOwners {
			continue // the orchestrators run without partitions
		}
		if err != nil {
			t.Fatal(err)
		}
		infos := st.ListConsumers(ctx)
		for info := range infos.Info() {
			if info.Config.Durable == "" {
				continue // the suite's own ordered consumers
			}
			out = append(out, invariants.Backlog{Stream: name, Durable: info.Name, Pending: info.NumPending, AckPending: uint64(info.NumAckPending)})
		}
		if err := infos.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func drained(bs []invariants.Backlog) bool {
	for _, b := range bs {
		if b.Pending > 0 || b.AckPending > 0 {
			return false
		}
	}
	return true
}

// report logs the run's counts and, with SLUICE_CHAOS_REPORT set, appends
// them to that file as Markdown.
func report(t *testing.T, sz size, rollouts []rollout, h invariants.History, sys *systest.System, dp *dataplane.Server,
	copies int64, poison map[string]int, restarts int, cleared time.Time, violations []invariants.Violation) {
	var b strings.Builder
	mode := "short"
	if sz == full {
		mode = "full"
	}
	fmt.Fprintf(&b, "run: %s, %s, %d rollouts (%d per class: %s), %d updates each, faults for %s\n", mode, time.Now().UTC().Format(time.RFC3339), len(rollouts), sz.perClass, classNames(), sz.waves, sz.phase())
	kills := sys.Kills()
	total := 0
	for _, k := range kills {
		total += k
	}
	fmt.Fprintf(&b, "SIGKILLs by the suite: %d (%s)\n", total, breakdown(kills))
	fc := map[string]int{}
	for _, f := range dp.Faults() {
		fc[f.Point]++
	}
	fmt.Fprintf(&b, "worker faults: %d SIGKILL before an effect, %d SIGKILL after an effect before its report, %d slow effects\n", fc["before-effect"], fc["after-effect"], fc["slow"])
	fmt.Fprintf(&b, "NATS restarts: %d; duplicated (and reordered) deliveries: %d\n", restarts, copies)
	pt := 0
	for _, n := range poison {
		pt += n
	}
	fmt.Fprintf(&b, "poison events: %d (%s)\n", pt, breakdown(poison))
	calls := map[string]int{}
	for _, c := range h.Calls {
		calls[c.Kind+" "+c.Outcome]++
	}
	fmt.Fprintf(&b, "data plane calls: %d (%s)\n", len(h.Calls), breakdown(calls))
	var last time.Time
	for _, f := range h.Final {
		if f.SettledAt.After(last) {
			last = f.SettledAt
		}
	}
	settled := "every rollout had settled before the faults cleared"
	if last.After(cleared) {
		settled = fmt.Sprintf("the last rollout settled %s after the faults cleared", last.Sub(cleared).Round(time.Millisecond))
	}
	types := map[string]int{}
	for _, ev := range h.Status {
		types[ev.Type]++
	}
	fmt.Fprintf(&b, "rollout updates completed: %d; aborted: %d\n", types[events.TypeRolloutCompleted]-len(rollouts), types[events.TypeRolloutAborted])
	fmt.Fprintf(&b, "status events: %d; state writes seen: %d; dead letters: %d; %s (bound %s)\n",
		len(h.Status), len(h.Writes), len(h.DeadLetters), settled, sz.bound)
	fmt.Fprintf(&b, "invariant violations: %d\n", len(violations))
	t.Log("\n" + b.String())
	if path := os.Getenv("SLUICE_CHAOS_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.WriteString(b.String() + "\n")
			_ = f.Close()
		}
	}
}

func classNames() string {
	names := make([]string, len(classes))
	for i, c := range classes {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// breakdown lists counts by name: "a 1, b 2".
func breakdown(counts map[string]int) string {
	parts := make([]string, 0, len(counts))
	for _, k := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}
