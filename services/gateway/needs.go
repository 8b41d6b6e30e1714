package gateway

import (
	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Needs is what the gateway uses on the bus (events.IdentityGateway): it
// publishes the commands of the callers it authorized, and on the status
// subjects the command.refused answer to a caller it did not; it follows
// the status and commands streams with ordered consumers (history, the
// event stream, a command's answer, ?wait=completed); it reads the
// rollouts, the analysis runs and, on the local platform, the endpoints,
// and provisions or writes none of them. It runs no durable consumer.
var Needs = events.Needs{
	Publish: []string{events.CommandRoot + ".>", events.StatusRoot + ".>"},
	Follows: []string{events.StreamStatus, events.StreamCommands},
	Views:   []string{orchestrator.BucketRollouts, analyzer.BucketRuns, endpoints.Bucket},
}
