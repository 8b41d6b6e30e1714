package replicas_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/internal/clock"
	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/local"
)

var web = events.Ref{Namespace: "prod", Name: "web"}

// TestMain runs the test binary as the app of the end-to-end test (serving
// /healthz on $PORT) when the backend starts it with SLUICE_REPLICAS_HELPER=1.
func TestMain(m *testing.M) {
	if os.Getenv("SLUICE_REPLICAS_HELPER") == "1" {
		helperApp()
	}
	os.Exit(m.Run())
}

func helperApp() {
	ppid := os.Getppid()
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			if os.Getppid() != ppid {
				os.Exit(9) // the test binary died
			}
		}
	}()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	fmt.Println(http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil))
	os.Exit(1)
}

// bus is a server, a client and the results the service reported.
type bus struct {
	client *events.Client
	mu     sync.Mutex
	got    []events.Event
}

func newBus(t *testing.T) *bus {
	b := &bus{client: eventstest.Connect(t, eventstest.StartServer(t).ClientURL())}
	sub, err := b.client.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamResults, Durable: "test", Workers: 1}, func(_ context.Context, _ events.Delivery, ev events.Event) error {
		b.mu.Lock()
		b.got = append(b.got, ev)
		b.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Stop(context.Background()) })
	return b
}

func (b *bus) send(t *testing.T, task tasks.Task) {
	t.Helper()
	ev, err := events.New("/test", tasks.TypeTriggered, task.Ref.String(), task)
	if err != nil {
		t.Fatal(err)
	}
	ev.SetID(task.EventID())
	if _, err := b.client.Publish(context.Background(), events.TaskSubject(tasks.ServiceReplicas, task.Ref), ev); err != nil {
		t.Fatal(err)
	}
}

// finished waits for the finished report of a task's attempt.
func (b *bus) finished(t *testing.T, id string, attempt int) tasks.Finished {
	t.Helper()
	var fin tasks.Finished
	poll.True(t, fmt.Sprintf("the finished report for %s#%d", id, attempt), func() bool {
		var ok bool
		fin, ok = b.find(t, id, attempt)
		return ok
	}, poll.Timeout(eventstest.Wait))
	return fin
}

func (b *bus) find(t *testing.T, id string, attempt int) (tasks.Finished, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range b.got {
		if ev.Type() != tasks.TypeFinished {
			continue
		}
		var fin tasks.Finished
		if err := events.DecodeData(ev, &fin); err != nil {
			t.Fatal(err)
		}
		if fin.TaskID == id && fin.Attempt == attempt {
			return fin, true
		}
	}
	return tasks.Finished{}, false
}

func (b *bus) count(typ string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, ev := range b.got {
		if ev.Type() == typ {
			n++
		}
	}
	return n
}

// run starts a service on backend until the test ends or stop is called.
func run(t *testing.T, c *events.Client, backend replicas.Backend, cfg replicas.Config) (stop func()) {
	t.Helper()
	cfg.Logger = eventstest.Quiet()
	if cfg.StartedAfter == 0 {
		// These tests count started reports to count deliveries.
		cfg.StartedAfter = -1
	}
	svc, err := replicas.New(c, backend, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	poll.True(t, "the replicas service to be ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("service stopped: %v", err)
		default:
		}
		return svc.Ready()
	}, poll.Timeout(eventstest.Wait))
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func scaleTask(id string, seq int64, replicas int32, tmpl corev1.PodTemplateSpec) tasks.Task {
	return tasks.Task{ID: id, Attempt: 1, Kind: tasks.KindScale, Ref: web, Seq: seq, Revision: 1,
		Scale: &tasks.Scale{Revisions: []tasks.RevisionScale{{Revision: 1, PodHash: "abc", Role: spec.RoleStable, Replicas: replicas, Template: tmpl}}}}
}

