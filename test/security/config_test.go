package security

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/tasks"
	"github.com/sluicehq/sluice/internal/worker"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/notifier"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

var update = flag.Bool("update", false, "rewrite deploy/nats/permissions.conf from assembly.NATSConfig")

const confPath = "../../deploy/nats/permissions.conf"

// TestDeployConfigMatchesTheDefinition: deploy/nats/permissions.conf is
// what assembly.PermissionsOf defines, and nats-server reads it so.
func TestDeployConfigMatchesTheDefinition(t *testing.T) {
	want, err := assembly.NATSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(confPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date: run go test ./test/security -run TestDeployConfig -update", confPath)
	}

	// nats-server itself reads it, included as the comment says, with the
	// passwords from the environment.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "permissions.conf"), got, 0o600); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(main, []byte(fmt.Sprintf("jetstream { store_dir: %q }\ninclude ./permissions.conf\n", t.TempDir())), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range events.Identities {
		t.Setenv(assembly.PasswordEnv(id), password(id))
	}
	opts, err := server.ProcessConfigFile(main)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	for _, id := range events.Identities {
		u := users[id]
		if u == nil {
			t.Errorf("no user %s", id)
			continue
		}
		if u.Password != password(id) {
			t.Errorf("user %s: password not taken from %s", id, assembly.PasswordEnv(id))
		}
		p, _ := assembly.PermissionsOf(id)
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil ||
			!slices.Equal(u.Permissions.Publish.Allow, p.Publish) || !slices.Equal(u.Permissions.Publish.Deny, p.DenyPublish) ||
			!slices.Equal(u.Permissions.Subscribe.Allow, p.Subscribe) || len(u.Permissions.Subscribe.Deny) > 0 {
			t.Errorf("user %s: the server reads permissions %+v, want %+v", id, u.Permissions, p)
		}
	}
	if len(opts.Users) != len(events.Identities) {
		t.Errorf("%d users, want %d", len(opts.Users), len(events.Identities))
	}
}

// TestPermissionsNameTheServicesConsumersAndBuckets: the permissions derive from
// the services' declared needs; they name the services' consumers and buckets.
func TestPermissionsNameTheServicesConsumersAndBuckets(t *testing.T) {
	has := func(id, subject string) {
		t.Helper()
		p, _ := assembly.PermissionsOf(id)
		if !slices.Contains(p.Publish, subject) {
			t.Errorf("%s may not publish %s", id, subject)
		}
	}
	consumer := func(id, stream, durable string) {
		t.Helper()
		has(id, "$JS.API.CONSUMER.CREATE."+stream+"."+durable)
		has(id, "$JS.API.CONSUMER.MSG.NEXT."+stream+"."+durable)
		has(id, "$JS.ACK."+stream+"."+durable+".>")
	}
	bucket := func(id, name string) {
		t.Helper()
		has(id, "$JS.API.STREAM.UPDATE.KV_"+name)
		has(id, "$KV."+name+".>")
	}
	consumer(events.IdentityOrchestrator, events.StreamCommands, orchestrator.DurableCommands)
	consumer(events.IdentityOrchestrator, events.StreamResults, orchestrator.DurableResults)
	bucket(events.IdentityOrchestrator, orchestrator.BucketRollouts)
	consumer(events.IdentityAnalyzer, events.StreamCommands, analyzer.DurableTemplates)
	consumer(events.IdentityAnalyzer, events.StreamTasks, worker.Durable(tasks.ServiceAnalyzer))
	bucket(events.IdentityAnalyzer, analyzer.BucketTemplates)
	bucket(events.IdentityAnalyzer, analyzer.BucketRuns)
	consumer(events.IdentityReplicas, events.StreamTasks, worker.Durable(tasks.ServiceReplicas))
	bucket(events.IdentityReplicas, replicas.BucketPending)
	bucket(events.IdentityReplicas, endpoints.Bucket)
	consumer(events.IdentityKube, events.StreamTasks, worker.Durable(tasks.ServiceReplicas))
	consumer(events.IdentityKube, events.StreamStatus, crd.StatusDurable)
	consumer(events.IdentityKube, events.StreamStatus, crd.AnalysisRunsDurable)
	has(events.IdentityKube, "$JS.API.DIRECT.GET.KV_"+analyzer.BucketRuns+".>")
	bucket(events.IdentityKube, replicas.BucketPending)
	consumer(events.IdentityTraffic, events.StreamTasks, worker.Durable(tasks.ServiceTraffic))
	bucket(events.IdentityTraffic, localproxy.Bucket)
	has(events.IdentityTraffic, "$JS.API.DIRECT.GET.KV_"+endpoints.Bucket+".>")
	consumer(events.IdentityNotifier, events.StreamStatus, notifier.DurableStatus)
	consumer(events.IdentityNotifier, events.StreamStatus, notifier.DurableCDEvents)
	consumer(events.IdentityNotifier, events.StreamTasks, notifier.DurableDelivery)
	bucket(events.IdentityNotifier, notifier.BucketState)
	has(events.IdentityNotifier, "$JS.API.DIRECT.GET.KV_"+orchestrator.BucketRollouts+".>")

	// Publish rights on Sluice's own subjects, exactly.
	own := map[string][]string{
		events.IdentityOrchestrator: {"sluice.result.orchestrator.>", "sluice.status.>", "sluice.task.analyzer.>", "sluice.task.replicas.>", "sluice.task.traffic.>"},
		events.IdentityAnalyzer:     {"sluice.result.analyzer.>"},
		events.IdentityReplicas:     {"sluice.result.replicas.>"},
		events.IdentityKube:         {"sluice.cmd.>", "sluice.result.replicas.>", "sluice.task.analyzer.>"},
		events.IdentityTraffic:      {"sluice.result.traffic.>"},
		events.IdentityGateway:      {"sluice.cmd.>", "sluice.status.>"},
		events.IdentityNotifier:     {"sluice.cmd.>", "sluice.status.>", "sluice.task.notifier.>"},
		events.IdentityOperator:     {"sluice.cmd.>"},
		events.IdentityViewer:       nil,
	}
	for _, id := range events.Identities {
		p, ok := assembly.PermissionsOf(id)
		if !ok {
			t.Fatalf("no permissions for %s", id)
		}
		var got []string
		for _, s := range p.Publish {
			if strings.HasPrefix(s, "sluice.") && !strings.HasPrefix(s, events.DeadLetterRoot+".") {
				got = append(got, s)
			}
		}
		if !slices.Equal(got, own[id]) {
			t.Errorf("%s publishes %v, want %v", id, got, own[id])
		}
		for _, s := range append(p.Publish, p.Subscribe...) {
			if s == ">" || s == "$JS.API.>" || s == "sluice.>" {
				t.Errorf("%s has the catch-all %q", id, s)
			}
		}
	}
	if _, ok := assembly.PermissionsOf("nobody"); ok {
		t.Error("an unknown identity has permissions")
	}
}
