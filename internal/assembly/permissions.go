package assembly

import (
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/services/analyzer"
	"github.com/sluicehq/sluice/services/gateway"
	"github.com/sluicehq/sluice/services/notifier"
	"github.com/sluicehq/sluice/services/orchestrator"
	"github.com/sluicehq/sluice/services/replicas"
	"github.com/sluicehq/sluice/services/replicas/kube/crd"
	"github.com/sluicehq/sluice/services/replicas/local"
	"github.com/sluicehq/sluice/services/traffic"
	"github.com/sluicehq/sluice/services/traffic/localproxy"
)

// NeedsOf returns what the services that connect as identity (one of the
// events.Identities of a service) declare they need on the bus, and whether
// identity is a service's.
func NeedsOf(identity string) (events.Needs, bool) {
	switch identity {
	case events.IdentityOrchestrator:
		return orchestrator.Needs, true
	case events.IdentityAnalyzer:
		return analyzer.Needs, true
	case events.IdentityReplicas:
		return replicas.Needs.Merge(local.Needs), true
	case events.IdentityKube:
		// The replicas identity, plus the Rollout controllers.
		return replicas.Needs.Merge(local.Needs, crd.Needs), true
	case events.IdentityTraffic:
		return traffic.Needs.Merge(localproxy.Needs), true
	case events.IdentityGateway:
		return gateway.Needs, true
	case events.IdentityNotifier:
		return notifier.Needs, true
	}
	return events.Needs{}, false
}

// PermissionsOf returns the NATS permissions of identity (one of
// events.Identities) and whether it is known: for a service, exactly what
// its services declare they need (events.ServicePermissions); for the
// operator and the viewer, reading with the services' consumers denied.
// deploy/nats/permissions.conf is generated from it.
func PermissionsOf(identity string) (events.Permissions, bool) {
	var all []events.Needs
	for _, id := range events.Identities {
		if n, ok := NeedsOf(id); ok {
			all = append(all, n)
		}
	}
	if n, ok := NeedsOf(identity); ok {
		return events.ServicePermissions(identity, n, all...), true
	}
	switch identity {
	case events.IdentityOperator:
		return events.OperatorPermissions(all...), true
	case events.IdentityViewer:
		return events.ViewerPermissions(all...), true
	}
	return events.Permissions{}, false
}