func TestScaleTaskRunsProcessesAndReportsCounts(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	backend, err := local.New(local.Config{StateDir: t.TempDir(), JetStream: b.client.JetStream(), Logger: eventstest.Quiet(), StopOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	run(t, b.client, backend, replicas.Config{})
	grace := int64(5)
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name:           "app",
			Command:        []string{os.Args[0], "-test.run=^$"},
			Env:            []corev1.EnvVar{{Name: "SLUICE_REPLICAS_HELPER", Value: "1"}},
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 1},
		}},
	}}

	b.send(t, scaleTask("prod/web/r1/scale/1", 1, 2, tmpl))
	fin := b.finished(t, "prod/web/r1/scale/1", 1)
	want := tasks.RevisionStatus{Revision: 1, PodHash: "abc", Replicas: 2, Ready: 2, Available: 2}
	if fin.Outcome != tasks.OutcomeSucceeded || len(fin.Replicas) != 1 || fin.Replicas[0] != want || fin.Worker == "" {
		t.Fatalf("finished %+v, want Succeeded with %+v", fin, want)
	}
	if n := b.count(tasks.TypeStarted); n != 1 {
		t.Errorf("%d started reports", n)
	}
	kv, err := b.client.JetStream().KeyValue(context.Background(), endpoints.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(context.Background(), endpoints.Key(web, "abc")); err != nil {
		t.Errorf("endpoints entry: %v", err)
	} else if string(e.Value()) == "" {
		t.Error("empty endpoints entry")
	}

	b.send(t, scaleTask("prod/web/r1/scale/2", 2, 0, tmpl))
	fin = b.finished(t, "prod/web/r1/scale/2", 1)
	if fin.Outcome != tasks.OutcomeSucceeded || fin.Replicas[0] != (tasks.RevisionStatus{Revision: 1, PodHash: "abc"}) {
		t.Errorf("scale to 0: %+v", fin)
	}
	// A task below the applied seq is Stale.
	late := scaleTask("prod/web/r1/scale/1", 1, 2, tmpl)
	late.Attempt = 2
	b.send(t, late)
	if fin := b.finished(t, "prod/web/r1/scale/1", 2); fin.Outcome != tasks.OutcomeStale {
		t.Errorf("late task: %+v", fin)
	}
}

// fake is a Backend whose Apply the test scripts.
type fake struct {
	apply func(ctx context.Context, seq int64) ([]tasks.RevisionStatus, error)
	calls atomic.Int32
}

func (f *fake) Start(context.Context) error { return nil }
func (f *fake) Close(context.Context) error { return nil }
func (f *fake) Apply(ctx context.Context, _ events.Ref, seq int64, _ tasks.Scale) ([]tasks.RevisionStatus, error) {
	f.calls.Add(1)
	return f.apply(ctx, seq)
}

var counts = []tasks.RevisionStatus{{Revision: 1, PodHash: "abc", Replicas: 1, Ready: 0, Available: 0}}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		apply   func(ctx context.Context, calls int32) ([]tasks.RevisionStatus, error)
		outcome string
		message string
	}{
		{
			name: "not available in time",
			apply: func(ctx context.Context, _ int32) ([]tasks.RevisionStatus, error) {
				<-ctx.Done()
				return counts, fmt.Errorf("%w: revision 1 (hash abc): 0 of 1 processes ready; last exit: exit status 1: boom", replicas.ErrUnavailable)
			},
			outcome: tasks.OutcomeFailed,
			message: "not available: revision 1 (hash abc): 0 of 1 processes ready; last exit: exit status 1: boom",
		},
		{
			name: "stale",
			apply: func(context.Context, int32) ([]tasks.RevisionStatus, error) {
				return nil, fmt.Errorf("%w: seq 1, but seq 2 was applied", tasks.ErrStale)
			},
			outcome: tasks.OutcomeStale,
			message: "stale task: seq 1, but seq 2 was applied",
		},
		{
			name: "template",
			apply: func(context.Context, int32) ([]tasks.RevisionStatus, error) {
				return nil, fmt.Errorf("%w: revision 1 (hash abc): command: required", replicas.ErrInvalidTemplate)
			},
			outcome: tasks.OutcomeFailed,
			message: "pod template cannot run on this platform: revision 1 (hash abc): command: required",
		},
		{
			name: "infrastructure error is retried",
			apply: func(_ context.Context, calls int32) ([]tasks.RevisionStatus, error) {
				if calls == 1 {
					return nil, errors.New("state directory not writable")
				}
				return counts, nil
			},
			outcome: tasks.OutcomeSucceeded,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBus(t)
			f := &fake{}
			f.apply = func(ctx context.Context, _ int64) ([]tasks.RevisionStatus, error) {
				return tc.apply(ctx, f.calls.Load())
			}
			run(t, b.client, f, replicas.Config{Wait: 500 * time.Millisecond})
			b.send(t, scaleTask("t/1", 1, 1, corev1.PodTemplateSpec{}))
			fin := b.finished(t, "t/1", 1)
			if fin.Outcome != tc.outcome || fin.Message != tc.message {
				t.Errorf("finished %s %q, want %s %q", fin.Outcome, fin.Message, tc.outcome, tc.message)
			}
		})
	}
}

func TestANewerTaskIsNotStuckBehindAWait(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	f := &fake{apply: func(ctx context.Context, seq int64) ([]tasks.RevisionStatus, error) {
		if seq == 1 {
			<-ctx.Done() // never available
			return counts, fmt.Errorf("%w: never", replicas.ErrUnavailable)
		}
		return counts, nil
	}}
	// One handler for every subject: a held delivery would block the next.
	run(t, b.client, f, replicas.Config{Tasks: events.ConsumerConfig{Workers: 1}})
	b.send(t, scaleTask("t/1", 1, 1, corev1.PodTemplateSpec{}))
	b.send(t, scaleTask("t/2", 2, 1, corev1.PodTemplateSpec{}))
	if fin := b.finished(t, "t/2", 1); fin.Outcome != tasks.OutcomeSucceeded {
		t.Errorf("newer task: %+v", fin)
	}
	if n := b.count(tasks.TypeStarted); n != 2 {
		t.Errorf("%d started reports, want 2", n)
	}
	// The wait of t/1 was replaced: its result no longer matters.
	if fin, ok := b.find(t, "t/1", 1); ok {
		t.Errorf("replaced task reported %+v", fin)
	}
}

