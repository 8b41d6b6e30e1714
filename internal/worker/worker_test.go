package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func setup(t *testing.T) *events.Client {
	return eventstest.Connect(t, eventstest.StartServer(t).ClientURL())
}

// results collects the worker's reports from the result stream.
func results(t *testing.T, c *events.Client) (func() []events.Event, func(n int) []events.Event) {
	var mu sync.Mutex
	var got []events.Event
	sub, err := c.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamResults, Durable: "test", Workers: 1}, func(_ context.Context, ev events.Event) error {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Stop(context.Background()) })
	all := func() []events.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]events.Event(nil), got...)
	}
	wait := func(n int) []events.Event {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if evs := all(); len(evs) >= n {
				return evs
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("got %d results, want %d", len(all()), n)
		return nil
	}
	return all, wait
}

func sendTask(t *testing.T, c *events.Client, task tasks.Task) {
	t.Helper()
	ev, err := events.New("/test", tasks.TypeTriggered, task.Ref.String(), task)
	if err != nil {
		t.Fatal(err)
	}
	ev.SetID(task.EventID())
	svc, _ := tasks.Service(task.Kind)
	if _, err := c.Publish(context.Background(), events.TaskSubject(svc, task.Ref), ev); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerReportsStartedAndFinished(t *testing.T) {
	c := setup(t)
	_, wait := results(t, c)
	var calls atomic.Int32
	w, err := New(c, Config{Service: tasks.ServiceTraffic, Logger: eventstest.Quiet(),
		Consumer: events.ConsumerConfig{BackoffInitial: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond},
		Executors: map[string]Executor{tasks.KindRoute: func(ctx context.Context, task tasks.Task) (tasks.Finished, error) {
			if calls.Add(1) == 1 {
				return tasks.Finished{}, errors.New("router API unavailable")
			}
			weight := task.Route.CanaryWeight
			return tasks.Finished{Outcome: tasks.OutcomeSucceeded, CanaryWeight: &weight}, nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Stop(context.Background())
	r := events.Ref{Namespace: "prod", Name: "web"}
	sendTask(t, c, tasks.Task{ID: "prod/web/r2/route/1", Attempt: 1, Kind: tasks.KindRoute, Ref: r, Seq: 1, Route: &tasks.Route{CanaryWeight: 20}})

	evs := wait(2)
	if evs[0].Type() != tasks.TypeStarted || evs[1].Type() != tasks.TypeFinished {
		t.Fatalf("reports %s, %s", evs[0].Type(), evs[1].Type())
	}
	var fin tasks.Finished
	if err := events.DecodeData(evs[1], &fin); err != nil {
		t.Fatal(err)
	}
	if fin.TaskID != "prod/web/r2/route/1" || fin.Outcome != tasks.OutcomeSucceeded || fin.CanaryWeight == nil || *fin.CanaryWeight != 20 || fin.Worker == "" {
		t.Errorf("finished = %+v", fin)
	}
	if calls.Load() != 2 {
		t.Errorf("executor called %d times; a retryable error should be retried once here", calls.Load())
	}
}

func TestWorkerConfigErrors(t *testing.T) {
	c := setup(t)
	noop := func(context.Context, tasks.Task) (tasks.Finished, error) { return tasks.Finished{}, nil }
	if _, err := New(c, Config{Service: tasks.ServiceTraffic, Executors: map[string]Executor{tasks.KindScale: noop}}); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("scale executor on the traffic service: %v", err)
	}
	if _, err := New(c, Config{Service: tasks.ServiceTraffic}); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("no executors: %v", err)
	}
}
