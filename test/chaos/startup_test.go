package chaos

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events"
	"github.com/sluicehq/sluice/pkg/events/embedded"
	"github.com/sluicehq/sluice/pkg/events/eventstest"
	"github.com/sluicehq/sluice/test/systest"
)

// TestServicesWaitForAFreshCluster starts every service binary, two of
// each, at the moment a fresh three-node JetStream cluster accepts
// connections, with --bus-replicas 3, as an operator bringing up
// production does: while the cluster elects its leaders and every service
// provisions the same streams and buckets, a service waits and retries;
// none exits, and all become ready (issue 21).
func TestServicesWaitForAFreshCluster(t *testing.T) {
	cluster, err := embedded.StartCluster(3, embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Shutdown)
	begun := time.Now()
	sys := systest.Start(t, systest.Spec{NATS: cluster.ClientURLs(), Replicas: 2, BusReplicas: 3, Local: true, LogDir: t.TempDir()})
	poll.Until(t, "every service ready on the fresh cluster", func() error {
		var waiting []string
		for _, p := range sys.Procs {
			if p.Starts() > 1 {
				t.Fatalf("%s exited while the cluster started:\n%s", p.Name, sys.LogTails(30))
			}
			if why := p.NotReady(); why != "" {
				waiting = append(waiting, p.Name+": "+why)
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("%d of %d not ready: %s", len(waiting), len(sys.Procs), strings.Join(waiting, "; "))
		}
		return nil
	}, poll.Timeout(3*time.Minute), poll.Every(100*time.Millisecond))
	t.Logf("%d services ready %s after a fresh three-node cluster accepted connections", len(sys.Procs), time.Since(begun).Round(100*time.Millisecond))
	waits := map[string]int{}
	for _, p := range sys.Procs {
		data, err := os.ReadFile(p.Log)
		if err != nil {
			t.Fatal(err)
		}
		for _, what := range []string{"waiting for NATS", "waiting for the bus"} {
			waits[what] += strings.Count(string(data), `msg="`+what+`"`)
		}
	}
	t.Logf("failed attempts they waited after: %v", waits)

	// They provisioned what production runs: every stream on three nodes.
	ctx, cancel := context.WithTimeout(context.Background(), eventstest.Wait)
	defer cancel()
	c, err := events.Connect(ctx, events.ConnConfig{URLs: strings.Split(cluster.ClientURLs(), ","), Name: t.Name()}, events.WithLogger(eventstest.Quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, want := range (events.BusConfig{Replicas: 3}).Streams() {
		s, err := c.JetStream().Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info := s.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s: %d replicas configured, cluster %+v; want 3 on three nodes", want.Name, info.Config.Replicas, info.Cluster)
		}
	}
	for _, p := range sys.Procs {
		if p.Starts() != 1 {
			t.Errorf("%s was started %d times, want once", p.Name, p.Starts())
		}
	}
}
