package embedded

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(context.Background()); err != nil {
		t.Errorf("JetStream after restart: %v", err)
	}
}
