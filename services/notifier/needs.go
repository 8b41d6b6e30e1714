package notifier

import (
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/orchestrator"
)

// Needs is what the notifier uses on the bus (events.IdentityNotifier):
// its durable consumers of status events (notifications, CDEvents) and of
// its own delivery queue, which it publishes on sluice.task.notifier.>;
// its state bucket; the rollouts bucket, read for each rollout's manifest;
// the status stream followed for the answers of chat commands, which it
// publishes on sluice.cmd.> (and a Forbidden refusal on sluice.status.>
// for a person it did not authorize).
var Needs = events.Needs{
	Consumers: []events.Durable{
		{Stream: events.StreamStatus, Name: DurableStatus},
		{Stream: events.StreamStatus, Name: DurableCDEvents},
		{Stream: events.StreamTasks, Name: DurableDelivery},
	},
	Buckets: []events.Bucket{{
		Name: BucketState, History: 1, TTL: StateTTL,
		Description: "Sluice notifier: what was sent, Slack threads, oncePer marks, each rollout's last snapshot",
	}},
	Views:   []string{orchestrator.BucketRollouts},
	Follows: []string{events.StreamStatus},
	Publish: []string{events.CommandRoot + ".>", events.StatusRoot + ".>", events.TaskRoot + "." + TaskService + ".>"},
}
