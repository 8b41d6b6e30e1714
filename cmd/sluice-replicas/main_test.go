package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func TestUnknownPlatformIsAUsageError(t *testing.T) {
	var stderr bytes.Buffer
	code := daemon.Run(context.Background(), spec(), []string{"--platform", "kube"}, &stderr)
	if code != daemon.ExitUsage {
		t.Errorf("exit code %d, want %d", code, daemon.ExitUsage)
	}
	if got := stderr.String(); !strings.Contains(got, `unknown platform "kube": supported platforms are local`) {
		t.Errorf("stderr %q does not name the supported platforms", got)
	}
}

func TestHelpNamesTheFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := daemon.Run(context.Background(), spec(), []string{"--help"}, &stderr); code != daemon.ExitOK {
		t.Errorf("--help: exit code %d", code)
	}
	for _, flag := range []string{"--platform", "--state-dir", "--stop-on-exit", "--scale-wait", "--nats-url", "--http-listen"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
}

func TestServesScaleTasksOnTheLocalPlatform(t *testing.T) {
	srv := eventstest.StartServer(t)
	c := eventstest.Connect(t, srv.ClientURL())
	results := make(chan events.Event, 16)
	sub, err := c.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamResults, Durable: "test"}, func(_ context.Context, ev events.Event) error {
		results <- ev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	exit := make(chan int, 1)
	go func() {
		exit <- daemon.Run(ctx, spec(), []string{"--nats-url", srv.ClientURL(), "--http-listen", "127.0.0.1:0", "--state-dir", t.TempDir(), "--stop-on-exit"}, &stderr)
	}()

	r := events.Ref{Namespace: "default", Name: "web"}
	task := tasks.Task{ID: "default/web/r1/scale/1", Attempt: 1, Kind: tasks.KindScale, Ref: r, Seq: 1, Revision: 1,
		Scale: &tasks.Scale{Revisions: []tasks.RevisionScale{{Revision: 1, PodHash: "abc", Replicas: 0}}}}
	ev, err := events.New("/test", tasks.TypeTriggered, r.String(), task)
	if err != nil {
		t.Fatal(err)
	}
	ev.SetID(task.EventID())
	if _, err := c.Publish(context.Background(), events.TaskSubject(tasks.ServiceReplicas, r), ev); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(eventstest.Wait)
	for done := false; !done; {
		select {
		case ev := <-results:
			if ev.Type() != tasks.TypeFinished {
				continue
			}
			var fin tasks.Finished
			if err := events.DecodeData(ev, &fin); err != nil {
				t.Fatal(err)
			}
			if fin.Outcome != tasks.OutcomeSucceeded {
				t.Errorf("finished %+v", fin)
			}
			done = true
		case code := <-exit:
			t.Fatalf("exited with %d: %s", code, stderr.String())
		case <-timeout:
			t.Fatalf("no finished report; stderr: %s", stderr.String())
		}
	}
	cancel()
	if code := <-exit; code != daemon.ExitOK {
		t.Errorf("exit code %d: %s", code, stderr.String())
	}
}
