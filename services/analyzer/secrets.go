package analyzer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/pkg/spec"
)

// SecretEnvPrefix starts the environment variables that hold the values of
// secret arguments.
const SecretEnvPrefix = "SLUICE_SECRET_"

// SecretEnv is the environment variable the analyzer reads for an argument
// with valueFrom.secretKeyRef {name, key}: SLUICE_SECRET_<NAME>_<KEY>,
// upper-cased, every character other than a letter or a digit replaced by
// "_". Secret "prom-creds", key "token" is SLUICE_SECRET_PROM_CREDS_TOKEN.
// The variable serves every namespace: the analyzer does not read
// Kubernetes Secrets.
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

// secretValues reads the secret arguments of a run, by argument name. It
// fails, naming every variable missing, when one is not set. The values
// are substituted for one measurement and redacted from it: they are never
// stored.
func (s *Service) secretValues(args []spec.Argument) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	values := make(map[string]string, len(args))
	var errs []error
	for _, a := range args {
		if a.ValueFrom == nil || a.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := *a.ValueFrom.SecretKeyRef
		env := SecretEnv(ref)
		v := s.cfg.Getenv(env)
		if v == "" {
			errs = append(errs, fmt.Errorf("argument %q: secret %q key %q is not available: set %s in the analyzer's environment (Kubernetes Secrets are not read)", a.Name, ref.Name, ref.Key, env))
			continue
		}
		values[a.Name] = v
	}
	return values, errors.Join(errs...)
}
