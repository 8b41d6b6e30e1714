package systest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
)

// TestNATSClusterLosesAndRegainsANode checks the harness the fault suites
// build on: a killed stream leader is replaced, and a node restarted with
// its store wiped catches up with the stream it lost.
func TestNATSClusterLosesAndRegainsANode(t *testing.T) {
	c := StartNATSCluster(t, ClusterSpec{})
	c.WaitHealthy(t, 2*time.Minute)
	nc, err := nats.Connect(c.ClientURLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	poll.Until(t, "an R3 stream created", func() error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	}, poll.Timeout(time.Minute))
	publish := func(i int) {
		t.Helper()
		poll.Until(t, fmt.Sprintf("message %d stored", i), func() error {
			// One attempt per 2 s: an attempt made while the stream has
			// no leader waits for an answer that never comes.
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := js.Publish(actx, "t.x", []byte("m"), jetstream.WithMsgID(fmt.Sprint(i)))
			return err
		}, poll.Timeout(time.Minute))
	}
	publish(1)
	leader, err := c.Leader(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	publish(2)
	poll.Until(t, "a new leader", func() error {
		n, err := c.Leader(ctx, "T")
		if err != nil {
			return err
		}
		if n == leader {
			return fmt.Errorf("%s still leads", n.Name)
		}
		return nil
	}, poll.Timeout(time.Minute))
	if err := leader.WipeStore(); err != nil {
		t.Fatal(err)
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	publish(3)
	poll.Until(t, leader.Name+" caught up with the stream it lost", func() error {
		s, err := js.Stream(ctx, "T")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 3 {
			return fmt.Errorf("%d messages, want 3", info.State.Msgs)
		}
		for _, p := range info.Cluster.Replicas {
			if p.Name == leader.Name && p.Current && p.Lag == 0 {
				return nil
			}
		}
		if info.Cluster.Leader == leader.Name {
			return nil
		}
		return fmt.Errorf("cluster %+v", info.Cluster)
	}, poll.Timeout(2*time.Minute))
}
