// Command sluice-notifier runs the notifier: it turns status events into
// notifications (Slack, Microsoft Teams, webhooks, email, GitHub commit
// statuses, CDEvents) from triggers, templates and subscriptions in the
// format of Argo Rollouts' argo-rollouts-notification-configmap, read from
// --config or, on --platform kube, from that ConfigMap and its Secret. It
// serves the chat endpoints on --listen (default :3101), through which
// people promote and abort from chat. See docs/notifications.md.
package main

import (
	"os"

	"github.com/sluicehq/sluice/internal/assembly"
	"github.com/sluicehq/sluice/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(newSpec(os.Getenv), os.Args[1:], os.Stderr))
}

func newSpec(getenv func(string) string) daemon.Spec {
	return assembly.Binary(assembly.Notifier, getenv)
}
