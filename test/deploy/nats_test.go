package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluicehq/sluice/pkg/events"
)

// envOf finds a container's environment variable.
func envOf(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// TestProductionNATSAuthMatchesTheServices: the production NATS servers
// load the generated users and permissions, take each identity's password
// from the Secret, and each service connects as an identity with that
// identity's password and inbox prefix. A drift between any two of these
// would leave a service unable to connect, or connected with rights that
// are not its own.
func TestProductionNATSAuthMatchesTheServices(t *testing.T) {
	m := render(t, "production")
	perms, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "nats", "permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	cm := m.configMaps["nats-permissions"]
	if cm == nil || cm.Data["permissions.conf"] != string(perms) {
		t.Fatal("the nats-permissions ConfigMap does not carry deploy/nats/permissions.conf")
	}
	conf := m.configMaps["nats-config"].Data["nats.conf"]
	if !strings.Contains(conf, "include ./permissions.conf") {
		t.Error("nats.conf does not include permissions.conf")
	}
	nats := m.statefulSets["nats"]
	var mounted []string
	for _, v := range nats.Spec.Template.Spec.Volumes {
		if v.Name == "config" && v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					mounted = append(mounted, src.ConfigMap.Name)
				}
			}
		}
	}
	if strings.Join(mounted, ",") != "nats-config,nats-permissions" {
		t.Errorf("the NATS config volume projects %v, want nats-config and nats-permissions", mounted)
	}

	// The server's environment has every password the file refers to, from
	// the Secret key the services use.
	server0 := nats.Spec.Template.Spec.Containers[0]
	dir := t.TempDir()
	for _, id := range events.Identities {
		name := "SLUICE_NATS_" + strings.ToUpper(id) + "_PASSWORD"
		e, ok := envOf(server0, name)
		if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "sluice-nats" || e.ValueFrom.SecretKeyRef.Key != id+"-password" {
			t.Errorf("NATS server env %s: %+v, want Secret sluice-nats key %s-password", name, e, id)
		}
		t.Setenv(name, "pw-"+id)
	}
	// nats-server accepts the file with those variables set.
	if err := os.WriteFile(filepath.Join(dir, "permissions.conf"), perms, 0o600); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(main, []byte("include ./permissions.conf\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(main)
	if err != nil {
		t.Fatalf("nats-server rejects the configuration: %v", err)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}

	for _, name := range services {
		c := m.deployments[name].Spec.Template.Spec.Containers[0]
		user, _ := envOf(c, "NATS_USER")
		id := user.Value
		u := users[id]
		if u == nil {
			t.Errorf("%s connects as %q, which the NATS server does not know", name, id)
			continue
		}
		if name == "sluice-replicas" && id != events.IdentityKube {
			t.Errorf("sluice-replicas on Kubernetes connects as %q, want %q (it publishes Rollout objects' events)", id, events.IdentityKube)
		}
		pw, _ := envOf(c, "NATS_PASSWORD")
		if pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil || pw.ValueFrom.SecretKeyRef.Key != id+"-password" {
			t.Errorf("%s NATS_PASSWORD %+v, want Secret key %s-password", name, pw, id)
		}
		prefix, _ := envOf(c, "NATS_INBOX_PREFIX")
		if prefix.Value != events.InboxPrefixOf(id) {
			t.Errorf("%s NATS_INBOX_PREFIX %q, want %q", name, prefix.Value, events.InboxPrefixOf(id))
		}
		if u.Permissions == nil || u.Permissions.Subscribe == nil || !contains(u.Permissions.Subscribe.Allow, events.InboxPrefixOf(id)+".>") {
			t.Errorf("NATS user %s may not subscribe to its inbox %s.>", id, events.InboxPrefixOf(id))
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
