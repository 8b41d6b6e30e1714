package chaos

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/test/chaos/invariants"
	"github.com/sluicehq/sluice/test/systest"
	"github.com/sluicehq/sluice/test/systest/dataplane"
)

// The clock skew run's timed waits, and the tolerance docs/reliability.md
// states: every service knows the bus's time within
// clock.DefaultMaxUncertainty, so a wait one replica records and another
// ends is short by at most twice that.
const (
	skewPause = 30 * time.Second
	// skewLater is how much longer the second pause is, so that the
	// replica behind is back well before it ends, however slowly the
	// test sees the first one end.
	skewLater      = 10 * time.Second
	skewInterval   = 20 * time.Second
	clockTolerance = 2 * clock.DefaultMaxUncertainty
	clockNamespace = "clock"
)

// TestClockSkewNeverEndsATimedWaitEarly runs two orchestrators and two
// analyzers whose clocks are skewed in opposite directions (by 90 s, then
// by 3 s), and hands every timed wait from the replica that recorded its
// start to the other one, which ends it: a pause recorded behind and ended
// ahead, a longer one recorded ahead and ended behind, and an analysis interval
// whose first measurement is taken behind and second ahead. By the test's
// clock (a command it sent before, an event or a request it received
// after), none may end earlier than its duration less the tolerance, and
// no step may be announced ended twice.
func TestClockSkewNeverEndsATimedWaitEarly(t *testing.T) {
	for _, skew := range []time.Duration{90 * time.Second, 3 * time.Second} {
		t.Run(fmt.Sprintf("skew %s", skew), func(t *testing.T) { clockSkewRun(t, skew) })
	}
}

// heard is a status event and when the test received it.
type heard struct {
	typ     string
	ref     events.Ref
	step    *int32 // of step.started and step.completed
	status  events.Snapshot
	arrived time.Time
}

// hearing follows the status stream live, noting when each event arrives.
type hearing struct {
	mu  sync.Mutex
	got []heard
}

func listen(ctx context.Context, t *testing.T, js jetstream.JetStream) *hearing {
	h := &hearing{}
	cons, err := js.OrderedConsumer(ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.StatusRoot + "." + clockNamespace + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		arrived := time.Now()
		ev, err := events.Decode(m.Data(), m.Headers())
		if err != nil {
			t.Errorf("status event unreadable: %v", err)
			return
		}
		var d events.StatusData
		if err := events.DecodeData(ev, &d); err != nil {
			t.Errorf("status event %s: %v", ev.ID(), err)
			return
		}
		r, err := events.RefFromSubject(m.Subject())
		if err != nil {
			t.Errorf("status event on %s: %v", m.Subject(), err)
			return
		}
		e := heard{typ: ev.Type(), ref: r, status: d.Status, arrived: arrived}
		if d.Step != nil {
			i := d.Step.Index
			e.step = &i
		}
		h.mu.Lock()
		h.got = append(h.got, e)
		h.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return h
}

// await waits for the first event that matches and returns when it
// arrived.
func (h *hearing) await(t *testing.T, what string, timeout time.Duration, match func(heard) bool) time.Time {
	t.Helper()
	var at time.Time
	poll.Until(t, what, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.got {
			if match(e) {
				at = e.arrived
				return nil
			}
		}
		return fmt.Errorf("%d status events heard, none matches", len(h.got))
	}, poll.Timeout(timeout), poll.Every(50*time.Millisecond))
	return at
}

// stepEvent matches typ for step of revision rev of r.
func stepEvent(r events.Ref, typ string, rev int64, step int32) func(heard) bool {
	return func(e heard) bool {
		return e.ref == r && e.typ == typ && e.status.Revision == rev && e.step != nil && *e.step == step
	}
}

// requests notes when each request reached the analysis's web metric.
type requests struct {
	mu sync.Mutex
	at []time.Time
}

