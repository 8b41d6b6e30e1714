package localproxy

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/endpoints"
	"github.com/sluicehq/sluice/internal/records"
	"github.com/sluicehq/sluice/internal/records/recordstest"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
)

// TestRestartRestoresTheLeadersRoute restarts the proxy on a bus whose
// routes bucket has a replica that fell behind (recordstest) after the
// proxy applied seq 1 of a rollout's route and before it applied seq 2.
// Every restart must restore seq 2: restored from the replica behind,
// the proxy served the older route and took a late task of seq 1 again,
// until the next route task. And it must restore the route of another
// rollout applied after the replica fell behind: listed by a consumer
// JetStream placed on that replica, it was not restored at all. Restarted recordstest.Tries times; before
// the restore read the leader's entry, about one in three restored seq 1.
func TestRestartRestoresTheLeadersRoute(t *testing.T) {
	c := recordstest.Start(t)
	bus := events.BusConfig{Replicas: 3}
	bus.Defaults()
	c.Bucket(t, endpoints.Config(bus))
	routes := c.Bucket(t, bus.Bucket(Bucket, "Sluice local platform: the route each rollout's proxy applied", 1))
	client := eventstest.Connect(t, c.URL)
	start := func() *Router {
		t.Helper()
		r, err := New(Config{JetStream: client.JetStream(), Bus: bus, Registerer: prometheus.NewRegistry(), Logger: eventstest.Quiet(), DrainTimeout: eventstest.Wait})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
		defer cancel()
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	stop := func(r *Router) {
		t.Helper()
		if err := r.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	route := canaryRoute(0, true)
	route.Annotations[AnnotationListen] = freeAddr(t)
	ctx := context.Background()
	r := start()
	if _, err := r.Apply(ctx, web, 1, route); err != nil {
		t.Fatal(err)
	}
	c.FallBehind(t, routes)
	route = canaryRoute(100, true)
	route.Annotations[AnnotationListen] = freeAddr(t)
	if _, err := r.Apply(ctx, web, 2, route); err != nil {
		t.Fatal(err)
	}
	api := events.Ref{Namespace: web.Namespace, Name: "api"}
	apiRoute := canaryRoute(0, true)
	apiRoute.Annotations[AnnotationListen] = freeAddr(t)
	if _, err := r.Apply(ctx, api, 1, apiRoute); err != nil {
		t.Fatal(err)
	}
	stop(r)
	_, rev, err := records.New(routes, records.Config[record]{Leader: c.Conn}).Latest(ctx, routeKey(web))
	if err != nil {
		t.Fatal(err)
	}
	c.Behind(t, routes, routeKey(web), rev)

	for i := range recordstest.Tries {
		r := start()
		addr, _ := r.Addrs(web)
		apiAddr, _ := r.Addrs(api)
		r.mu.Lock()
		seq := r.rollouts[web].seq
		r.mu.Unlock()
		stop(r)
		if seq != 2 || addr != route.Annotations[AnnotationListen] {
			t.Fatalf("restart %d restored seq %d on %s, want seq 2 on %s", i+1, seq, addr, route.Annotations[AnnotationListen])
		}
		if apiAddr != apiRoute.Annotations[AnnotationListen] {
			t.Fatalf("restart %d restored %s's route on %q, want %s", i+1, api, apiAddr, apiRoute.Annotations[AnnotationListen])
		}
	}
}
