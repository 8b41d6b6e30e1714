// Package traffic is the service that carries out traffic.route tasks: it
// takes each task from the worker-traffic consumer, hands the task's routing
// table to the configured Router, and reports the task finished (Succeeded
// with the canary weight in effect, Failed with what the user must change,
// or Stale when a later route was already applied).
//
// Router is the one extension point: every router (the local platform's
// proxy in package localproxy; Kubernetes Service selectors, NGINX, ALB,
// Istio, SMI and Gateway API, each in its own package) implements it.
// docs/routers.md describes each router for users.
package traffic
