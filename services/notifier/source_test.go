package notifier

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/systemtest"
	"github.com/sluicehq/sluice/services/notifier/notify"
)

// servicesSetup builds a Setup whose senders are named by the lines of
// data; a line "bad: <why>" is a problem.
func servicesSetup(data string) (*Setup, error) {
	setup := &Setup{Senders: map[string]notify.Sender{}}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		if why, ok := strings.CutPrefix(line, "bad: "); ok {
			errs = append(errs, errors.New(why))
			continue
		}
		setup.Senders[line] = nil
	}
	return setup, errors.Join(errs...)
}

// applied collects the setups a source applies.
type applied struct {
	mu  sync.Mutex
	got [][]string
}

func (a *applied) apply(s *Setup) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, sortedKeys(s.Senders))
}

func (a *applied) last() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) == 0 {
		return nil
	}
	return a.got[len(a.got)-1]
}

func (a *applied) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func TestFileSourceReloadsAndKeepsTheLastGoodConfiguration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "notifications.yaml")
	// Replaced at once, as editors and the kubelet do: a half-written
	// file is another configuration.
	write := func(s string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("slack\n")
	var logs systemtest.Logs
	src := &FileSource{Path: path, Interval: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Build: func(data []byte) (*Setup, error) { return servicesSetup(string(data)) }}
	setup, err := src.Load(context.Background())
	if err != nil || !slices.Equal(sortedKeys(setup.Senders), []string{"slack"}) {
		t.Fatalf("Load = %v, %v", setup, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var a applied
	go func() { defer close(done); src.Watch(ctx, a.apply) }()
	t.Cleanup(func() { cancel(); <-done })

	write("slack\nwebhook\n")
	poll.True(t, "the changed file applied", func() bool { return slices.Equal(a.last(), []string{"slack", "webhook"}) })

	write("slack\nbad: no template named \"x\"\nbad: no service named \"y\"\n")
	poll.True(t, "both problems logged", func() bool {
		return strings.Contains(logs.String(), `no template named \"x\"`) && strings.Contains(logs.String(), `no service named \"y\"`)
	})
	// Nothing was applied for the bad file: the next good one is the
	// next applied.
	write("email\n")
	poll.True(t, "the fixed file applied", func() bool { return slices.Equal(a.last(), []string{"email"}) })
	if n := a.count(); n != 2 {
		t.Errorf("%d configurations applied, want 2 (the bad one kept the one in use)", n)
	}
}

func TestFileSourceFailsToLoadAMissingOrBadFile(t *testing.T) {
	src := &FileSource{Path: filepath.Join(t.TempDir(), "none.yaml"), Build: func(data []byte) (*Setup, error) { return servicesSetup(string(data)) }}
	if _, err := src.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("Load of a missing file: %v, want an error naming it", err)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(path, []byte("bad: unknown key \"servic.slack\"\n"), 0o600)
	src.Path = path
	if _, err := src.Load(context.Background()); err == nil || !strings.Contains(err.Error(), `unknown key "servic.slack"`) {
		t.Errorf("Load of a bad file: %v, want its problem", err)
	}
}

func TestKubeSourceFollowsTheConfigMapAndTheSecret(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "argo-rollouts", Name: ConfigMapName}, Data: map[string]string{"service.slack": "token: $slack-token\n"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "argo-rollouts", Name: SecretName}, Data: map[string][]byte{"slack-token": []byte("xoxb-1")}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "argo-rollouts", Name: "something-else"}, Data: map[string]string{"service.teams": "{}"}},
	)
	build := func(cm, secret map[string]string) (*Setup, error) {
		var lines []string
		for _, k := range sortedKeys(cm) {
			lines = append(lines, k)
		}
		for _, k := range sortedKeys(secret) {
			lines = append(lines, "secret "+k+"="+secret[k])
		}
		return servicesSetup(strings.Join(lines, "\n"))
	}
	src := &KubeSource{Client: client, Namespace: "argo-rollouts", Build: build, Log: slog.New(slog.DiscardHandler)}
	setup, err := src.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := sortedKeys(setup.Senders); !slices.Equal(got, []string{"secret slack-token=xoxb-1", "service.slack"}) {
		t.Fatalf("loaded %q", got)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var a applied
	go func() { defer close(done); src.Watch(wctx, a.apply) }()
	t.Cleanup(func() { cancel(); <-done })

	_, err = client.CoreV1().Secrets("argo-rollouts").Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "argo-rollouts", Name: SecretName}, Data: map[string][]byte{"slack-token": []byte("xoxb-2")}}, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll.True(t, "the rotated secret applied", func() bool {
		return slices.Equal(a.last(), []string{"secret slack-token=xoxb-2", "service.slack"})
	})
	_, err = client.CoreV1().ConfigMaps("argo-rollouts").Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "argo-rollouts", Name: ConfigMapName}, Data: map[string]string{"service.email": "{}"}}, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll.True(t, "the changed ConfigMap applied", func() bool {
		return slices.Equal(a.last(), []string{"secret slack-token=xoxb-2", "service.email"})
	}, poll.Timeout(10*time.Second))
}

func TestKubeSourceWithoutTheConfigMapWaitsForIt(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	var logs systemtest.Logs
	build := func(cm, secret map[string]string) (*Setup, error) {
		return servicesSetup(strings.Join(sortedKeys(cm), "\n"))
	}
	src := &KubeSource{Client: client, Namespace: "sluice", Build: build, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	setup, err := src.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(setup.Senders) > 1 {
		t.Errorf("senders %v without a ConfigMap", sortedKeys(setup.Senders))
	}
	if !strings.Contains(logs.String(), ConfigMapName) || !strings.Contains(logs.String(), "sluice") {
		t.Errorf("logs %q; want them to name the missing ConfigMap and its namespace", logs.String())
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var a applied
	go func() { defer close(done); src.Watch(wctx, a.apply) }()
	t.Cleanup(func() { cancel(); <-done })
	_, err = client.CoreV1().ConfigMaps("sluice").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "sluice", Name: ConfigMapName}, Data: map[string]string{"service.slack": "{}"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll.True(t, "the new ConfigMap applied", func() bool { return slices.Equal(a.last(), []string{"service.slack"}) })
}
