package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
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
	sub, err := c.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamResults, Durable: "test", Workers: 1}, func(_ context.Context, _ events.Delivery, ev events.Event) error {
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
		t.Helper()
		var evs []events.Event
		poll.Until(t, fmt.Sprintf("%d results", n), func() error {
			if evs = all(); len(evs) < n {
				return fmt.Errorf("got %d", len(evs))
			}
			return nil
		})
		return evs
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

// A task is reported started only once it has run for StartedAfter: a
// quick one is reported finished only, a long one started and finished,
// and so is one accepted to be finished later, unless it is finished
// before StartedAfter.
//
// A long task runs until the test has seen its started report, so it is
// long by cause, not by a sleep measured against StartedAfter; a quick one
// takes milliseconds, far inside a StartedAfter that a loaded machine
// cannot reach.
func TestWorkerReportsStartedOnlyForTasksThatRunLong(t *testing.T) {
	c := setup(t)
	_, wait := results(t, c)
	var calls atomic.Int32
	release := map[int32]chan struct{}{20: make(chan struct{}), 40: make(chan struct{})}
	var w *Worker
	w, err := New(c, Config{Service: tasks.ServiceTraffic, Logger: eventstest.Quiet(), StartedAfter: 2 * time.Second,
		Consumer: events.ConsumerConfig{BackoffInitial: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, Workers: 1},
		Executors: map[string]Executor{tasks.KindRoute: func(ctx context.Context, task tasks.Task) (tasks.Finished, error) {
			weight := task.Route.CanaryWeight
			switch weight {
			case 10: // quick, after one retryable failure
				if calls.Add(1) == 1 {
					return tasks.Finished{}, errors.New("router API unavailable")
				}
			case 20: // long
				<-release[20]
			case 30, 40: // accepted, finished later: soon, or after StartedAfter
				go func() {
					if weight == 40 {
						<-release[40]
					}
					_ = w.Finish(context.Background(), task, tasks.Finished{Outcome: tasks.OutcomeSucceeded, CanaryWeight: &weight})
				}()
				return tasks.Finished{}, nil
			}
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
	var want []string
	for i, weight := range []int32{10, 20, 30, 40} {
		id := fmt.Sprintf("prod/web/r2/route/%d", i+1)
		sendTask(t, c, tasks.Task{ID: id, Attempt: 1, Kind: tasks.KindRoute, Ref: r, Seq: int64(i + 1), Route: &tasks.Route{CanaryWeight: weight}})
		if weight == 20 || weight == 40 {
			want = append(want, "started "+id)
			wait(len(want))
			close(release[weight])
		}
		want = append(want, "finished "+id)
		// One task at a time, so that the reports come in this order.
		wait(len(want))
	}
	var got []string
	for _, ev := range wait(len(want)) {
		var d struct {
			TaskID string `json:"taskId"`
		}
		if err := events.DecodeData(ev, &d); err != nil {
			t.Fatal(err)
		}
		kind := "started"
		if ev.Type() == tasks.TypeFinished {
			kind = "finished"
		}
		got = append(got, kind+" "+d.TaskID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("reports\n%v\nwant\n%v", got, want)
	}
	if calls.Load() != 2 {
		t.Errorf("executor called %d times for the quick task; a retryable error should be retried once", calls.Load())
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
