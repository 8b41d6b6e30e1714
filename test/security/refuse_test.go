package security

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

var prodWeb = events.Ref{Namespace: "prod", Name: "web"}

// publish publishes one event of type typ on subject as c, giving up after
// a few seconds.
func publish(t *testing.T, c *events.Client, subject, typ string) error {
	t.Helper()
	ev, err := events.New("/security-test", typ, prodWeb.String(), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = c.Publish(ctx, subject, ev)
	return err
}

// refused checks that the server refused a publish to subject (a
// JetStream API call included) by the client logging to logs. NATS tells
// the client asynchronously, so the call itself fails by timing out; the
// client's error handler logs the server's reason.
// forbiddenPublish is a publish an identity must not make: what it is, the
// stream it would land in, its subject and type.
type forbiddenPublish struct{ what, stream, subject, typ string }

// refusesEach checks that who (connected as c) is refused every publish in
// cases: the server reports a permissions violation and nothing lands in
// the stream (read as admin).
func refusesEach(t *testing.T, who string, c, admin *events.Client, logs *logBuffer, cases []forbiddenPublish) {
	t.Helper()
	for _, p := range cases {
		if err := publish(t, c, p.subject, p.typ); err == nil || !refused(t, logs, p.subject) {
			t.Errorf("%s publishing %s on %s: got %v and no permissions violation, want both", who, p.what, p.subject, err)
		}
		if n := subjectCount(t, admin, p.stream, p.subject); n != 0 {
			t.Errorf("%s from %s landed in %s: %d messages on %s", p.what, who, p.stream, n, p.subject)
		}
	}
}

func refused(t *testing.T, logs *logBuffer, subject string) bool {
	t.Helper()
	want := `permissions violation for publish to \"` + strings.ToLower(subject) + `\"`
	return poll.Wait("the server to refuse "+subject, func() error {
		if !strings.Contains(strings.ToLower(logs.String()), want) {
			return errors.New("no permissions violation logged")
		}
		return nil
	}, poll.Timeout(patience)) == nil
}

func TestTrafficIsRefusedOutsideItsSubjects(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	logs := &logBuffer{}
	admin := connect(t, url, adminUser, logs.logger("admin"))
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := admin.Provision(ctx, events.BusConfig{}); err != nil {
		t.Fatal(err)
	}
	tc := connect(t, url, events.IdentityTraffic, logs.logger("traffic"))

	if err := publish(t, tc, events.ResultSubject(tasks.ServiceTraffic, prodWeb), tasks.TypeFinished); err != nil {
		t.Fatalf("traffic cannot report a result: %v", err)
	}
	refusesEach(t, "traffic", tc, admin, logs, []forbiddenPublish{
		{"an abort command", events.StreamCommands, events.CommandSubject(prodWeb), events.TypeRolloutAbort},
		{"a promote command", events.StreamCommands, events.CommandSubject(prodWeb), events.TypeRolloutPromote},
		{"a replicas task", events.StreamTasks, events.TaskSubject(tasks.ServiceReplicas, prodWeb), tasks.TypeTriggered},
		{"an analyzer task", events.StreamTasks, events.TaskSubject(tasks.ServiceAnalyzer, prodWeb), tasks.TypeTriggered},
		{"a status event", events.StreamStatus, events.StatusSubject(prodWeb), events.TypeRolloutCompleted},
		{"a replicas report", events.StreamResults, events.ResultSubject(tasks.ServiceReplicas, prodWeb), tasks.TypeFinished},
	})

	// Nor can it read the commands, or take another service's tasks.
	for _, cc := range []events.ConsumerConfig{
		{Stream: events.StreamCommands, Durable: "traffic-snoops"},
		{Stream: events.StreamTasks, Durable: "worker-replicas"},
	} {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		sub, err := tc.Consume(cctx, cc, func(context.Context, events.Delivery, events.Event) error { return nil })
		ccancel()
		if err == nil {
			_ = sub.Stop(ctx)
			t.Errorf("traffic created consumer %s on %s", cc.Durable, cc.Stream)
		}
		if api := "$JS.API.CONSUMER.CREATE." + cc.Stream + "." + cc.Durable; !refused(t, logs, api) {
			t.Errorf("no permissions violation for %s", api)
		}
	}
}

// TestOnlyTheOrchestratorChangesStreamSettings: a service started with
// bus settings that differ from the streams' fails at start-up with a
// permissions error and leaves the streams as they are.
func TestOnlyTheOrchestratorChangesStreamSettings(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	logs := &logBuffer{}
	admin := connect(t, url, adminUser, logs.logger("admin"))
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := admin.Provision(ctx, events.BusConfig{}); err != nil {
		t.Fatal(err)
	}
	tc := connect(t, url, events.IdentityTraffic, logs.logger("traffic"))
	// Only the dead-letter stream differs, so one update is refused.
	bus := events.BusConfig{DeadLetterMaxAge: 24 * time.Hour}
	svc, err := traffic.New(tc, nopRouter{}, traffic.Config{Bus: bus, Logger: logs.logger("traffic")})
	if err != nil {
		t.Fatal(err)
	}
	// No deadline: as in production, each JetStream call has the client's
	// default timeout.
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("traffic started with bus settings it may not apply")
	}
	if err == nil || !strings.Contains(err.Error(), "update stream "+events.StreamDeadLetter) || !refused(t, logs, "$JS.API.STREAM.UPDATE."+events.StreamDeadLetter) {
		t.Fatalf("traffic with other bus settings: Run returned %v, want a refused stream update", err)
	}
	if svc.Ready() {
		t.Error("traffic is ready")
	}
	s, err := admin.JetStream().Stream(ctx, events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != 30*24*time.Hour {
		t.Errorf("%s max age is %s after traffic's start, want it unchanged (720h)", events.StreamDeadLetter, got)
	}

	oc := connect(t, url, events.IdentityOrchestrator, logs.logger("orchestrator"))
	if err := oc.Provision(ctx, bus); err != nil {
		t.Fatalf("the orchestrator cannot update the streams: %v", err)
	}
	if s, err = admin.JetStream().Stream(ctx, events.StreamDeadLetter); err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != 24*time.Hour {
		t.Errorf("%s max age is %s after the orchestrator's provisioning, want 24h", events.StreamDeadLetter, got)
	}
}

const pausedRollout = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: IMAGE}]}
  strategy:
    canary:
      steps:
      - setWeight: 50
      - pause: {}