func TestAWaitSurvivesARestart(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	blocked := make(chan struct{}, 1)
	first := &fake{apply: func(ctx context.Context, _ int64) ([]tasks.RevisionStatus, error) {
		blocked <- struct{}{}
		<-ctx.Done()
		return counts, fmt.Errorf("%w: stopping", replicas.ErrUnavailable)
	}}
	stop := run(t, b.client, first, replicas.Config{})
	b.send(t, scaleTask("t/1", 1, 1, corev1.PodTemplateSpec{}))
	<-blocked
	stop()
	if _, ok := b.find(t, "t/1", 1); ok {
		t.Fatal("a wait cut short by shutdown was reported")
	}

	second := &fake{apply: func(context.Context, int64) ([]tasks.RevisionStatus, error) { return counts, nil }}
	run(t, b.client, second, replicas.Config{})
	if fin := b.finished(t, "t/1", 1); fin.Outcome != tasks.OutcomeSucceeded {
		t.Errorf("resumed task: %+v", fin)
	}
	kv, err := b.client.JetStream().KeyValue(context.Background(), replicas.BucketPending)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the pending entry to be removed after the report", func() error {
		_, err := kv.Get(context.Background(), web.Namespace+"."+web.Name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err == nil {
			return errors.New("entry still present")
		}
		return err
	}, poll.Timeout(eventstest.Wait))
	if n := b.count(tasks.TypeStarted); n != 1 {
		t.Errorf("%d started reports: the task was delivered again", n)
	}
}

// A scale task's wait keeps the bus's time, not the host's: its deadline
// is stored by the replica that took the task and kept by whichever
// replica resumes it, and hosts' clocks disagree. Here the bus is an hour
// ahead of the host: the stored deadline must be an hour ahead of the
// host's clock, and the wait must end when the bus's time reaches it,
// neither at once nor an hour late.
func TestAScaleWaitKeepsTheBusTime(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	const ahead, wait = time.Hour, 2 * time.Second
	busNow := func() time.Time { return time.Now().Add(ahead) }
	clk := clock.NewBus(clock.BusConfig{Server: func(context.Context) (time.Time, error) { return busNow(), nil }, Logger: eventstest.Quiet()})
	f := &fake{apply: func(ctx context.Context, _ int64) ([]tasks.RevisionStatus, error) {
		<-ctx.Done()
		return counts, ctx.Err()
	}}
	run(t, b.client, f, replicas.Config{Wait: wait, Clock: clk})
	sent := busNow()
	b.send(t, scaleTask("t/1", 1, 1, corev1.PodTemplateSpec{}))

	kv, err := b.client.JetStream().KeyValue(context.Background(), replicas.BucketPending)
	if err != nil {
		t.Fatal(err)
	}
	var deadline time.Time
	poll.Until(t, "the pending entry", func() error {
		e, err := kv.Get(context.Background(), web.Namespace+"."+web.Name)
		if err != nil {
			return err
		}
		var p struct {
			Deadline time.Time `json:"deadline"`
		}
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			return err
		}
		deadline = p.Deadline
		return nil
	}, poll.Timeout(eventstest.Wait))
	if d := deadline.Sub(sent); d < wait-time.Second || d > wait+eventstest.Wait {
		t.Fatalf("stored deadline %s is %s after the task was sent by the bus's time; want about %s (the host's clock is %s behind the bus's)", deadline, d, wait, ahead)
	}
	fin := b.finished(t, "t/1", 1)
	if at := busNow(); at.Before(deadline.Add(-clock.DefaultMaxUncertainty)) {
		t.Errorf("the wait ended %s before its deadline by the bus's time", deadline.Sub(at))
	}
	if fin.Outcome != tasks.OutcomeFailed || !strings.Contains(fin.Message, "not applied within") {
		t.Errorf("finished %s %q; want Failed, not applied within %s", fin.Outcome, fin.Message, wait)
	}
}

func TestConfig(t *testing.T) {
	var cfg replicas.Config
	cfg.Defaults()
	if cfg.Wait != replicas.DefaultWait || cfg.Validate() != nil {
		t.Errorf("defaults %+v: %v", cfg, cfg.Validate())
	}
	cfg.Wait = -time.Second
	if err := cfg.Validate(); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("negative wait: %v", err)
	}
	if _, err := replicas.New(nil, nil, replicas.Config{}); !errors.Is(err, events.ErrInvalidConfig) {
		t.Errorf("no backend: %v", err)
	}
}
