package analyzer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/pkg/spec"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// analyzerAccount creates, in namespace, a ServiceAccount that may get
// Secrets there and nothing else (what deploy/base/analyzer.yaml grants,
// scoped to one namespace so tests sharing the control plane stay apart),
// and returns a client that uses its token once the authorizer lets it.
func analyzerAccount(t *testing.T, cp *kubetest.ControlPlane, namespace string) kubernetes.Interface {
	t.Helper()
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}
	return cp.AccountClient(t, namespace, kubetest.Account{Name: "sluice-analyzer", Rules: rules, Allowed: func(ctx context.Context, c kubernetes.Interface) error {
		_, err := c.CoreV1().Secrets(namespace).Get(ctx, "none", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}})
}

func createSecret(t *testing.T, cp *kubetest.ControlPlane, namespace, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}
	if _, err := cp.Client.CoreV1().Secrets(namespace).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestKubeSecretsReadTheSecretInTheRolloutsNamespace(t *testing.T) {
	cp := kubetest.Shared(t)
	ns, other := cp.Namespace(t), cp.Namespace(t)
	const value, newer = "t0ken-in-the-cluster", "r0tated-t0ken"
	createSecret(t, cp, ns, "web-creds", map[string]string{"token": value})
	createSecret(t, cp, other, "web-creds", map[string]string{"token": value})
	secrets := KubeSecrets{Client: analyzerAccount(t, cp, ns)}
	ctx := t.Context()
	ref := func(name, key string) spec.SecretKeyRef { return spec.SecretKeyRef{Name: name, Key: key} }

	got, err := secrets.Value(ctx, ns, ref("web-creds", "token"))
	if err != nil || got != value {
		t.Fatalf("Value = %q, %v; want the Secret's value", got, err)
	}

	cases := []struct {
		name      string
		namespace string
		ref       spec.SecretKeyRef
		want      error
		say       []string
	}{
		{"no such Secret", ns, ref("nope", "token"), ErrSecretNotFound, []string{ns + "/nope", `"token"`}},
		{"no such key", ns, ref("web-creds", "password"), ErrSecretNotFound, []string{ns + "/web-creds", `"password"`}},
		{"another namespace", other, ref("web-creds", "token"), ErrSecretForbidden,
			[]string{other + "/web-creds", "needs get on secrets in namespace " + other, "sluice-analyzer"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := secrets.Value(ctx, c.namespace, c.ref)
			if !errors.Is(err, c.want) || v != "" {
				t.Fatalf("Value = %q, %v; want %v", v, err, c.want)
			}
			for _, s := range c.say {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if strings.Contains(err.Error(), value) {
				t.Errorf("error %q holds the secret", err)
			}
		})
	}

	// No cache: a rotated Secret is read at the next measurement.
	s, err := cp.Client.CoreV1().Secrets(ns).Get(ctx, "web-creds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["token"] = []byte(newer)
	if _, err := cp.Client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := secrets.Value(ctx, ns, ref("web-creds", "token")); err != nil || got != newer {
		t.Fatalf("after the update Value = %q, %v; want the new value", got, err)
	}
}

// TestSecretArgumentsComeFromTheRolloutsSecretOnKube runs analyses whose
// bearer token is a secretKeyRef, read by KubeSecrets with the analyzer's
// own account: the run succeeds, a missing key is an Error measurement
// naming namespace, Secret and key, and the token is in no stored message
// (every stream, buckets included) and no log line.
func TestSecretArgumentsComeFromTheRolloutsSecretOnKube(t *testing.T) {
	cp := kubetest.Shared(t)
	ns := cp.Namespace(t)
	const token = "kube-s3cr3t-t0ken"
	createSecret(t, cp, ns, "web-creds", map[string]string{"token": token})
	client := analyzerAccount(t, cp, ns)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"ratio": 0.01, "note": "authorized with %s"}`, token)
	}))
	t.Cleanup(srv.Close)
	b := startBus(t)
	logs := &systemtest.Logs{}
	startAnalyzer(t, b, func(c *Config) {
		c.Secrets = KubeSecrets{Client: client}
		c.Logger = logs.Logger(slog.LevelDebug)
	})
	rs := watchResults(t, b.client)
	webTemplate := func(key string) spec.AnalysisTemplate {
		return template(t, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: check}
spec:
  args:
  - name: token
    valueFrom: {secretKeyRef: {name: web-creds, key: %s}}
  metrics:
  - name: check
    consecutiveErrorLimit: 0
    successCondition: result.ratio < 0.05
    provider:
      web:
        url: %s/check
        headers: [{key: Authorization, value: "Bearer {{args.token}}"}]
`, key, srv.URL))
	}
	r := events.Ref{Namespace: ns, Name: "web"}

	applyTemplates(t, b.client, r.Namespace, webTemplate("token"))
	ok := runTask(r, "web-1", 1, "", []spec.AnalysisTemplate{webTemplate("token")})
	sendTask(t, b.client, ok)
	checkVerdict(t, rs.finished(t, ok), successful, "")
	m := checkMeasured(t, rs, ok, "check", 1, successful)[0].Measurement
	if !strings.Contains(m.Value, "*****") {
		t.Errorf("the echoed secret was not redacted: %+v", m)
	}

	applyTemplates(t, b.client, r.Namespace, webTemplate("password"))
	missing := runTask(r, "web-2", 2, "", []spec.AnalysisTemplate{webTemplate("password")})
	sendTask(t, b.client, missing)
	checkVerdict(t, rs.finished(t, missing), errorP, "")
	m = checkMeasured(t, rs, missing, "check", 1, errorP)[0].Measurement
	if !strings.Contains(m.Message, ns+"/web-creds") || !strings.Contains(m.Message, `"password"`) {
		t.Errorf("message %q does not name the namespace, Secret and key", m.Message)
	}

	stored := 0
	for stream, msgs := range eventstest.StoredMessages(t, b.client) {
		for _, msg := range msgs {
			stored++
			if strings.Contains(msg, token) {
				t.Errorf("stream %s holds the secret: %s", stream, msg)
			}
		}
	}
	if stored == 0 {
		t.Error("no stored message: the scan proves nothing")
	}
	if !strings.Contains(logs.String(), "analysis run finished") {
		t.Errorf("no analyzer log line was captured: the log check proves nothing\n%s", logs.String())
	}
	logs.NoSecrets(t, token)
}