func (q *requests) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	q.mu.Lock()
	q.at = append(q.at, time.Now())
	q.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"ok": 1}`)
}

// around returns the last request before at and the first after it.
func (q *requests) around(at time.Time) (before, after time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range q.at {
		if r.Before(at) {
			before = r
		} else if after.IsZero() {
			after = r
		}
	}
	return before, after
}

func (q *requests) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.at)
}

// skewManifest is a canary on the recording data plane whose steps are
// given as JSON.
func skewManifest(name, image, steps string) string {
	return fmt.Sprintf(`{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
  "metadata": {"name": %q, "namespace": %q},
  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": %[1]q}},
    "template": {"metadata": {"labels": {"app": %[1]q}}, "spec": {"containers": [{"name": "app", "image": %[3]q}]}},
    "strategy": {"canary": {"stableService": "stable", "canaryService": "canary", "trafficRouting": {"smi": {}},
      "scaleDownDelaySeconds": 1, "steps": %s}}}}`, name, clockNamespace, image, steps)
}

func clockSkewRun(t *testing.T, skew time.Duration) {
	logDir := t.TempDir()
	if d := os.Getenv("SLUICE_CHAOS_LOGS"); d != "" {
		logDir = filepath.Join(d, "clock-"+skew.String())
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nats := systest.StartBus(t)
	dp, err := dataplane.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	var reqs requests
	metric := httptest.NewServer(&reqs)
	t.Cleanup(metric.Close)

	// Replica 1 of each is behind the bus, replica 2 ahead; 2 starts held.
	behind, ahead := clock.EnvTestSkew+"="+(-skew).String(), clock.EnvTestSkew+"="+skew.String()
	sys := systest.Start(t, systest.Spec{
		NATS: nats.URL, DataPlane: dp.URL(), LogDir: logDir, Replicas: 2,
		Env: map[string][]string{
			"orchestrator-1": {behind}, "analyzer-1": {behind},
			"orchestrator-2": {ahead}, "analyzer-2": {ahead},
		},
		Held:         []string{"orchestrator-2", "analyzer-2"},
		Orchestrator: []string{"--task-start-timeout", "5s"},
	})
	defer func() {
		if t.Failed() {
			t.Logf("process logs (%s):\n%s", logDir, sys.LogTails(20))
		}
	}()
	orch1, orch2 := sys.Proc("orchestrator-1"), sys.Proc("orchestrator-2")
	an1, an2 := sys.Proc("analyzer-1"), sys.Proc("analyzer-2")
	ready := func(ps ...*systest.Proc) func() bool {
		return func() bool {
			for _, p := range ps {
				if !p.Ready() {
					return false
				}
			}
			return true
		}
	}
	var running []*systest.Proc
	for _, p := range sys.Procs {
		if p != orch2 && p != an2 {
			running = append(running, p)
		}
	}
	poll.True(t, "every service but the held ones ready", ready(running...), poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))
	// A binary built without the tag sluicetest would run unskewed, and
	// this test would prove nothing: each process must say it is skewed.
	skewed := func(p *systest.Proc, s time.Duration) func() error {
		return func() error {
			b, err := os.ReadFile(p.Log)
			if err != nil {
				return err
			}
			if want := "skew=" + s.String(); !strings.Contains(string(b), want) {
				return fmt.Errorf("%s's log does not say %s", p.Name, want)
			}
			return nil
		}
	}
	poll.Until(t, "orchestrator-1 skewed", skewed(orch1, -skew), poll.Timeout(10*time.Second))
	poll.Until(t, "analyzer-1 skewed", skewed(an1, -skew), poll.Timeout(10*time.Second))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := events.Connect(ctx, events.ConnConfig{URLs: []string{nats.URL}, Name: "clock-suite"}, events.WithLogger(systest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	js := client.JetStream()
	hear := listen(ctx, t, js)

	pauses := func(d time.Duration) string {
		return fmt.Sprintf(`[{"setWeight": 20}, {"pause": {}}, {"pause": {"duration": %q}}, {"setWeight": 50}]`, d)
	}
	behindAhead := events.Ref{Namespace: clockNamespace, Name: "pause-behind-ahead"}
	aheadBehind := events.Ref{Namespace: clockNamespace, Name: "pause-ahead-behind"}
	interval := events.Ref{Namespace: clockNamespace, Name: "interval"}
	publish(t, client, events.Ref{Namespace: clockNamespace, Name: "ticks"}, events.TypeAnalysisTemplateApply, fmt.Sprintf(
		`{"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "ticks", "namespace": %q},
  "spec": {"metrics": [{"name": "ticks", "interval": %q, "count": 2, "successCondition": "result == 1",
    "provider": {"web": {"url": %q, "jsonPath": "{$.ok}"}}}]}}`, clockNamespace, skewInterval, metric.URL))
	steps := map[events.Ref]string{
		behindAhead: pauses(skewPause), aheadBehind: pauses(skewPause + skewLater),
		interval: `[{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "ticks"}]}}, {"setWeight": 50}]`,
	}
	healthy := func(r events.Ref, rev int64) func(heard) bool {
		return func(e heard) bool {
			return e.ref == r && e.typ == events.TypeRolloutCompleted && e.status.Revision == rev
		}
	}
	for r, s := range steps {
		publish(t, client, r, events.TypeRolloutRequested, skewManifest(r.Name, "app:v1", s))
	}
	for r := range steps {
		hear.await(t, r.Name+" live at revision 1", time.Minute, healthy(r, 1))
	}

	// Behind records: orchestrator-1 alone starts the first timed pause,
	// then analyzer-1 alone takes the first measurement, so that the swap
	// comes well before the second one is due.
	publish(t, client, behindAhead, events.TypeRolloutRequested, skewManifest(behindAhead.Name, "app:v2", steps[behindAhead]))
	hear.await(t, behindAhead.Name+" paused at step 1", time.Minute, stepEvent(behindAhead, events.TypeRolloutStepStarted, 2, 1))
	promoteBA := time.Now()
	publish(t, client, behindAhead, events.TypeRolloutPromote, `{}`)
	hear.await(t, behindAhead.Name+"'s timed pause started", time.Minute, stepEvent(behindAhead, events.TypeRolloutStepStarted, 2, 2))
	publish(t, client, interval, events.TypeRolloutRequested, skewManifest(interval.Name, "app:v2", steps[interval]))
	hear.await(t, "the interval's first measurement", time.Minute, func(e heard) bool {
		return e.ref == interval && e.typ == events.TypeAnalysisMeasured && e.status.Revision == 2
	})

	// Ahead ends: the replicas behind are killed and held, those ahead
	// started.
	swapped := time.Now()
	sys.Hold(orch1)
	sys.Hold(an1)
	sys.Release(orch2)
	sys.Release(an2)
	poll.True(t, "orchestrator-2 and analyzer-2 ready", ready(orch2, an2), poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))
	poll.Until(t, "orchestrator-2 skewed", skewed(orch2, skew), poll.Timeout(10*time.Second))
	poll.Until(t, "analyzer-2 skewed", skewed(an2, skew), poll.Timeout(10*time.Second))
	t.Logf("replicas ahead ready %s after the swap", time.Since(swapped).Round(time.Millisecond))
	analyzersSwapped := swapped

	// Ahead records the second pause.
	publish(t, client, aheadBehind, events.TypeRolloutRequested, skewManifest(aheadBehind.Name, "app:v2", steps[aheadBehind]))
	hear.await(t, aheadBehind.Name+" paused at step 1", time.Minute, stepEvent(aheadBehind, events.TypeRolloutStepStarted, 2, 1))
	promoteAB := time.Now()
	publish(t, client, aheadBehind, events.TypeRolloutPromote, `{}`)
	hear.await(t, aheadBehind.Name+"'s timed pause started", time.Minute, stepEvent(aheadBehind, events.TypeRolloutStepStarted, 2, 2))

	endBA := hear.await(t, behindAhead.Name+"'s timed pause ended", skewPause+time.Minute, stepEvent(behindAhead, events.TypeRolloutStepCompleted, 2, 2))
	poll.True(t, "the interval's second measurement", func() bool { _, after := reqs.around(swapped); return !after.IsZero() },
		poll.Timeout(skewInterval+time.Minute), poll.Every(50*time.Millisecond))

	// Behind ends the second pause.
	swappedBack := time.Now()
	sys.Hold(orch2)
	sys.Release(orch1)
	// Long enough for a pause the skew makes late, so that a run
	// without the bus's clock reports the early ones rather than stop here.
	endAB := hear.await(t, aheadBehind.Name+"'s timed pause ended", skewPause+skewLater+2*skew+time.Minute, stepEvent(aheadBehind, events.TypeRolloutStepCompleted, 2, 2))
	if !endAB.After(swappedBack) {
		t.Fatalf("%s's pause ended before orchestrator-1 was back: the run did not hand it over", aheadBehind.Name)
	}
	for r := range steps {
		hear.await(t, r.Name+" live at revision 2", time.Minute, healthy(r, 2))
	}

	// The last measurement behind, the first ahead.
	first, second := reqs.around(analyzersSwapped)
	if first.IsZero() || second.IsZero() {
		t.Fatalf("%d metric requests, none before or none after the analyzers' swap: the run did not hand the interval over", reqs.count())
	}
	h := invariants.History{
		Status:    statusEvents(ctx, t, js),
		Tolerance: clockTolerance,
		Waits: []invariants.TimedWait{
			{Ref: behindAhead, What: fmt.Sprintf("pause of step 2, started %s behind, ended %[1]s ahead", skew), Want: skewPause, From: promoteBA, To: endBA},
			{Ref: aheadBehind, What: fmt.Sprintf("pause of step 2, started %s ahead, ended %[1]s behind", skew), Want: skewPause + skewLater, From: promoteAB, To: endAB},
			{Ref: interval, What: fmt.Sprintf("interval between measurements taken %s behind and %[1]s ahead", skew), Want: skewInterval, From: first, To: second},
		},
	}
	for _, w := range h.Waits {
		t.Logf("%s %s: at most %s (want %s)", w.Ref.Name, w.What, w.To.Sub(w.From).Round(time.Millisecond), w.Want)
	}
	t.Logf("%d status events, %d metric requests", len(h.Status), reqs.count())
	for _, v := range invariants.Check(h) {
		t.Error(v)
	}
}
