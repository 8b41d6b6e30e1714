// Package embedded runs a NATS server with JetStream inside the current
// process. Tests use it as the real bus; `sluice dev` uses it as the
// development default.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures an embedded server. StoreDir is required: JetStream
// keeps its streams on disk there, so a restarted server (or `sluice dev`)
// finds every event it had.
type Options struct {
	// Host and Port to listen on; Port 0 picks a free port (default host
	// 127.0.0.1).
	Host string
	Port int
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// ServerName identifies the server (default "sluice-embedded").
	ServerName string
	// SyncInterval is how often JetStream fsyncs file storage; 0 keeps the
	// server's default (2 minutes). SyncAlways fsyncs every write.
	SyncInterval time.Duration
	SyncAlways   bool
	// Token, when set, is required from clients.
	Token string
	// Debug enables the server's own logging to stderr.
	Debug bool
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10s).
	ReadyTimeout time.Duration
	// Configure, when set, edits the server options last: accounts, users
	// and permissions, TLS, or turning JetStream off to test that failure.
	Configure func(*server.Options)
}

// Server is a running embedded NATS server.
type Server struct {
	ns   *server.Server
	opts Options
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded NATS: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	if o.ServerName == "" {
		o.ServerName = "sluice-embedded"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	sopts := &server.Options{
		ServerName:    o.ServerName,
		Host:          o.Host,
		Port:          o.Port,
		JetStream:     true,
		StoreDir:      o.StoreDir,
		SyncInterval:  o.SyncInterval,
		SyncAlways:    o.SyncAlways,
		Authorization: o.Token,
		NoSigs:        true,
		NoLog:         !o.Debug,
		Debug:         o.Debug,
		MaxPayload:    8 << 20,
	}
	if o.Configure != nil {
		o.Configure(sopts)
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if o.Debug {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS: not ready to accept connections on %s within %s (is the port in use?)", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), o.ReadyTimeout)
	}
	// Remember the port actually bound so a restart reuses it.
	if addr, ok := ns.Addr().(*net.TCPAddr); ok {
		o.Port = addr.Port
	}
	return &Server{ns: ns, opts: o}, nil
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Port is the bound client port.
func (s *Server) Port() int { return s.opts.Port }

// Options returns the options the server runs with, the bound port included.
func (s *Server) Options() Options { return s.opts }

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// Restart stops the server and starts a new one on the same port and store
// directory, as an operator restarting nats-server would.
func (s *Server) Restart() (*Server, error) {
	s.Shutdown()
	return Start(s.opts)
}