`

// TestWithoutCommandRightsNoRolloutChanges: an identity without publish
// rights on sluice.cmd.> (the viewer) cannot start, promote or abort a
// rollout, from Go or from the CLI; the operator can.
func TestWithoutCommandRightsNoRolloutChanges(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	logs := &logBuffer{}
	startSystem(t, url, logs)
	admin := connect(t, url, adminUser, logs.logger("admin"))
	file := func(image string) string {
		p := filepath.Join(t.TempDir(), "rollout.yaml")
		if err := os.WriteFile(p, []byte(strings.Replace(pausedRollout, "IMAGE", image, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	get := func(want ...string) {
		t.Helper()
		var last string
		ok := func() bool {
			_, last = runCLI(t, url, events.IdentityViewer, "get", "prod/web")
			for _, w := range want {
				if !strings.Contains(squeeze(last), w) {
					return false
				}
			}
			return true
		}
		poll.Until(t, fmt.Sprintf("sluice get prod/web to show %q", want), func() error {
			if !ok() {
				return fmt.Errorf("it shows\n%s", last)
			}
			return nil
		}, poll.Timeout(patience), poll.Every(50*time.Millisecond))
	}
	for _, image := range []string{"web:1", "web:2"} {
		if code, out := runCLI(t, url, events.IdentityOperator, "apply", "-f", file(image)); code != 0 {
			t.Fatalf("operator: apply %s: exit %d\n%s", image, code, out)
		}
	}
	get("Revision: 2 (stable 1)", "Paused")
	commands := subjectCount(t, admin, events.StreamCommands, events.CommandSubject(prodWeb))

	viewerLogs := &logBuffer{}
	viewer := connect(t, url, events.IdentityViewer, viewerLogs.logger("viewer"))
	for _, typ := range []string{events.TypeRolloutRequested, events.TypeRolloutPromote, events.TypeRolloutAbort} {
		if err := publish(t, viewer, events.CommandSubject(prodWeb), typ); err == nil {
			t.Errorf("the viewer published %s", typ)
		}
	}
	if !refused(t, viewerLogs, events.CommandSubject(prodWeb)) {
		t.Errorf("no permissions violation reported to the viewer:\n%s", viewerLogs.String())
	}
	// Nor can it take commands from the orchestrator's consumer (they would
	// wait for redelivery, and after MaxDeliver be dead-lettered).
	next := "$JS.API.CONSUMER.MSG.NEXT." + events.StreamCommands + "." + orchestrator.DurableCommands
	if _, err := viewer.Conn().Request(next, []byte(`{"batch":1,"expires":1000000000}`), 2*time.Second); err == nil || !refused(t, viewerLogs, next) {
		t.Errorf("the viewer pulled from %s (error %v)", orchestrator.DurableCommands, err)
	}
	for _, args := range [][]string{{"promote", "prod/web"}, {"promote", "--full", "prod/web"}, {"abort", "prod/web"}, {"apply", "-f", file("web:3")}} {
		if code, out := runCLIWithin(t, 3*time.Second, url, events.IdentityViewer, args...); code == 0 || strings.Contains(out, "sent") {
			t.Errorf("viewer: sluice %v: exit %d\n%s", args, code, out)
		}
	}
	if n := subjectCount(t, admin, events.StreamCommands, events.CommandSubject(prodWeb)); n != commands {
		t.Errorf("%d commands stored for prod/web after the viewer's attempts, want %d", n, commands)
	}
	get("Revision: 2 (stable 1)", "Paused")

	// The operator may; a chatops bot with the viewer's rights sees it.
	seen := make(chan string, 64)
	bot, err := viewer.Consume(context.Background(), events.ConsumerConfig{Stream: events.StreamStatus, Durable: "chatops", DeliverNew: true}, func(_ context.Context, _ events.Delivery, ev events.Event) error {
		seen <- ev.Type()
		return nil
	})
	if err != nil {
		t.Fatalf("viewer: a durable status consumer: %v", err)
	}
	defer func() { _ = bot.Stop(context.Background()) }()
	if code, out := runCLI(t, url, events.IdentityOperator, "promote", "prod/web"); code != 0 || !strings.Contains(out, "prod/web: promote done: resumed") {
		t.Fatalf("operator: promote: exit %d\n%s", code, out)
	}
	get("Revision: 2 (stable 2)", "Healthy")
	timeout := time.After(patience)
	for typ := ""; typ != events.TypeRolloutCompleted; {
		select {
		case typ = <-seen:
		case <-timeout:
			t.Fatal("the viewer's bot did not see the rollout complete")
		}
	}
	for _, l := range strings.Split(viewerLogs.String(), "\n") {
		if strings.Contains(strings.ToLower(l), "permissions violation") && !strings.Contains(l, events.CommandSubject(prodWeb)) && !strings.Contains(l, next) {
			t.Errorf("the viewer's bot was refused something it needs: %s", l)
		}
	}
}

// TestLocalPlatformBuckets: on the local platform the replicas service
// publishes ready processes in sluice-endpoints and the traffic service's
// proxy reads them and keeps its routes in sluice-local-routes; traffic
// cannot write the endpoints.
func TestLocalPlatformBuckets(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	logs := &logBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	rc := connect(t, url, events.IdentityReplicas, logs.logger("replicas"))
	if err := rc.Provision(ctx, events.BusConfig{}); err != nil {
		t.Fatalf("replicas provisions the streams: %v", err)
	}
	eps, err := endpoints.Open(ctx, rc.JetStream(), events.BusConfig{})
	if err != nil {
		t.Fatalf("replicas opens %s: %v", endpoints.Bucket, err)
	}
	if err := eps.Put(ctx, endpoints.Revision{Ref: prodWeb, Revision: 1, PodHash: "abc", Ready: []string{"127.0.0.1:1"}}); err != nil {
		t.Fatalf("replicas writes %s: %v", endpoints.Bucket, err)
	}

	tc := connect(t, url, events.IdentityTraffic, logs.logger("traffic"))
	proxy, err := localproxy.New(localproxy.Config{JetStream: tc.JetStream(), Registerer: prometheus.NewRegistry(), Logger: logs.logger("traffic")})
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Start(ctx); err != nil {
		t.Fatalf("traffic starts the local proxy: %v", err)
	}
	defer func() { _ = proxy.Close(context.Background()) }()
	routes, err := tc.JetStream().KeyValue(ctx, localproxy.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := routes.Put(ctx, "prod.web", []byte(`{}`)); err != nil {
		t.Fatalf("traffic writes %s: %v", localproxy.Bucket, err)
	}
	teps, err := tc.JetStream().KeyValue(ctx, endpoints.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := teps.Get(ctx, endpoints.Key(prodWeb, "abc")); err != nil {
		t.Fatalf("traffic reads %s: %v", endpoints.Bucket, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if _, err := teps.Put(pctx, endpoints.Key(prodWeb, "evil"), []byte(`{}`)); err == nil || !refused(t, logs, "$KV."+endpoints.Bucket+"."+endpoints.Key(prodWeb, "evil")) {
		t.Errorf("traffic wrote %s (error %v)", endpoints.Bucket, err)
	}
	violations := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(strings.ToLower(l), "permissions violation") {
			violations++
		}
	}
	if violations != 1 {
		t.Errorf("traffic or replicas was refused something it needs:\n%s", logs.String())
	}
}

// TestKubeIdentityRunsTheRolloutControllers: on Kubernetes the replicas
// service publishes Rollout objects' requested events and writes status
// back through the kube-status consumer. The kube identity may do both; the
// plain replicas identity may not publish a command.
func TestKubeIdentityRunsTheRolloutControllers(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	logs := &logBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	kc := connect(t, url, events.IdentityKube, logs.logger("kube"))
	if err := kc.Provision(ctx, events.BusConfig{}); err != nil {
		t.Fatalf("kube provisions the streams: %v", err)
	}
	if err := publish(t, kc, events.CommandSubject(prodWeb), events.TypeRolloutRequested); err != nil {
		t.Errorf("kube publishes a requested event: %v", err)
	}
	sw, err := crd.NewStatusWriter(crd.StatusWriterConfig{Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), Client: kc, Logger: logs.logger("kube")})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sw.Run(sctx) }()
	eventually(t, "the kube-status consumer running", sw.Ready)
	stop()
	if err := <-done; err != nil {
		t.Errorf("status writer under the kube identity: %v", err)
	}

	rc := connect(t, url, events.IdentityReplicas, logs.logger("replicas"))
	if err := publish(t, rc, events.CommandSubject(prodWeb), events.TypeRolloutRequested); err == nil {
		t.Error("the replicas identity published a command")
	}
}

// TestRepliesArePrivate: each identity receives replies only under its own
// inbox prefix; one connected with another identity's prefix, or none, is
// refused with a message that names the flag.
func TestRepliesArePrivate(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	for name, prefix := range map[string]string{"no prefix": "", "the operator's prefix": events.InboxPrefixOf(events.IdentityOperator)} {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		_, err := events.Connect(ctx, events.ConnConfig{URLs: []string{url}, User: events.IdentityViewer, Password: password(events.IdentityViewer), InboxPrefix: prefix},
			events.WithLogger((&logBuffer{}).logger("viewer")))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "--nats-inbox-prefix") {
			t.Errorf("viewer with %s: %v, want a refusal naming --nats-inbox-prefix", name, err)
		}
	}
	// With its own prefix the viewer works.
	connect(t, url, events.IdentityViewer, (&logBuffer{}).logger("viewer"))
}
