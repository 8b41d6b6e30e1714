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

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(spec(os.Getenv), os.Args[1:], os.Stderr))
}

// spec describes the binary; getenv supplies the defaults of its flags.
func spec(getenv func(string) string) daemon.Spec {
	return assembly.Binary(assembly.Analyzer, getenv)
}
