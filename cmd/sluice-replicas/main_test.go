package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

func TestUnknownPlatformIsAUsageError(t *testing.T) {
	var stderr bytes.Buffer
	code := daemon.Run(context.Background(), spec(), []string{"--platform", "kubernetes"}, &stderr)
	if code != daemon.ExitUsage {
		t.Errorf("exit code %d, want %d", code, daemon.ExitUsage)
	}
	if got := stderr.String(); !strings.Contains(got, `unknown platform "kubernetes": supported platforms are local, kube`) {
		t.Errorf("stderr %q does not name the supported platforms", got)
	}
}

func TestKubePlatformWithoutAClusterSaysSo(t *testing.T) {
	srv := eventstest.StartServer(t)
	var stderr bytes.Buffer
	code := daemon.Run(context.Background(), spec(), []string{"--platform", "kube", "--nats-url", srv.ClientURL(),
		"--http-listen", "127.0.0.1:0", "--kubeconfig", t.TempDir() + "/missing"}, &stderr)
	if code == daemon.ExitOK {
		t.Fatalf("started without a cluster: %s", stderr.String())
	}
	if got := stderr.String(); !strings.Contains(got, "no cluster to talk to") || !strings.Contains(got, "missing") {
		t.Errorf("stderr %q does not say the kubeconfig is missing", got)
	}
}

func TestHelpNamesTheFlags(t *testing.T) {
	var stderr bytes.Buffer
	if code := daemon.Run(context.Background(), spec(), []string{"--help"}, &stderr); code != daemon.ExitOK {
		t.Errorf("--help: exit code %d", code)
	}
	for _, flag := range []string{"--platform", "--state-dir", "--stop-on-exit", "--scale-wait", "--advertise-host", "--nats-url", "--http-listen"} {
		if !strings.Contains(stderr.String(), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
}

// running is sluice-replicas on a real bus, with the results it reports.
type running struct {
	t       *testing.T
	client  *events.Client
	results chan events.Event
	exit    chan int
	stderr  *bytes.Buffer
}

// runReplicas runs the binary's service with args added to the bus and
// state flags until the test ends, and checks it then exits cleanly.
func runReplicas(t *testing.T, args ...string) *running {
	t.Helper()
	srv := eventstest.StartServer(t)
	r := &running{t: t, client: eventstest.Connect(t, srv.ClientURL()), results: make(chan events.Event, 16), exit: make(chan int, 1), stderr: &bytes.Buffer{}}
	sub, err := r.client.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamResults, Durable: "test"}, func(_ context.Context, _ events.Delivery, ev events.Event) error {
		r.results <- ev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		r.exit <- daemon.Run(ctx, spec(), append([]string{"--nats-url", srv.ClientURL(), "--http-listen", "127.0.0.1:0", "--state-dir", t.TempDir(), "--stop-on-exit"}, args...), r.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-r.exit; code != daemon.ExitOK {
			t.Errorf("exit code %d: %s", code, r.stderr.String())
		}
		_ = sub.Stop(context.Background())
	})
	return r
}

// scale sends a scale task and returns its finished report.
func (r *running) scale(task tasks.Task) tasks.Finished {
	r.t.Helper()
	ev, err := events.New("/test", tasks.TypeTriggered, task.Ref.String(), task)
	if err != nil {
		r.t.Fatal(err)
	}
	ev.SetID(task.EventID())
	if _, err := r.client.Publish(context.Background(), events.TaskSubject(tasks.ServiceReplicas, task.Ref), ev); err != nil {
		r.t.Fatal(err)
	}
	timeout := time.After(eventstest.Wait)
	for {
		select {
		case ev := <-r.results:
			if ev.Type() != tasks.TypeFinished {
				continue
			}
			var fin tasks.Finished
			if err := events.DecodeData(ev, &fin); err != nil {
				r.t.Fatal(err)
			}
			return fin
		case code := <-r.exit:
			r.t.Fatalf("exited with %d: %s", code, r.stderr.String())
		case <-timeout:
			r.t.Fatalf("no finished report; stderr: %s", r.stderr.String())
		}
	}
}

func TestServesScaleTasksOnTheLocalPlatform(t *testing.T) {
	run := runReplicas(t)
	r := events.Ref{Namespace: "default", Name: "web"}
	fin := run.scale(tasks.Task{ID: "default/web/r1/scale/1", Attempt: 1, Kind: tasks.KindScale, Ref: r, Seq: 1, Revision: 1,
		Scale: &tasks.Scale{Revisions: []tasks.RevisionScale{{Revision: 1, PodHash: "abc", Replicas: 0}}}})
	if fin.Outcome != tasks.OutcomeSucceeded {
		t.Errorf("finished %+v", fin)
	}
}

// Docker Compose runs the proxy in another container than the processes, so
// the endpoints must name this machine, not 127.0.0.1.
func TestAdvertiseHostIsPublishedInEndpoints(t *testing.T) {
	run := runReplicas(t, "--advertise-host", "localhost")
	r := events.Ref{Namespace: "default", Name: "web"}
	// No readiness probe: the process is ready once it has started.
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Command: []string{"sleep", "60"}}}}}
	fin := run.scale(tasks.Task{ID: "default/web/r1/scale/1", Attempt: 1, Kind: tasks.KindScale, Ref: r, Seq: 1, Revision: 1,
		Scale: &tasks.Scale{Revisions: []tasks.RevisionScale{{Revision: 1, PodHash: "abc", Role: "stable", Replicas: 1, Template: tmpl}}}})
	if fin.Outcome != tasks.OutcomeSucceeded {
		t.Fatalf("finished %+v", fin)
	}
	kv, err := run.client.JetStream().KeyValue(context.Background(), endpoints.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), endpoints.Key(r, "abc"))
	if err != nil {
		t.Fatal(err)
	}
	var rev endpoints.Revision
	if err := json.Unmarshal(entry.Value(), &rev); err != nil {
		t.Fatal(err)
	}
	if len(rev.Ready) != 1 || !slices.ContainsFunc(rev.Ready, func(a string) bool { return strings.HasPrefix(a, "localhost:") }) {
		t.Errorf("ready = %q, want one localhost:<port>", rev.Ready)
	}
}
