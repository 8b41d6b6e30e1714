// Package embedded runs a NATS server with JetStream inside the current
// process. Tests use it as the real bus; `sluice dev` uses it as the
// development default.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
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
	// Cluster, when set, makes the server one node of a JetStream
	// cluster (StartCluster starts a whole one).
	Cluster *ClusterOptions
	// Configure, when set, edits the server options last: accounts, users
	// and permissions, TLS, or turning JetStream off to test that failure.
	Configure func(*server.Options)
}

// ClusterOptions makes a server one node of a cluster: it listens for
// routes on Host:Port and routes to Routes.
type ClusterOptions struct {
	// Name is the cluster's name, the same on every node (default
	// "sluice").
	Name string
	// Port is where the node listens for routes from the others; it must
	// be set, since the others' Routes name it.
	Port int
	// Routes are the nats-route://host:port URLs of every node, this one's
	// included.
	Routes []string
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
	if c := o.Cluster; c != nil {
		if c.Port <= 0 || len(c.Routes) == 0 {
			return nil, errors.New("embedded NATS: a cluster node needs its route Port and the Routes of every node")
		}
		name := c.Name
		if name == "" {
			name = "sluice"
		}
		sopts.Cluster = server.ClusterOpts{Name: name, Host: o.Host, Port: c.Port}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("embedded NATS: route %q: %w", r, err)
			}
			sopts.Routes = append(sopts.Routes, u)
		}
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
	// The server's own wait does not look again once its deadline has
	// passed: a process stopped or starved past it while the server came
	// up (SIGSTOP, a busy machine) would fail a server that is ready, so
	// it is asked once more.
	if !ns.ReadyForConnections(o.ReadyTimeout) && !ns.ReadyForConnections(100*time.Millisecond) {
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

// ServesDirectGets reports whether this server answers direct gets of
// stream (a key-value bucket B is stream KV_B, whose reads are direct
// gets): it has joined the queue group that answers them, which a
// follower does only once it has caught up, so a new stream's reads go
// to its leader alone at first. A client of this server has its direct
// gets answered here while it does: the server prefers its own queue
// subscribers to its peers'.
func (s *Server) ServesDirectGets(stream string) bool {
	subject := "$JS.API.DIRECT.GET." + stream + ".>"
	sz, err := s.ns.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 4096, Test: "$JS.API.DIRECT.GET." + stream + ".x"})
	if err != nil {
		return false
	}
	for _, sub := range sz.Subs {
		if sub.Subject == subject && sub.Queue != "" {
			return true
		}
	}
	return false
}

// StoreUse is the bytes JetStream keeps in file storage on this server
// and the most it may (Configure's JetStreamMaxStore, by default 75% of
// the volume's free space at start). A server past its limit takes no
// more appends.
func (s *Server) StoreUse() (used, limit int64) {
	jsz, err := s.ns.Jsz(nil)
	if err != nil {
		return 0, 0
	}
	return int64(jsz.Store), jsz.Config.MaxStore
}

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

// Cluster is a JetStream cluster of embedded servers on one host, as
// production runs nats-server (deploy/nats, three nodes).
type Cluster struct {
	// Servers are the nodes, named <ServerName>-1 ... <ServerName>-n.
	Servers []*Server
}

// StartCluster starts size servers from o as the nodes of one cluster,
// each with its own store under o.StoreDir and its own free client and
// route ports (o.Port and o.Cluster are ignored). It returns once every
// node accepts client connections: JetStream elects its meta leader
// after that, as it does when an operator starts nats-server on three
// hosts at once, so a client may find JetStream unavailable at first.
func StartCluster(size int, o Options) (*Cluster, error) {
	if size < 1 {
		return nil, fmt.Errorf("embedded NATS: a cluster of %d servers", size)
	}
	if o.StoreDir == "" {
		return nil, errors.New("embedded NATS: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ServerName == "" {
		o.ServerName = "sluice-embedded"
	}
	ports := make([]int, size)
	routes := make([]string, size)
	for i := range ports {
		p, err := freePort(o.Host)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: route port: %w", err)
		}
		ports[i] = p
		routes[i] = "nats-route://" + net.JoinHostPort(o.Host, strconv.Itoa(p))
	}
	c := &Cluster{}
	for i := range size {
		node := o
		node.Port = 0
		node.ServerName = fmt.Sprintf("%s-%d", o.ServerName, i+1)
		node.StoreDir = filepath.Join(o.StoreDir, node.ServerName)
		node.Cluster = &ClusterOptions{Port: ports[i], Routes: routes}
		if o.Cluster != nil {
			node.Cluster.Name = o.Cluster.Name
		}
		s, err := Start(node)
		if err != nil {
			c.Shutdown()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	return c, nil
}

// ClientURLs are the nodes' client URLs, comma-separated as --nats-url
// takes them.
func (c *Cluster) ClientURLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for _, s := range c.Servers {
		s.Shutdown()
	}
}

// freePort is a TCP port on host that nothing listens on now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
