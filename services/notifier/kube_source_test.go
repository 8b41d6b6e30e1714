package notifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/notifier/config"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// TestKubeSourceOnAnAPIServer follows Argo's ConfigMap and Secret on a
// real kube-apiserver, read by a client holding only the Role that
// deploy/base/notifier.yaml grants the notifier, and proves each
// configuration by delivering a rendered template to a webhook. A broken
// edit or a deleted ConfigMap keeps the configuration in use.
func TestKubeSourceOnAnAPIServer(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := t.Context()
	ns, other := cp.Namespace(t), cp.Namespace(t)

	hook := newRecordingHook(t)
	// Objects of the same names in another namespace: never read.
	applyConfig(t, cp.Client, other, hookConfig("http://127.0.0.1:1/elsewhere", "elsewhere {{.rollout.metadata.name}}"), "not-this-one")

	client := notifierClient(t, cp, ns)
	if _, err := client.CoreV1().ConfigMaps(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the notifier's account listing ConfigMaps in another namespace: got %v, want Forbidden", err)
	}

	var logs systemtest.Logs
	src, err := NewSource(SourceConfig{
		Kube: client, Namespace: ns, HTTPClient: hook.srv.Client(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), manifests: noManifests{},
	})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := src.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(setup.Senders) != 0 {
		t.Fatalf("without the ConfigMap: senders %q, want none", sortedKeys(setup.Senders))
	}
	if !strings.Contains(logs.String(), "no notifications configuration yet") {
		t.Errorf("without the ConfigMap the log does not say so:\n%s", logs.String())
	}

	var current atomic.Pointer[Setup]
	current.Store(setup)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); src.Watch(wctx, func(s *Setup) { current.Store(s) }) }()
	t.Cleanup(func() { cancel(); <-done })

	// The ConfigMap and the Secret appear: the secret is resolved.
	applyConfig(t, cp.Client, ns, hookConfig(hook.srv.URL, "v1 {{.rollout.metadata.name}}"), "token-1")
	hook.expect(t, &current, "Bearer token-1", "v1 web")

	// A template's text changes.
	applyConfig(t, cp.Client, ns, hookConfig(hook.srv.URL, "v2 {{.rollout.metadata.name}}"), "token-1")
	hook.expect(t, &current, "Bearer token-1", "v2 web")

	// The token is rotated.
	applyConfig(t, cp.Client, ns, hookConfig(hook.srv.URL, "v2 {{.rollout.metadata.name}}"), "token-2")
	hook.expect(t, &current, "Bearer token-2", "v2 web")

	// A broken edit is reported and the configuration in use stays.
	before := current.Load()
	applyConfig(t, cp.Client, ns, hookConfig(hook.srv.URL, "v3 {{.rollout.metadata.name"), "token-2")
	poll.True(t, "the broken edit reported", func() bool {
		return strings.Contains(logs.String(), "has problems; keeping the one in use")
	}, poll.Timeout(30*time.Second))
	if !strings.Contains(logs.String(), "template.deployed") {
		t.Errorf("the problem does not name the template:\n%s", logs.String())
	}
	if current.Load() != before {
		t.Fatal("a broken configuration replaced the one in use")
	}
	hook.expect(t, &current, "Bearer token-2", "v2 web")

	// A deleted ConfigMap is reported and the configuration in use stays.
	if err := cp.Client.CoreV1().ConfigMaps(ns).Delete(ctx, ConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.True(t, "the deletion reported", func() bool {
		return strings.Contains(logs.String(), "notifications configuration gone; keeping the one in use")
	}, poll.Timeout(30*time.Second))
	if current.Load() != before {
		t.Fatal("deleting the ConfigMap replaced the configuration in use")
	}
	hook.expect(t, &current, "Bearer token-2", "v2 web")

	for _, secret := range []string{"token-1", "token-2", "not-this-one"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows the secret %q:\n%s", secret, logs.String())
		}
	}
}

// noManifests reads no rollouts: these tests render templates directly.
type noManifests struct{}

func (noManifests) Manifest(context.Context, events.Ref, string) (*spec.Rollout, error) {
	return nil, errors.New("no rollouts here")
}

// hookConfig is a ConfigMap's data: the webhook service "hook" at url,
// authorised with the secret $token, and a template "deployed" posting
// body to it.
func hookConfig(url, body string) map[string]string {
	return map[string]string{
		"service.webhook.hook": fmt.Sprintf("url: %s\nheaders:\n- name: Authorization\n  value: Bearer $token\n", url),
		"template.deployed":    fmt.Sprintf("webhook:\n  hook:\n    method: POST\n    path: /deployed\n    body: %q\n", body),
	}
}

// applyConfig creates or replaces the ConfigMap with data and the Secret
// with the token, as an administrator would.
func applyConfig(t *testing.T, client kubernetes.Interface, ns string, data map[string]string, token string) {
	t.Helper()
	ctx := t.Context()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: SecretName}, Data: map[string][]byte{"token": []byte(token)}}
	if _, err := client.CoreV1().Secrets(ns).Update(ctx, secret, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ConfigMapName}, Data: data}
	if _, err := client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// recordingHook is a webhook endpoint that remembers the last request.
