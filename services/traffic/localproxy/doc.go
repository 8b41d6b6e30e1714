// Package localproxy is the local platform's ingress: a weighted reverse
// proxy per rollout that implements traffic.Router. It learns where each
// revision's ready processes listen from the endpoints bucket
// (sluice-endpoints, written by the replicas service) and routes requests
// by the rollout's last route task.
//
// # Addresses
//
// A rollout's proxy listens on the Rollout's annotation
// local.sluice.io/listen (host:port). A blue/green rollout also gets a
// preview proxy on local.sluice.io/preview-listen when that annotation is
// set. A route without the listen annotation, with a malformed address, or
// with an address another rollout's proxy or another program holds is
// rejected (the task fails and says which annotation to change). A changed
// address opens the new one first, then drains the old one.
//
// # Routing
//
// Every request takes the routing table in effect when it arrived and
// keeps it and its process until it ends; a route or endpoints change
// builds a new table and swaps it in atomically, so no request in flight
// is dropped.
//
//   - Canary without trafficRouting: the ready processes of the stable and
//     the canary are taken in turn (round robin), so the canary's share
//     follows the ratio of ready processes as behind a Kubernetes Service.
//     At canary weight 0 only the stable's processes are used.
//   - Canary with trafficRouting (the router-specific settings in it are
//     ignored): a request matching a header route goes to the canary.
//     Otherwise canaryWeight out of maxTrafficWeight (default 100) of the
//     requests, drawn at random per request, go to the canary, each
//     experiment template's weight (Route.Experiments) to its processes
//     (never to the revision it shares a pod hash with), and the rest to
//     the stable; within a revision, processes are taken in turn. Weights
//     that add up to more than maxTrafficWeight are rejected. A
//     header route matches when every one of its header matches holds
//     (exact, prefix, or a regex that must match the whole value; an absent
//     header matches nothing; Host is matched against the request's host);
//     header routes apply at any weight, 0 included. Without
//     trafficRouting, experiment templates get nothing (Argo's rule).
//   - Mirror routes (trafficRouting only): a request the stable serves that
//     matches a mirror route (any of its matches; within a match, method,
//     path and headers must all hold) is, with the route's percentage
//     (default 100; the first matching route decides), also sent to a
//     canary process with header X-Sluice-Mirror: 1. The copy's response is
//     discarded; the client's request neither waits for it nor sees its
//     failure. Requests with a body over 1 MiB are not mirrored, nor are
//     copies beyond 64 in flight.
//   - Blue/green: the listen proxy serves the active revision's processes
//     (role active), the preview proxy the preview revision's (role
//     preview).
//   - When the revision chosen for a request has no ready process, the
//     request goes to the other revision only if that one has weight (the
//     stable with a share left by the canary and the experiment templates,
//     the canary at a weight above 0); an experiment template's go to the
//     stable if it has a share. Otherwise, and for header routes and
//     blue/green, the proxy answers 503 with a body that names the rollout, the revision and why.
//     A process that does not answer gives 502.
//
// # Metrics
//
// sluice_proxy_requests_total{namespace, rollout, role, template, code}
// counts the requests answered, by the role of the revision that served
// them (stable, canary, active, preview, or experiment with the
// template's name in template, empty otherwise) and status code (499 when
// the client went away first).
// sluice_proxy_request_duration_seconds{namespace, rollout, role, template}
// is the time from arrival to the end of the response. Mirrored copies are
// not counted.
//
// # Limits
//
// Plain HTTP/1.1 only (no TLS, no HTTP/2). Upgraded connections
// (WebSocket) and streamed responses pass through, but an upgraded
// connection stays on its process when routes change and is not drained
// when a proxy stops. No retries: a failed process gives 502. One traffic
// service per local platform, as each address can be held once.
package localproxy
