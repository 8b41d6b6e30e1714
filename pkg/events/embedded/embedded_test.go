package embedded

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
)

func TestStartRequiresStoreDir(t *testing.T) {
	if _, err := Start(Options{}); err == nil || !strings.Contains(err.Error(), "StoreDir is required") {
		t.Errorf("err = %v", err)
	}
}

func TestStartOnABusyPortFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if s, err := Start(Options{StoreDir: t.TempDir(), Port: port, ReadyTimeout: time.Second}); err == nil {
		s.Shutdown()
		t.Fatal("started on a port in use")
	}
}

func TestRestartKeepsPortAndJetStream(t *testing.T) {
	s, err := Start(Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	url := s.ClientURL()
	s, err = s.Restart()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if s.ClientURL() != url {
		t.Errorf("restarted on %s, was %s", s.ClientURL(), url)
	}
	js := connectJS(t, url)
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Errorf("JetStream after restart: %v", err)
	}
}

func TestStartClusterRunsOneJetStreamCluster(t *testing.T) {
	c, err := StartCluster(3, Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	if n := len(strings.Split(c.ClientURLs(), ",")); n != 3 {
		t.Fatalf("ClientURLs %q, want three", c.ClientURLs())
	}
	js := connectJS(t, c.ClientURLs())
	// The nodes elect their meta leader after they accept connections:
	// wait for a stream on all three.
	var info *jetstream.StreamInfo
	poll.Until(t, "an R3 stream on the cluster", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		if err != nil {
			return err
		}
		info = s.CachedInfo()
		return nil
	})
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Errorf("stream cluster %+v, want a leader and two replicas", info.Cluster)
	}
}

func TestClusterNodeNeedsItsRoutes(t *testing.T) {
	if _, err := Start(Options{StoreDir: t.TempDir(), Cluster: &ClusterOptions{Port: 1}}); err == nil || !strings.Contains(err.Error(), "Routes") {
		t.Errorf("err = %v, want one naming the routes", err)
	}
}

// connectJS connects a plain client to url for the test.
func connectJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
