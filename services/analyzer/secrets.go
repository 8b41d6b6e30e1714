package analyzer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/pkg/spec"
	"github.com/sluicehq/sluice/services/analyzer/metrics"
)

// Secrets reads the values of secret arguments and providers' credentials;
// see metrics.Secrets.
type Secrets = metrics.Secrets

// The errors of Secrets.Value, wrapped with the namespace, Secret and key
// (never a value).
var (
	ErrSecretNotFound  = metrics.ErrSecretNotFound
	ErrSecretForbidden = metrics.ErrSecretForbidden
)

// SecretEnvPrefix starts the environment variables that hold the values of
// secret arguments.
const SecretEnvPrefix = "SLUICE_SECRET_"

// SecretEnv is the environment variable EnvSecrets reads for an argument
// with valueFrom.secretKeyRef {name, key}: SLUICE_SECRET_<NAME>_<KEY>,
// upper-cased, every character other than a letter or a digit replaced by
// "_". Secret "prom-creds", key "token" is SLUICE_SECRET_PROM_CREDS_TOKEN.
func SecretEnv(ref spec.SecretKeyRef) string {
	return SecretEnvPrefix + envToken(ref.Name) + "_" + envToken(ref.Key)
}

func envToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, s)
}

// EnvSecrets reads secret arguments from the analyzer's environment
// (SecretEnv), one variable serving every namespace: the local platform's
// Secrets, and the default.
type EnvSecrets struct {
	// Getenv reads a variable (os.Getenv in production).
	Getenv func(string) string
}

var _ Secrets = EnvSecrets{}

// Value returns the variable SecretEnv(ref); an unset or empty one is
// ErrSecretNotFound, saying which variable to set.
func (e EnvSecrets) Value(_ context.Context, _ string, ref spec.SecretKeyRef) (string, error) {
	env := SecretEnv(ref)
	if v := e.Getenv(env); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("secret %q key %q: %w: set %s in the analyzer's environment (the local platform reads no Kubernetes Secrets)",
		ref.Name, ref.Key, ErrSecretNotFound, env)
}

// DefaultSecretTimeout bounds one read of a Secret by KubeSecrets.
const DefaultSecretTimeout = 10 * time.Second

// KubeSecrets reads secret arguments from the Secret in the rollout's
// namespace, the kube platform's: one GET of the Secret per read (no cache,
// no list or watch, so the analyzer needs only get on secrets), so a
// changed Secret takes effect at the next measurement.
type KubeSecrets struct {
	// Client reaches the API server as the analyzer.
	Client kubernetes.Interface
	// Timeout bounds one read (default DefaultSecretTimeout).
	Timeout time.Duration
}

var _ Secrets = KubeSecrets{}

// Value gets the Secret ref.Name in namespace and returns its key ref.Key.
func (k KubeSecrets) Value(ctx context.Context, namespace string, ref spec.SecretKeyRef) (string, error) {
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = DefaultSecretTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := namespace + "/" + ref.Name
	s, err := k.Client.CoreV1().Secrets(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("Secret %s (key %q): %w", name, ref.Key, ErrSecretNotFound)
	case apierrors.IsForbidden(err):
		return "", fmt.Errorf("Secret %s (key %q): %w: the analyzer's service account needs get on secrets in namespace %s "+
			"(the ClusterRole sluice-analyzer in deploy/base/analyzer.yaml grants it): %v", name, ref.Key, ErrSecretForbidden, namespace, err)
	case err != nil:
		return "", fmt.Errorf("Secret %s (key %q): %w", name, ref.Key, err)
	}
	if v, ok := s.Data[ref.Key]; ok {
		return string(v), nil
	}
	if v, ok := s.StringData[ref.Key]; ok { // only set on writes, but harmless
		return v, nil
	}
	return "", fmt.Errorf("Secret %s has no key %q: %w", name, ref.Key, ErrSecretNotFound)
}

// secretValues reads the secret arguments of a run of a rollout in
// namespace, by argument name. It fails, naming every argument it could not
// read and why, when one is missing.
func (s *Service) secretValues(ctx context.Context, namespace string, args []spec.Argument) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	values := make(map[string]string, len(args))
	var errs []error
	for _, a := range args {
		if a.ValueFrom == nil || a.ValueFrom.SecretKeyRef == nil {
			continue
		}
		v, err := s.cfg.Secrets.Value(ctx, namespace, *a.ValueFrom.SecretKeyRef)
		if err != nil {
			errs = append(errs, fmt.Errorf("argument %q: %w", a.Name, err))
			continue
		}
		values[a.Name] = v
	}
	return values, errors.Join(errs...)
}
