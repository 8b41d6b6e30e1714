package machine

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
)

// t0 is when every scenario starts.
var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// world runs a rollout through Next against scripted worker services and a
// fake clock, and checks the machine's invariants on every transition.
type world struct {
	t   testing.TB
	m   Machine
	st  State
	now time.Time

	// Behaviour of the workers.
	down     map[string]bool   // service that takes no task
	hang     map[string]bool   // service that takes tasks and never finishes them
	failNext map[string]int    // service whose next n tasks finish Failed
	broken   map[string]bool   // pod hash whose pods never become available
	verdicts map[string]string // run purpose or run name -> final phase; none: runs until terminated

	// What happened.
	events  []StatusEvent
	sent    []tasks.Task
	pending []tasks.Task
	stuck   []tasks.Task            // taken and never finished (broken pods, a hung worker)
	backlog map[string][]tasks.Task // sent while the service was down
	running map[string]tasks.Task   // analysis runs waiting to be terminated

	// Invariant bookkeeping.
	eventIDs   map[string]bool
	taskIDs    map[string]bool
	lastSeq    map[string]int64
	attempts   map[string]int
	abortLimit map[int64]int32 // revision -> highest canary weight a route may still carry
	workerSeq  map[string]int64
	// stored is the Stored time of the observation being checked.
	stored time.Time
}

func newWorld(t testing.TB, cfg Config) *world {
	t.Helper()
	return &world{
		t: t, m: Machine{Config: cfg}, now: t0,
		down: map[string]bool{}, hang: map[string]bool{}, failNext: map[string]int{}, broken: map[string]bool{}, verdicts: map[string]string{},
		running: map[string]tasks.Task{}, backlog: map[string][]tasks.Task{}, eventIDs: map[string]bool{}, taskIDs: map[string]bool{},
		lastSeq: map[string]int64{}, attempts: map[string]int{}, abortLimit: map[int64]int32{}, workerSeq: map[string]int64{},
	}
}

// apply runs one observation through the machine and checks invariants.
// Reports of tasks are delivered twice: the second must be ignored.
func (w *world) apply(obs Observation) []Effect {
	w.t.Helper()
	prev := w.st
	next, effs := w.next(prev, obs)
	w.stored = obs.Stored
	w.check(prev, next, effs)
	w.st = next
	w.record(effs)
	if obs.Started != nil || obs.Finished != nil || obs.Measured != nil {
		again, effs2 := w.next(next, obs)
		if len(effs2) != 0 || !reflect.DeepEqual(again, next) {
			w.t.Fatalf("a redelivered report %s changed the state or had effects %s", describeObs(obs), describeEffects(effs2))
		}
	}
	return effs
}

// ignored applies an observation that must not apply: same state, no
// effects.
func (w *world) ignored(obs Observation) {
	w.t.Helper()
	next, effs := w.next(w.st, obs)
	if len(effs) != 0 || !reflect.DeepEqual(next, w.st) {
		w.t.Fatalf("%s: want it ignored, got version %d->%d and effects %s", describeObs(obs), w.st.Version, next.Version, describeEffects(effs))
	}
}

// next runs the machine at the world's time and checks that it left the
// state it was given as it was: Next works on a copy, which shares the
// read-only Spec and analysis templates with st.
func (w *world) next(st State, obs Observation) (State, []Effect) {
	w.t.Helper()
	before := mustJSON(w.t, st)
	next, effs := w.m.Next(st, obs, w.now)
	if after := mustJSON(w.t, st); !bytes.Equal(after, before) {
		var was State
		if err := json.Unmarshal(before, &was); err != nil {
			w.t.Fatal(err)
		}
		w.t.Fatalf("%s changed the state Next was given, at %s", describeObs(obs),
			firstDifference(reflect.ValueOf(roundTrip(w.t, st)), reflect.ValueOf(was), "State"))
	}
	return next, effs
}

