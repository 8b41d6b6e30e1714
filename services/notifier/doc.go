// Package notifier is the notifier service (sluice-notifier): it turns
// status events into notifications (Slack, Microsoft Teams, webhooks,
// email, GitHub commit status, CDEvents) from triggers, templates and
// subscriptions in the format of Argo Rollouts'
// argo-rollouts-notification-configmap, and takes chat commands (promote,
// abort, ...) back to the bus after checking who sent them.
//
// The parts:
//   - config: the ConfigMap format (services, templates, triggers,
//     defaultTriggers, subscriptions), secrets by $name, conditions and
//     template rendering. Pure.
//   - trigger: which of Argo's triggers a status event fires, and the
//     Argo-shaped rollout object templates evaluate against. Pure.
//   - notify: what every part shares: a rendered Notification, a
//     Destination, the Message that is queued and delivered, and the
//     Sender interface each notification service implements.
//   - sender/<service>: one package per notification service.
//   - chat: Slack slash commands and buttons (and Teams outgoing
//     webhooks) published as commands with the sender as actor.
//   - cdevents: status events as CDEvents, to an HTTP sink or a subject.
//
// The service itself consumes SLUICE_STATUS with a durable consumer,
// renders what the subscriptions ask for, queues each notification as a
// task on sluice.task.notifier.<namespace>.<rollout> (deduplicated by its
// id), and delivers the queue with retries, Retry-After and dead letters.
package notifier
