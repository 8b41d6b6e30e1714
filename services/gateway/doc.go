// Package gateway is Sluice's HTTP edge (binary sluice-gateway, and part of
// sluice dev on 127.0.0.1:3100): a JSON API over rollouts and their history
// under /api/v1, a server-sent-events stream of status events resumable
// with Last-Event-ID, CloudEvents over HTTP at POST /api/v1/events for CI
// systems that do not speak NATS, and the web dashboard (package
// dashboard). Callers are authenticated and authorized per namespace by
// package auth; every command the gateway publishes carries the caller as
// its actor and is answered as the contract says (docs/gateway.md).
package gateway
