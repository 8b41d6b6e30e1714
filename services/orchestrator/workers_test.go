package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
)

// fakeWorkers stands in for the replicas, traffic and analyzer services at
// the bus boundary: it takes real tasks from the real stream and answers with
// real result events, as scripted.
type fakeWorkers struct {
	t      *testing.T
	client *events.Client

	mu sync.Mutex
	// tasks records every task attempt received, in order.
	tasks []tasks.Task
	// verdicts scripts analysis runs by run name prefix; default Successful.
	verdicts map[string]string
	// background runs wait for their terminate task.
	background map[string]tasks.Task
	// skip makes a service take no task at all (it is "down").
	skip map[string]bool
}

func startFakeWorkers(t *testing.T, c *events.Client, down ...string) *fakeWorkers {
	t.Helper()
	w := &fakeWorkers{t: t, client: c, verdicts: map[string]string{}, background: map[string]tasks.Task{}, skip: map[string]bool{}}
	for _, d := range down {
		w.skip[d] = true
	}
	for _, svc := range []string{tasks.ServiceReplicas, tasks.ServiceTraffic, tasks.ServiceAnalyzer} {
		if w.skip[svc] {
			continue
		}
		sub, err := c.Consume(context.Background(), events.ConsumerConfig{
			Stream: events.StreamTasks, Durable: "fake-" + svc,
			FilterSubjects: []string{events.TaskRoot + "." + svc + ".>"},
		}, w.handle)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Stop(context.Background()) })
	}
	return w
}

func (w *fakeWorkers) setVerdict(runPrefix, phase string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.verdicts[runPrefix] = phase
}

func (w *fakeWorkers) handle(ctx context.Context, _ events.Delivery, ev events.Event) error {
	var task tasks.Task
	if err := events.DecodeData(ev, &task); err != nil {
		return err
	}
	w.mu.Lock()
	w.tasks = append(w.tasks, task)
	w.mu.Unlock()
	if err := w.publish(ctx, task.Ref, tasks.TypeStarted, fmt.Sprintf("started/%s", task.EventID()),
		tasks.Started{TaskID: task.ID, Attempt: task.Attempt, Kind: task.Kind, Worker: "fake", At: time.Now()}); err != nil {
		return err
	}
	fin := tasks.Finished{TaskID: task.ID, Attempt: task.Attempt, Kind: task.Kind, Outcome: tasks.OutcomeSucceeded, Worker: "fake", At: time.Now()}
	switch task.Kind {
	case tasks.KindScale:
		for _, r := range task.Scale.Revisions {
			fin.Replicas = append(fin.Replicas, tasks.RevisionStatus{Revision: r.Revision, PodHash: r.PodHash, Replicas: r.Replicas, Ready: r.Replicas, Available: r.Replicas})
		}
	case tasks.KindRoute:
		weight := task.Route.CanaryWeight
		fin.CanaryWeight = &weight
	case tasks.KindAnalysisRun:
		name := task.Analysis.RunName
		if task.Analysis.Purpose == "background" {
			w.mu.Lock()
			w.background[name] = task
			w.mu.Unlock()
			return nil
		}
		fin.Analysis = &events.AnalysisSummary{Name: name, Phase: w.verdict(name)}
	case tasks.KindAnalysisTerminate:
		w.mu.Lock()
		run, ok := w.background[task.Analysis.RunName]
		delete(w.background, task.Analysis.RunName)
		w.mu.Unlock()
		if ok {
			runFin := tasks.Finished{TaskID: run.ID, Attempt: run.Attempt, Kind: run.Kind, Outcome: tasks.OutcomeSucceeded, At: time.Now(),
				Analysis: &events.AnalysisSummary{Name: run.Analysis.RunName, Phase: "Successful"}}
			if err := w.publish(ctx, run.Ref, tasks.TypeFinished, "finished/"+run.EventID(), runFin); err != nil {
				return err
			}
		}
	}
	return w.publish(ctx, task.Ref, tasks.TypeFinished, "finished/"+task.EventID(), fin)
}

func (w *fakeWorkers) verdict(run string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for prefix, phase := range w.verdicts {
		if len(run) >= len(prefix) && run[:len(prefix)] == prefix {
			return phase
		}
	}
	return "Successful"
}

func (w *fakeWorkers) publish(ctx context.Context, r events.Ref, typ, id string, data any) error {
	ev, err := events.New("/test/fake-worker", typ, r.String(), data)
	if err != nil {
		return err
	}
	ev.SetID(id)
	_, err = w.client.Publish(ctx, events.ResultSubject(serviceOf(typ, data), r), ev)
	return err
}

// routeWeights lists the canary weights of route tasks for r, in order.
func (w *fakeWorkers) routeWeights(r events.Ref) []int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int32
	for _, t := range w.tasks {
		if t.Ref == r && t.Kind == tasks.KindRoute {
			out = append(out, t.Route.CanaryWeight)
		}
	}
	return out
}

// statusLog collects every status event.
type statusLog struct {
	mu  sync.Mutex
	evs map[events.Ref][]statusEntry
	ch  chan statusEntry
}

type statusEntry struct {
	Type string
	ID   string
	Data events.StatusData
	At   time.Time
	// Time is the event's time: when the orchestrator decided on it.
	Time time.Time
	// The contract's extensions.
	Causation, Actor, Correlation string
}

func watchStatus(t *testing.T, c *events.Client) *statusLog {
	t.Helper()
	l := &statusLog{evs: map[events.Ref][]statusEntry{}, ch: make(chan statusEntry, 10000)}
	sub, err := c.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamStatus, Durable: "test-status", Workers: 1}, func(ctx context.Context, _ events.Delivery, ev events.Event) error {
		var d events.StatusData
		if err := events.DecodeData(ev, &d); err != nil {
			return err
		}
		r, err := events.ParseRef(ev.Subject())
		if err != nil {
			return events.Permanent(err)
		}
		e := statusEntry{Type: ev.Type(), ID: ev.ID(), Data: d, At: time.Now(), Time: ev.Time(),
			Causation: events.Extension(ev, events.ExtCausationID), Actor: events.Extension(ev, events.ExtActor),
			Correlation: events.Extension(ev, events.ExtCorrelationID)}
		l.mu.Lock()
		l.evs[r] = append(l.evs[r], e)
		l.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Stop(context.Background()) })
	return l
}

func (l *statusLog) of(r events.Ref) []statusEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]statusEntry(nil), l.evs[r]...)
}

// waitFor waits until r has an event of type typ and returns the first.
func (l *statusLog) waitFor(t *testing.T, r events.Ref, typ string) statusEntry {
	t.Helper()
	var found statusEntry
	poll.Until(t, fmt.Sprintf("a %s event of %s", typ, r), func() error {
		var seen []string
		for _, e := range l.of(r) {
			if e.Type == typ {
				found = e
				return nil
			}
			seen = append(seen, e.Type+" "+e.Data.Status.Phase+" "+e.Data.Status.Message+" "+e.Data.Reason)
		}
		return fmt.Errorf("saw %q", seen)
	})
	return found
}

// serviceOf is the worker service a fake report speaks for: the one that
// carries out its task's kind.
func serviceOf(typ string, data any) string {
	kind := ""
	switch d := data.(type) {
	case tasks.Started:
		kind = d.Kind
	case tasks.Finished:
		kind = d.Kind
	case tasks.Measured:
		return tasks.ServiceAnalyzer
	}
	svc, err := tasks.Service(kind)
	if err != nil {
		panic(fmt.Sprintf("fake worker: %s report of unknown kind %q", typ, kind))
	}
	return svc
}