func (w *world) check(prev, next State, effs []Effect) {
	w.t.Helper()
	if len(effs) == 0 && next.Version == prev.Version {
		if !reflect.DeepEqual(prev, next) {
			w.t.Fatalf("state changed without a new version")
		}
	} else if next.Version != prev.Version+1 {
		w.t.Fatalf("version %d -> %d with %d effects; want +1", prev.Version, next.Version, len(effs))
	}
	b, err := json.Marshal(next)
	if err != nil {
		w.t.Fatalf("marshal state: %v", err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		w.t.Fatalf("unmarshal state: %v", err)
	}
	if !reflect.DeepEqual(back, next) {
		b2, _ := json.Marshal(back)
		w.t.Fatalf("state does not survive a JSON round trip:\n%s\n%s", b, b2)
	}
	if !next.Aborted {
		delete(w.abortLimit, next.Revision)
	}
	// A deadline deferred past a message stored before it stays due: its
	// own timer event, stored after it, fires it.
	if wake, ok := next.NextWakeup(); ok && !wake.After(w.now) && (w.stored.IsZero() || !wake.After(w.stored)) {
		w.t.Fatalf("NextWakeup %s is not after now %s: the timer would fire forever", wake, w.now)
	}
	for _, e := range effs {
		switch {
		case e.Status != nil:
			ev := e.Status
			if w.eventIDs[ev.ID] {
				w.t.Fatalf("duplicate status event id %s", ev.ID)
			}
			w.eventIDs[ev.ID] = true
			if !slices.Contains(events.StatusTypes, ev.Type) {
				w.t.Fatalf("status event of unknown type %q", ev.Type)
			}
			if ev.Data.Status.Name != next.Ref.Name || ev.Data.Status.Namespace != next.Ref.Namespace {
				w.t.Fatalf("status event %s without the rollout's snapshot", ev.Type)
			}
			if ev.Type == events.TypeRolloutAborted && next.Aborted {
				limit := int32(0)
				if c := next.canary(); c != nil && c.DynamicStableScale && next.Routing != nil {
					limit = next.Routing.CanaryWeight
				}
				w.abortLimit[ev.Data.Status.Revision] = limit
			}
		case e.Task != nil:
			tk := e.Task
			svc, err := tasks.Service(tk.Kind)
			if err != nil {
				w.t.Fatalf("task of unknown kind: %v", err)
			}
			if w.taskIDs[tk.EventID()] {
				w.t.Fatalf("task %s sent twice", tk.EventID())
			}
			w.taskIDs[tk.EventID()] = true
			if n, seen := w.attempts[tk.ID]; seen {
				if tk.Attempt != n+1 {
					w.t.Fatalf("task %s attempt %d after %d", tk.ID, tk.Attempt, n)
				}
			} else {
				if tk.Attempt != 1 || tk.Seq <= w.lastSeq[svc] {
					w.t.Fatalf("new task %s: attempt %d, seq %d after %d", tk.ID, tk.Attempt, tk.Seq, w.lastSeq[svc])
				}
				w.lastSeq[svc] = tk.Seq
			}
			w.attempts[tk.ID] = tk.Attempt
			if rt := tk.Route; rt != nil && rt.Strategy == spec.StrategyCanary {
				if limit, ok := w.abortLimit[tk.Revision]; ok && rt.CanaryHash != rt.StableHash {
					if rt.CanaryWeight > limit {
						w.t.Fatalf("route task %s after the abort of revision %d sends weight %d (at most %d)", tk.ID, tk.Revision, rt.CanaryWeight, limit)
					}
					w.abortLimit[tk.Revision] = rt.CanaryWeight
				}
			}
		}
	}
}

func (w *world) record(effs []Effect) {
	for _, e := range effs {
		if e.Status != nil {
			w.events = append(w.events, *e.Status)
		}
		if e.Task != nil {
			w.sent = append(w.sent, *e.Task)
			w.pending = append(w.pending, *e.Task)
		}
	}
}

// settle lets the workers answer every task sent so far, and the ones the
// answers lead to.
func (w *world) settle() {
	w.t.Helper()
	for i := 0; len(w.pending) > 0; i++ {
		if i > 2000 {
			w.t.Fatalf("the rollout does not settle; pending %v", w.pending)
		}
		tk := w.pending[0]
		w.pending = w.pending[1:]
		w.answer(tk)
	}
}

func (w *world) answer(tk tasks.Task) {
	w.t.Helper()
	svc, _ := tasks.Service(tk.Kind)
	if w.down[svc] {
		w.backlog[svc] = append(w.backlog[svc], tk)
		return
	}
	w.apply(Observation{Started: &tasks.Started{TaskID: tk.ID, Attempt: tk.Attempt, Kind: tk.Kind, Worker: svc + "-0", At: w.now}})
	if w.hang[svc] {
		w.stuck = append(w.stuck, tk)
		return
	}
	finished := func(f tasks.Finished) {
		f.TaskID, f.Attempt, f.Kind, f.Worker, f.At = tk.ID, tk.Attempt, tk.Kind, svc+"-0", w.now
		w.apply(Observation{Finished: &f})
	}
	if w.failNext[svc] > 0 {
		w.failNext[svc]--
		finished(tasks.Finished{Outcome: tasks.OutcomeFailed, Message: svc + " worker: quota exceeded"})
		return
	}
	if svc != tasks.ServiceAnalyzer {
		if tk.Seq < w.workerSeq[svc] {
			finished(tasks.Finished{Outcome: tasks.OutcomeStale})
			return
		}
		w.workerSeq[svc] = tk.Seq
	}
	switch tk.Kind {
	case tasks.KindScale:
		var report []tasks.RevisionStatus
		for _, rv := range tk.Scale.Revisions {
			if w.broken[rv.PodHash] && rv.Replicas > 0 {
				w.stuck = append(w.stuck, tk) // never available: the task never finishes
				return
			}
			st := tasks.RevisionStatus{Revision: rv.Revision, PodHash: rv.PodHash, Replicas: rv.Replicas, Ready: rv.Replicas, Available: rv.Replicas}
			if rv.Experiment != nil {
				st.Template = rv.Experiment.Template
			}
			report = append(report, st)
		}
		finished(tasks.Finished{Outcome: tasks.OutcomeSucceeded, Replicas: report})
	case tasks.KindRoute:
		wgt := tk.Route.CanaryWeight
		finished(tasks.Finished{Outcome: tasks.OutcomeSucceeded, CanaryWeight: &wgt})
	case tasks.KindAnalysisRun:
		a := tk.Analysis
		verdict, ok := w.verdicts[a.RunName]
		if !ok {
			verdict, ok = w.verdicts[a.Purpose]
		}
		if !ok {
			w.running[a.RunName] = tk
			return
		}
		sum := summary(a.RunName, verdict)
		running := sum
		running.Phase = string(phaseRunning)
		w.apply(Observation{Measured: &tasks.Measured{TaskID: tk.ID, RunName: a.RunName, Index: 1, Analysis: running,
			Measurement: events.Measurement{Metric: "error-rate", Phase: verdict, Value: "0.01", StartedAt: w.now, FinishedAt: w.now}}})
		finished(tasks.Finished{Outcome: tasks.OutcomeSucceeded, Analysis: &sum})
	case tasks.KindAnalysisTerminate:
		finished(tasks.Finished{Outcome: tasks.OutcomeSucceeded})
		if run, ok := w.running[tk.Analysis.RunName]; ok {
			delete(w.running, tk.Analysis.RunName)
			sum := summary(run.Analysis.RunName, string(phaseSuccessful))
			w.apply(Observation{Finished: &tasks.Finished{TaskID: run.ID, Attempt: run.Attempt, Kind: run.Kind,
				Outcome: tasks.OutcomeSucceeded, Analysis: &sum, At: w.now}})
		}
	}
}

// up brings a service back: it takes the tasks waiting for it, as a
// durable consumer does.
func (w *world) up(svc string) {
	w.down[svc] = false
	w.pending = append(w.pending, w.backlog[svc]...)
	delete(w.backlog, svc)
}

// finishRun makes the analyzer report the verdict of a running run.
func (w *world) finishRun(purpose, phase string) {
	w.t.Helper()
	for name, run := range w.running {
		if run.Analysis.Purpose != purpose {
			continue
		}
		delete(w.running, name)
		sum := summary(name, phase)
		w.apply(Observation{Finished: &tasks.Finished{TaskID: run.ID, Attempt: run.Attempt, Kind: run.Kind,
			Outcome: tasks.OutcomeSucceeded, Analysis: &sum, At: w.now}})
		w.settle()
		return
	}
	w.t.Fatalf("no %s analysis run is running", purpose)
}

func summary(name, phase string) events.AnalysisSummary {
	s := events.AnalysisSummary{Name: name, Phase: phase}
	switch spec.AnalysisPhase(phase) {
	case phaseSuccessful:
		s.Successful = 1
	case phaseFailed:
		s.Failed, s.Message = 1, `metric "error-rate" assessed Failed due to failed (1) > failureLimit (0)`
	case phaseInconclusive:
		s.Inconclusive = 1
	case phaseError:
		s.Error, s.Message = 1, "prometheus unreachable"
	}
	return s
}

// advance lets d pass: the workers answer, and every deadline on the way
// fires with a Tick at its time.
func (w *world) advance(d time.Duration) {
	w.t.Helper()
	end := w.now.Add(d)
	for i := 0; ; i++ {
		if i > 1000 {
			w.t.Fatalf("too many wakeups")
		}
		w.settle()
		wake, ok := w.st.NextWakeup()
		if !ok || wake.After(end) {
			break
		}
		w.now = wake
		w.apply(Observation{Tick: true})
	}
	w.now = end
}

func (w *world) request(ro *spec.Rollout) {
	w.t.Helper()
	w.apply(Observation{Request: ro})
}

func (w *world) command(kind string) {
	w.t.Helper()
	w.apply(Observation{Command: &Command{Kind: kind}})
}

// snap is the rollout's status now.
func (w *world) snap() events.Snapshot { return w.st.Snapshot(w.now) }

// mark returns a position in the event log for since.
func (w *world) mark() int { return len(w.events) }

// since returns the types of the events published after mark, without the
// io.sluice. prefix and .v1 suffix.
func (w *world) since(mark int) []string {
	var out []string
	for _, e := range w.events[mark:] {
		out = append(out, shortType(e.Type))
	}
	return out
}

func shortType(t string) string {
	return strings.TrimSuffix(strings.TrimPrefix(t, "io.sluice."), ".v1")
}

// lastEvent returns the last event of type typ (short form).
func (w *world) lastEvent(typ string) StatusEvent {
	w.t.Helper()
	for i := len(w.events) - 1; i >= 0; i-- {
		if shortType(w.events[i].Type) == typ {
			return w.events[i]
		}
	}
	w.t.Fatalf("no %s event", typ)
	return StatusEvent{}
}

// pods returns the replicas asked of every revision, by revision number.
func (w *world) pods() map[int64]int32 {
	out := map[int64]int32{}
	for _, p := range w.st.Pods {
		out[p.Revision] = p.Replicas
	}
	return out
}

// lastRoute is the routing table of the last route task sent.
func (w *world) lastRoute() tasks.Route {
	w.t.Helper()
	for i := len(w.sent) - 1; i >= 0; i-- {
		if w.sent[i].Route != nil {
			return *w.sent[i].Route
		}
	}
	w.t.Fatalf("no route task sent")
	return tasks.Route{}
}

// sentSince returns the tasks sent after task index mark.
func (w *world) sentSince(mark int) []tasks.Task { return w.sent[mark:] }

func (w *world) expectPhase(phase string) {
	w.t.Helper()
	if w.st.Phase != phase {
		w.t.Fatalf("phase %s (%s), want %s", w.st.Phase, w.st.Message, phase)
	}
}

func (w *world) expectPods(want map[int64]int32) {
	w.t.Helper()
	if got := w.pods(); !reflect.DeepEqual(got, want) {
		w.t.Fatalf("pods by revision %v, want %v", got, want)
	}
}

func (w *world) expectWeight(want int32) {
	w.t.Helper()
	if got := w.snap().CanaryWeight; got != want {
		w.t.Fatalf("canary weight %d%%, want %d%%", got, want)
	}
}

func (w *world) expectStep(want int32) {
	w.t.Helper()
	if w.st.Step != want {
		w.t.Fatalf("step %d, want %d", w.st.Step, want)
	}
}

func (w *world) expectEvents(mark int, want ...string) {
	w.t.Helper()
	if got := w.since(mark); !slices.Equal(got, want) {
		w.t.Fatalf("events %v, want %v", got, want)
	}
}

func (w *world) expectContains(mark int, want ...string) {
	w.t.Helper()
	got := w.since(mark)
	for _, typ := range want {
		if !slices.Contains(got, typ) {
			w.t.Fatalf("events %v lack %s", got, typ)
		}
	}
}

func describeObs(o Observation) string {
	b, _ := json.Marshal(o)
	if len(b) > 300 {
		b = append(b[:300], "..."...)
	}
	return string(b)
}

func describeEffects(effs []Effect) string {
	var parts []string
	for _, e := range effs {
		switch {
		case e.Task != nil:
			parts = append(parts, "task "+e.Task.EventID())
		case e.Status != nil:
			parts = append(parts, shortType(e.Status.Type))
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Rollout builders.

func podTemplate(image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "web",
			Image: image,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

func rollout(replicas int32, image string) *spec.Rollout {
	return &spec.Rollout{
		TypeMeta:   metav1.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindRollout},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: spec.RolloutSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate(image),
		},
	}
}

// basicCanary is a canary without traffic routing.
func basicCanary(replicas int32, surge, unavailable intstr.IntOrString, steps ...spec.CanaryStep) *spec.Rollout {
	ro := rollout(replicas, "web:1")
	ro.Spec.Strategy.Canary = &spec.CanaryStrategy{MaxSurge: &surge, MaxUnavailable: &unavailable, Steps: steps}
	return ro
}

// nginxCanary is a canary routed by NGINX.
func nginxCanary(replicas int32, steps ...spec.CanaryStep) *spec.Rollout {
	ro := rollout(replicas, "web:1")
	ro.Spec.Strategy.Canary = &spec.CanaryStrategy{
		CanaryService: "web-canary", StableService: "web-stable",
		TrafficRouting: &spec.TrafficRouting{Nginx: &spec.NginxTrafficRouting{StableIngress: "web"}},
		Steps:          steps,
	}
	return ro
}

// istioCanary is a canary routed by Istio, which supports header and
// mirror routes.
func istioCanary(replicas int32, steps ...spec.CanaryStep) *spec.Rollout {
	ro := rollout(replicas, "web:1")
	ro.Spec.Strategy.Canary = &spec.CanaryStrategy{
		CanaryService: "web-canary", StableService: "web-stable",
		TrafficRouting: &spec.TrafficRouting{
			Istio:         &spec.IstioTrafficRouting{VirtualService: &spec.IstioVirtualService{Name: "web", Routes: []string{"primary"}}},
			ManagedRoutes: []spec.ManagedRoute{{Name: "header"}, {Name: "mirror"}},
		},
		Steps: steps,
	}
	return ro
}

func blueGreen(replicas int32, b spec.BlueGreenStrategy) *spec.Rollout {
	ro := rollout(replicas, "web:1")
	b.ActiveService, b.PreviewService = "web-active", "web-preview"
	ro.Spec.Strategy.BlueGreen = &b
	return ro
}

// image returns a copy of ro running image.
func image(ro *spec.Rollout, img string) *spec.Rollout {
	b, _ := json.Marshal(ro)
	var out spec.Rollout
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	out.Spec.Template.Spec.Containers[0].Image = img
	return &out
}

func hashOf(img string) string { return PodTemplateHash(podTemplate(img)) }

func ptr[T any](v T) *T { return &v }

func setWeight(w int32) spec.CanaryStep { return spec.CanaryStep{SetWeight: &w} }

func pauseFor(seconds int) spec.CanaryStep {
	d := intstr.FromInt32(int32(seconds))
	return spec.CanaryStep{Pause: &spec.RolloutPause{Duration: &d}}
}

func pauseIndefinitely() spec.CanaryStep { return spec.CanaryStep{Pause: &spec.RolloutPause{}} }

func analysisRef(template string) *spec.RolloutAnalysis {
	return &spec.RolloutAnalysis{
		Templates: []spec.AnalysisTemplateRef{{TemplateName: template}},
		Args: []spec.AnalysisRunArgument{
			{Name: "canary-hash", ValueFrom: &spec.ArgumentValueFrom{PodTemplateHashValue: ptr(spec.Latest)}},
			{Name: "service", Value: "web"},
		},
	}
}

func analysisStep(template string) spec.CanaryStep {
	return spec.CanaryStep{Analysis: analysisRef(template)}
}

func TestMain(m *testing.M) {
	recoverPanics = false
	os.Exit(m.Run())
}

func intStr(n int32) intstr.IntOrString { return intstr.FromInt32(n) }
