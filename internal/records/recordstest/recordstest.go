// Package recordstest makes a replica of a replicated bucket lag behind
// for real, so that a test can show what a reader of the bucket does with
// the older record such a replica answers with.
//
// A bucket read (records.Store.Get, records.GetEntry) is a direct get that
// any replica of the bucket may answer, drawn at random: the server does
// not prefer its own. A node past its JetStream store limit takes no more
// appends but goes on answering reads with what it had
// (TestLatestIsTheLeadersRecord in test/chaos makes one with a full
// volume). Start makes one in process: three embedded servers, the first
// with a store limit of Limit bytes, which FallBehind grows a stream of
// someone else's past. From then on about one read in three answers the
// older record, so a test repeats what it checks (Tries times) rather
// than hinge on which replica one read reached.
package recordstest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/pkg/events/embedded"
)

// Limit is the store limit of the node that falls behind.
const Limit = 2 << 20

// Tries is how many times a test repeats a read it means to be answered
// by the node behind at least once: about one read in three is, so all
// of them miss it once in 3,000 runs.
const Tries = 20

// Cluster is a three-node JetStream cluster whose first node falls behind
// when told to.
type Cluster struct {
	nodes *embedded.Cluster
	// Conn is a client of a node that does not fall behind. Its bucket
	// reads are answered by any replica; requests to a stream's leader
	// (records.Store.Latest) by the leader.
	Conn *nats.Conn
	// URL is the client URL of the node Conn is connected to.
	URL string
}

// Start starts the cluster and connects Conn. It is shut down when the
// test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	nodes, err := embedded.StartCluster(3, embedded.Options{StoreDir: t.TempDir(), ServerName: "lag", Configure: func(o *server.Options) {
		if o.ServerName == "lag-1" {
			o.JetStreamMaxStore = Limit
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nodes.Shutdown)
	nc, err := nats.Connect(nodes.Servers[1].ClientURL(), nats.Name("recordstest"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &Cluster{nodes: nodes, Conn: nc, URL: nodes.Servers[1].ClientURL()}
}

// Bucket creates bucket cfg (three replicas, whatever cfg says), led by
// a node that does not fall behind, and returns it once the node that
// will answers its reads.
func (c *Cluster) Bucket(t testing.TB, cfg jetstream.KeyValueConfig) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg.Replicas = 3
	js := c.js(t)
	var kv jetstream.KeyValue
	// JetStream elects its meta leader after the nodes start.
	poll.Until(t, "bucket "+cfg.Bucket+" created", func() error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		kv, err = js.CreateOrUpdateKeyValue(actx, cfg)
		return err
	}, poll.Timeout(time.Minute))
	stream := "KV_" + cfg.Bucket
	c.lead(t, ctx, stream)
	poll.True(t, "the node that falls behind answering reads of "+stream, func() bool {
		return c.nodes.Servers[0].ServesDirectGets(stream)
	}, poll.Timeout(time.Minute))
	return kv
}

// Stream creates stream cfg (three replicas, whatever cfg says), led by a
// node that does not fall behind: one the node behind led would take no
// more messages.
func (c *Cluster) Stream(t testing.TB, cfg jetstream.StreamConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg.Replicas = 3
	poll.Until(t, "stream "+cfg.Name+" created", func() error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.js(t).CreateOrUpdateStream(actx, cfg)
		return err
	}, poll.Timeout(time.Minute))
	c.lead(t, ctx, cfg.Name)
}

// lead makes a node other than the one that falls behind lead stream: a
// leader past its store limit steps down, and the test would then be
// about an election.
func (c *Cluster) lead(t testing.TB, ctx context.Context, stream string) {
	t.Helper()
	js := c.js(t)
	poll.Until(t, stream+" led by a node that does not fall behind", func() error {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		switch {
		case info.Cluster == nil || info.Cluster.Leader == "":
			return fmt.Errorf("%s has no leader", stream)
		case info.Cluster.Leader != "lag-1":
			return nil
		}
		_, err = c.Conn.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(`{"placement":{"preferred":"lag-2"}}`))
		return errors.Join(fmt.Errorf("%s led by lag-1", stream), err)
	}, poll.Timeout(time.Minute), poll.Every(500*time.Millisecond))
}

// FallBehind waits until the node that falls behind holds everything
// written to the buckets, so that what it answers from then on is what
// they hold now, and grows a stream of someone else's, BALLAST, past its
// store limit: it takes no more appends of any stream, and answers reads
// with what it had.
func (c *Cluster) FallBehind(t testing.TB, buckets ...jetstream.KeyValue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js := c.js(t)
	for _, kv := range buckets {
		stream := "KV_" + kv.Bucket()
		poll.Until(t, "the node that falls behind a current replica of "+stream, func() error {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				return err
			}
			for _, p := range s.CachedInfo().Cluster.Replicas {
				if p.Name == "lag-1" && p.Current && p.Lag == 0 {
					return nil
				}
			}
			return errors.New("not current")
		}, poll.Timeout(time.Minute), poll.Every(100*time.Millisecond))
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BALLAST", Subjects: []string{"ballast"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	c.lead(t, ctx, "BALLAST")
	chunk := make([]byte, 256<<10)
	for sent := 0; sent < 2*Limit; sent += len(chunk) {
		if _, err := js.Publish(ctx, "ballast", chunk); err != nil {
			t.Fatalf("grow BALLAST: %v", err)
		}
	}
	// A publish is acknowledged once a majority stored it: the node
	// stores it, or finds itself past its limit, a moment later.
	poll.Until(t, "the node that falls behind past its store limit", func() error {
		if used, limit := c.nodes.Servers[0].StoreUse(); used <= limit {
			return fmt.Errorf("%d KiB used of %d KiB", used>>10, limit>>10)
		}
		return nil
	}, poll.Timeout(time.Minute))
}

// Behind waits until a read of key in kv answers a revision below rev
// (or nothing): the node behind answers reads, and the test does not say
// nothing.
func (c *Cluster) Behind(t testing.TB, kv jetstream.KeyValue, key string, rev uint64) {
	t.Helper()
	poll.Until(t, fmt.Sprintf("a read of %s answered below revision %d by the node behind", key, rev), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return nil
		case err != nil:
			return err
		case e.Revision() >= rev:
			return fmt.Errorf("revision %d", e.Revision())
		}
		return nil
	}, poll.Timeout(time.Minute), poll.Every(10*time.Millisecond))
}

func (c *Cluster) js(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
