package notifier

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/internal/telemetry"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/notifier/cdevents"
	"github.com/sluicehq/sluice/services/notifier/chat"
	"github.com/sluicehq/sluice/services/notifier/config"
)

// SourceConfig says where the notifier's configuration is: a file, or on
// Kubernetes Argo's ConfigMap and Secret, and what building it needs.
type SourceConfig struct {
	// File is the configuration file (--config): a ConfigMap manifest in
	// the format of argo-rollouts-notification-configmap, optionally
	// followed by its Secret.
	File string
	// SecretsDir holds a file per secret (--secrets-dir).
	SecretsDir string
	// Getenv reads SLUICE_SECRET_<NAME> (default os.Getenv).
	Getenv func(string) string
	// Kube and Namespace, when File is "", read the ConfigMap and Secret.
	Kube      kubernetes.Interface
	Namespace string

	// DashboardURL is the dashboard's base URL, for links in messages.
	DashboardURL string
	// Client reads the rollouts' manifests and publishes chat commands.
	Client *events.Client
	// HTTPClient calls the notification services (default
	// http.DefaultClient).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Metrics counts notifications that cannot be rendered.
	Metrics *telemetry.Metrics
	// Registerer takes the chat commands' metrics (nil: none).
	Registerer prometheus.Registerer

	// manifests reads the rollouts; one for every configuration built.
	manifests Manifests
}

// NewSource returns the configuration source sc describes.
func NewSource(sc SourceConfig) (ConfigSource, error) {
	if sc.Getenv == nil {
		sc.Getenv = os.Getenv
	}
	if sc.HTTPClient == nil {
		sc.HTTPClient = http.DefaultClient
	}
	if sc.Logger == nil {
		sc.Logger = slog.Default()
	}
	if sc.manifests == nil {
		if sc.Client == nil {
			return nil, fmt.Errorf("%w: notifier: a bus client reads the rollouts", events.ErrInvalidConfig)
		}
		sc.manifests = &lazyReader{client: sc.Client}
	}
	switch {
	case sc.File != "":
		return &FileSource{Path: sc.File, SecretsDir: sc.SecretsDir, Build: sc.fromFile, Log: sc.Logger}, nil
	case sc.Kube != nil:
		if sc.Namespace == "" {
			return nil, fmt.Errorf("%w: notifier: --namespace (or POD_NAMESPACE): the namespace of the ConfigMap %s", events.ErrInvalidConfig, ConfigMapName)
		}
		return &KubeSource{Client: sc.Kube, Namespace: sc.Namespace, Build: sc.fromMaps, Log: sc.Logger}, nil
	}
	return nil, fmt.Errorf("%w: notifier: no configuration: give --config FILE, or --platform kube to read the ConfigMap %s", events.ErrInvalidConfig, ConfigMapName)
}

// fromFile builds the Setup of a configuration file: the ConfigMap, and
// the Secret when the file has one, which wins over --secrets-dir and the
// environment.
func (sc SourceConfig) fromFile(data []byte) (*Setup, error) {
	cm, secret, err := config.ParseFile(data)
	if err != nil {
		return nil, err
	}
	return sc.fromMaps(cm, secret)
}

// fromMaps builds the Setup of the ConfigMap's and the Secret's data:
// secrets from the Secret, then --secrets-dir, then the environment.
func (sc SourceConfig) fromMaps(cm, secret map[string]string) (*Setup, error) {
	sources := []config.Secrets{config.Map(secret)}
	if sc.SecretsDir != "" {
		sources = append(sources, config.Dir(sc.SecretsDir))
	}
	sources = append(sources, config.Env(sc.Getenv))
	cfg, err := config.Parse(cm, config.Chain(sources...))
	if err != nil {
		return nil, err
	}
	senders, err := BuildSenders(cfg.Services(), nil, sc.HTTPClient, sc.Logger)
	if err != nil {
		return nil, err
	}
	setup := &Setup{
		Planner: &Engine{Config: cfg, Manifests: sc.manifests, DashboardURL: sc.DashboardURL, Log: sc.Logger, Metrics: sc.Metrics},
		Senders: senders,
	}
	if err := sc.extras(cfg, setup); err != nil {
		return nil, err
	}
	return setup, nil
}

// extras adds the chat endpoints (commands.slack, commands.teams) and the
// CDEvents output (cdevents) the configuration asks for.
func (sc SourceConfig) extras(cfg *config.Config, setup *Setup) error {
	ep, err := chat.New(cfg.Commands("slack"), cfg.Commands("teams"), chat.Deps{
		Client: sc.Client, Logger: sc.Logger, Metrics: sc.Registerer, Replays: &chatReplays{client: sc.Client},
	})
	if err != nil {
		return err
	}
	if ep != nil {
		setup.Chat, setup.closers = ep, append(setup.closers, ep.Close)
	}
	em, err := cdevents.New(cfg.CDEvents(), cdevents.Deps{Client: sc.Client, HTTPClient: sc.HTTPClient, Logger: sc.Logger})
	if err != nil {
		return err
	}
	if em != nil {
		setup.CDEvents = em.Handle
	}
	return nil
}
