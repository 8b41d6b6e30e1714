package security

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/gateway"
	"github.com/sluicehq/sluice/services/gateway/auth"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
)

// gatewayBuckets are the buckets the gateway shows and must never change.
var gatewayBuckets = []string{orchestrator.BucketRollouts, analyzer.BucketRuns, endpoints.Bucket}

// TestGatewayDoesWhatItNeedsAndNothingMore: the gateway identity starts
// the real gateway, publishes a caller's command and the refusal of a
// forbidden one, replays a rollout's history, and reads the rollouts, the
// analysis runs and the endpoints, without a single permissions violation.
// It may not publish tasks or results, write, create or reconfigure those
// buckets, or pull from the services' durable consumers.
func TestGatewayDoesWhatItNeedsAndNothingMore(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()

	// The owners' buckets, each with an entry, as the services leave them.
	admin := connect(t, url, adminUser, (&logBuffer{}).logger("admin"))
	bus := events.BusConfig{}
	var kvs []jetstream.KeyValueConfig
	for _, b := range gatewayBuckets {
		kvs = append(kvs, bus.Bucket(b, "test", 1))
	}
	if err := admin.Provision(ctx, bus, kvs...); err != nil {
		t.Fatal(err)
	}
	for _, b := range gatewayBuckets {
		kv, err := admin.JetStream().KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "prod.web", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}

	// What it needs.
	logs := &logBuffer{}
	gc := connect(t, url, events.IdentityGateway, logs.logger("gateway"))
	svc, err := gateway.New(gc, gateway.Config{
		Listen: "127.0.0.1:0",
		Auth:   auth.Config{Anonymous: auth.RoleViewer, AnonymousActor: "user:test"},
		Logger: logs.logger("gateway"),
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("gateway under its own identity: %v", err)
		}
	}()
	eventually(t, "the gateway ready", svc.Ready)
	resp, err := http.Get("http://" + svc.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /: %s", resp.Status)
	}

	if err := gc.Provision(ctx, bus); err != nil {
		t.Errorf("gateway provisions the streams: %v", err)
	}
	if err := publish(t, gc, events.CommandSubject(prodWeb), events.TypeRolloutPromote); err != nil {
		t.Errorf("gateway publishes a command: %v", err)
	}
	if err := publish(t, gc, events.StatusSubject(prodWeb), events.TypeRolloutRefused); err != nil {
		t.Errorf("gateway publishes a refusal: %v", err)
	}
	history, err := gc.History(ctx, prodWeb)
	if err != nil || len(history) != 2 {
		t.Errorf("gateway replays the history: %d events, %v; want the command and the refusal", len(history), err)
	}
	for _, b := range gatewayBuckets {
		kv, err := gc.JetStream().KeyValue(ctx, b)
		if err != nil {
			t.Errorf("gateway opens %s: %v", b, err)
			continue
		}
		if _, err := kv.Get(ctx, "prod.web"); err != nil {
			t.Errorf("gateway reads %s: %v", b, err)
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Errorf("gateway lists %s: %v", b, err)
			continue
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		if n != 1 {
			t.Errorf("gateway lists %d keys of %s, want 1", n, b)
		}
	}
	if l := logs.String(); strings.Contains(strings.ToLower(l), "permissions violation") {
		t.Fatalf("the gateway was refused something it needs:\n%s", l)
	}

	// Nothing more.
	refusesEach(t, "gateway", gc, admin, logs, []forbiddenPublish{
		{"a replicas task", events.StreamTasks, events.TaskSubject(tasks.ServiceReplicas, prodWeb), tasks.TypeTriggered},
		{"a traffic task", events.StreamTasks, events.TaskSubject(tasks.ServiceTraffic, prodWeb), tasks.TypeTriggered},
		{"an analyzer task", events.StreamTasks, events.TaskSubject(tasks.ServiceAnalyzer, prodWeb), tasks.TypeTriggered},
		{"a replicas report", events.StreamResults, events.ResultSubject(tasks.ServiceReplicas, prodWeb), tasks.TypeFinished},
		{"a timer", events.StreamResults, events.ResultSubject(orchestrator.TimerService, prodWeb), tasks.TypeFinished},
	})
	for _, b := range gatewayBuckets {
		kv, err := gc.JetStream().KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = kv.Put(pctx, "prod.evil", []byte(`{}`))
		pcancel()
		if err == nil || !refused(t, logs, "$KV."+b+".prod.evil") {
			t.Errorf("gateway wrote %s (error %v)", b, err)
		}
		pctx, pcancel = context.WithTimeout(ctx, 2*time.Second)
		_, err = gc.JetStream().CreateOrUpdateKeyValue(pctx, jetstream.KeyValueConfig{Bucket: b, History: 64})
		pcancel()
		if err == nil || !refused(t, logs, "$JS.API.STREAM.UPDATE.KV_"+b) {
			t.Errorf("gateway reconfigured %s (error %v)", b, err)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = gc.JetStream().CreateKeyValue(pctx, jetstream.KeyValueConfig{Bucket: "gateway-own"})
	pcancel()
	if err == nil || !refused(t, logs, "$JS.API.STREAM.CREATE.KV_gateway-own") {
		t.Errorf("gateway created a bucket (error %v)", err)
	}
	for _, d := range []struct{ stream, durable string }{
		{events.StreamCommands, orchestrator.DurableCommands},
		{events.StreamCommands, analyzer.DurableTemplates},
		{events.StreamStatus, crd.StatusDurable},
	} {
		next := "$JS.API.CONSUMER.MSG.NEXT." + d.stream + "." + d.durable
		if _, err := gc.Conn().Request(next, []byte(`{"batch":1,"expires":1000000000}`), 2*time.Second); err == nil || !refused(t, logs, next) {
			t.Errorf("gateway pulled from %s (error %v)", d.durable, err)
		}
	}
	// Each refusal above took a timeout: the buckets are checked on a
	// fresh deadline.
	ctx, cancel = context.WithTimeout(context.Background(), patience)
	defer cancel()
	for _, b := range gatewayBuckets {
		kv, err := admin.JetStream().KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Values() != 1 || st.History() != 1 {
			t.Errorf("%s after the gateway's attempts: %d values, history %d; want 1 and 1", b, st.Values(), st.History())
		}
	}
}
