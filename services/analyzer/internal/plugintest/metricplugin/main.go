// Command metricplugin is package plugintest's Argo Rollouts metric plugin,
// for tests: run by an analyzer, never by hand.
package main

import (
	"os"

	"github.com/sluicehq/sluice/services/analyzer/internal/plugintest"
)

func main() { plugintest.Serve(os.Args[1:]) }