type recordingHook struct {
	srv        *httptest.Server
	mu         sync.Mutex
	auth, body string
}

func newRecordingHook(t *testing.T) *recordingHook {
	h := &recordingHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.auth, h.body = r.Header.Get("Authorization"), string(b)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// expect waits until the configuration in use renders the template
// "deployed" for the rollout web and delivers it with auth and body.
func (h *recordingHook) expect(t *testing.T, current *atomic.Pointer[Setup], auth, body string) {
	t.Helper()
	err := poll.Wait(fmt.Sprintf("a delivery with %q", body), func() error {
		setup := current.Load()
		snd, ok := setup.Senders["hook"]
		if !ok {
			return fmt.Errorf("no service hook (have %q)", sortedKeys(setup.Senders))
		}
		n, err := setup.Planner.(*Engine).Config.Render([]string{"deployed"},
			map[string]any{"rollout": map[string]any{"metadata": map[string]any{"name": "web"}}})
		if err != nil {
			return err
		}
		msg := notify.Message{ID: "m1", Destination: notify.Destination{Service: "hook"}, Notification: n}
		if _, err := snd.Send(t.Context(), msg); err != nil {
			return err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.auth != auth || h.body != body {
			return fmt.Errorf("delivered %q with %q", h.body, h.auth)
		}
		return nil
	}, poll.Timeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
}

// notifierClient is a client of the ServiceAccount sluice-notifier in ns,
// bound to the Role of deploy/base/notifier.yaml, as the notifier's pod
// would have.
func notifierClient(t *testing.T, cp *kubetest.ControlPlane, ns string) kubernetes.Interface {
	t.Helper()
	manifest, err := os.ReadFile("../../deploy/base/notifier.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.Role
	for _, doc := range strings.Split(string(manifest), "\n---\n") {
		var r rbacv1.Role
		if err := yaml.Unmarshal([]byte(doc), &r); err == nil && r.Kind == "Role" {
			role = &r
		}
	}
	if role == nil {
		t.Fatal("deploy/base/notifier.yaml has no Role")
	}
	return cp.AccountClient(t, ns, kubetest.Account{Name: "sluice-notifier", Rules: role.Rules, Allowed: func(ctx context.Context, c kubernetes.Interface) error {
		_, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		return err
	}})
}

// TestANotifierOnKubeSendsOnceTheConfigMapAppears runs the notifier with
// its Kubernetes configuration (what --platform kube does) on a real
// kube-apiserver and a real rollout system: before the ConfigMap exists a
// completed rollout is notified to no one; once the ConfigMap and the
// Secret appear, the next rollout's notifications reach the webhook with
// the Secret's token.
func TestANotifierOnKubeSendsOnceTheConfigMapAppears(t *testing.T) {
	cp := kubetest.Shared(t)
	ctx := t.Context()
	ns := cp.Namespace(t)
	kube := notifierClient(t, cp, ns)

	sys := systemtest.Start(t)
	rcv := &receiver{ids: map[string]int{}, auth: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)

	var logs systemtest.Logs
	client := sys.Connect()
	src, err := NewSource(SourceConfig{Kube: kube, Namespace: ns, Client: client, Getenv: func(string) string { return "" }, Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(client, Config{Config: src, Listen: "off", Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	systemtest.Run(t, svc)
	poll.True(t, "the notifier ready without its ConfigMap", svc.Ready)

	ref := events.Ref{Namespace: "prod", Name: "shop"}
	request := func(image string) { requestSubscribed(t, sys, ref, image) }

	// The first revision completes while there is no configuration: the
	// notifier takes its status events and sends nothing.
	request("shop:v1")
	statuses, err := client.JetStream().OrderedConsumer(ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.StatusSubject(ref)},
	})
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the first revision completed", func() error {
		batch, err := statuses.FetchNoWait(100)
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			if ev, err := events.Decode(m.Data(), m.Headers()); err == nil && ev.Type() == events.TypeRolloutCompleted {
				return nil
			}
		}
		return errors.New("not yet")
	}, poll.Timeout(30*time.Second))
	durable, err := client.JetStream().Consumer(ctx, events.StreamStatus, DurableStatus)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the notifier took every status event", func() error {
		info, err := durable.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("%d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	}, poll.Timeout(30*time.Second))
	if _, requests, _ := rcv.snapshot(); requests != 0 {
		t.Fatalf("%d requests without a configuration", requests)
	}

	// The ConfigMap and the Secret appear, as kubectl apply makes them.
	cmData, secretData, err := config.ParseFile([]byte(strings.Replace(notificationsYAML, "URL", srv.URL, 1)))
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: SecretName}, StringData: secretData}
	if _, err := cp.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName}, Data: cmData}
	if _, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll.True(t, "the configuration reloaded with the service hook", func() bool {
		return strings.Contains(logs.String(), "notifications configuration reloaded") && strings.Contains(logs.String(), "services=[hook]")
	}, poll.Timeout(30*time.Second))

	request("shop:v2")
	want := []string{
		"step 0 of shop (4 replicas) completed",
		"step 1 of shop (4 replicas) completed",
		"shop completed: Healthy",
	}
	rcv.expect(t, &logs, want, 30*time.Second)
}
