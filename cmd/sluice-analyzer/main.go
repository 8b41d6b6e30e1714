// Command sluice-analyzer runs the analyzer service: it keeps the analysis
// templates applied on the bus and measures the orchestrator's analysis
// runs against Prometheus and web endpoints. Run any number of replicas;
// they share the work.
//
// Besides the flags every Sluice service takes, it reads:
//
//	--prometheus-address   SLUICE_PROMETHEUS_ADDRESS   the Prometheus the credentials below belong to
//	--prometheus-token     SLUICE_PROMETHEUS_TOKEN     bearer token for it
//	--prometheus-username  SLUICE_PROMETHEUS_USERNAME  basic-auth user for it
//	--prometheus-password  SLUICE_PROMETHEUS_PASSWORD  basic-auth password for it
//	SLUICE_SECRET_<NAME>_<KEY>                         values of secretKeyRef arguments
//
// The analyzer sends its own credentials only to metrics whose address has
// the scheme, host and port of --prometheus-address, and only when the
// metric brings none. Prefer the environment for the token and the
// password: command lines are visible to every user of the machine.
package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/internal/daemon"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/analyzer/metrics/prometheus"
	"github.com/sluicehq/sluice/services/analyzer/metrics/web"
)

func main() {
	os.Exit(daemon.Main(spec(os.Getenv), os.Args[1:], os.Stderr))
}

// spec describes the binary; getenv supplies the defaults of its flags.
func spec(getenv func(string) string) daemon.Spec {
	var (
		cfg  analyzer.Config
		prom prometheus.Config
	)
	return daemon.Spec{
		Name: "sluice-analyzer",
		Flags: func(fs *pflag.FlagSet) {
			env := prometheus.ConfigFromEnv(getenv)
			fs.StringVar(&prom.Address, "prometheus-address", env.Address, "the Prometheus the analyzer's own credentials are for (env "+prometheus.EnvAddress+")")
			fs.StringVar(&prom.Username, "prometheus-username", env.Username, "basic-auth user for --prometheus-address (env "+prometheus.EnvUsername+")")
			// Secrets default to empty so that --help never prints them;
			// the environment fills them in Build.
			fs.StringVar(&prom.BearerToken, "prometheus-token", "", "bearer token for --prometheus-address (env "+prometheus.EnvToken+")")
			fs.StringVar(&prom.Password, "prometheus-password", "", "basic-auth password for --prometheus-address (env "+prometheus.EnvPassword+")")
			fs.DurationVar(&cfg.LeaseMargin, "lease-margin", 0, "added to a provider's timeout to form a measurement lease (default 10s)")
			fs.DurationVar(&cfg.Retention, "run-retention", 0, "how long a finished run's record is kept (default 24h)")
			fs.IntVar(&cfg.MaxConcurrentRuns, "max-concurrent-runs", 0, "runs this replica measures at once (default 64)")
		},
		Build: func(env daemon.Env) (daemon.Service, error) {
			fromEnv := prometheus.ConfigFromEnv(getenv)
			if prom.BearerToken == "" {
				prom.BearerToken = fromEnv.BearerToken
			}
			if prom.Password == "" {
				prom.Password = fromEnv.Password
			}
			reg, err := analyzer.DefaultProviders(prom, web.Config{})
			if err != nil {
				return nil, err
			}
			cfg.Providers, cfg.Getenv = reg, getenv
			cfg.Bus, cfg.Logger = env.Bus, env.Log
			return analyzer.New(env.Client, cfg)
		},
	}
}
