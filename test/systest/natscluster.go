package systest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
)

// ClusterSpec describes a NATSCluster: real nats-server processes (built
// from the module go.mod pins, by internal/testbin), one per node, that a
// test can kill, pause, restart and wipe, as production's three-node
// JetStream cluster (deploy/nats) can lose a node.
type ClusterSpec struct {
	// Size is the number of nodes (default 3).
	Size int
	// Hosts are the addresses node i listens on, clients, routes and
	// monitoring alike (default 127.0.0.1 for every node). A partition
	// test gives each node the address of its own network namespace.
	Hosts []string
	// Wrap, when set, is the command prefix node i runs under, e.g.
	// {"ip", "netns", "exec", "ns1"}.
	Wrap func(i int) []string
	// Dir holds each node's store, configuration and log (default
	// t.TempDir()).
	Dir string
	// SyncAlways fsyncs every JetStream write (default: the server's
	// default interval, as deploy/nats runs).
	SyncAlways bool
	// Ports, when set, are the client, route and monitoring ports of
	// every node (a node's three ports are Ports+i*3 ... +2); by default
	// free ports on 127.0.0.1 are chosen. Set it when Hosts are not
	// local addresses of this namespace.
	Ports int
	// StoreSize, when set, puts each node's store on a tmpfs of that many
	// bytes, mounted before the node starts and unmounted when the test
	// ends, so FillStore can run it out of space as a full volume does.
	// Mounting needs root (CAP_SYS_ADMIN); the test fails when it cannot.
	StoreSize int64
	// NoAdvertise keeps the nodes from telling clients the other nodes'
	// client URLs: a client then knows only the URLs it was given, so a
	// test can put a proxy (DelayProxy) between it and the cluster that a
	// reconnect does not bypass.
	NoAdvertise bool
}

// NATSCluster is a JetStream cluster of nats-server processes.
type NATSCluster struct {
	Nodes []*NATSNode
	t     testing.TB
}

// NATSNode is one nats-server process of a NATSCluster. It is not
// restarted when it exits: the test decides.
type NATSNode struct {
	Name                           string // n1, n2, ... (its server_name)
	Host                           string
	Port, ClusterPort, MonitorPort int
	StoreDir, Log                  string

	bin, conf string
	wrap      []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	starts int
}

// StartNATSCluster writes each node's configuration, starts every node and
// waits until each accepts client connections. JetStream elects its meta
// leader after that: WaitHealthy waits for it.
func StartNATSCluster(t testing.TB, s ClusterSpec) *NATSCluster {
	t.Helper()
	if s.Size == 0 {
		s.Size = 3
	}
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	bin := testbin.Path(t, "nats-server")
	c := &NATSCluster{t: t}
	for i := range s.Size {
		n := &NATSNode{Name: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", bin: bin}
		if i < len(s.Hosts) {
			n.Host = s.Hosts[i]
		}
		if s.Ports > 0 {
			n.Port, n.ClusterPort, n.MonitorPort = s.Ports+i*3, s.Ports+i*3+1, s.Ports+i*3+2
		} else {
			n.Port, n.ClusterPort, n.MonitorPort = FreePort(t), FreePort(t), FreePort(t)
		}
		dir := filepath.Join(s.Dir, n.Name)
		n.StoreDir, n.Log, n.conf = filepath.Join(dir, "store"), filepath.Join(dir, "nats-server.log"), filepath.Join(dir, "nats-server.conf")
		if s.Wrap != nil {
			n.wrap = s.Wrap(i)
		}
		c.Nodes = append(c.Nodes, n)
	}
	var routes []string
	for _, n := range c.Nodes {
		routes = append(routes, fmt.Sprintf("nats-route://%s", net.JoinHostPort(n.Host, strconv.Itoa(n.ClusterPort))))
	}
	for _, n := range c.Nodes {
		if err := os.MkdirAll(filepath.Dir(n.conf), 0o755); err != nil {
			t.Fatal(err)
		}
		if s.StoreSize > 0 {
			mountTmpfs(t, n.StoreDir, s.StoreSize)
		}
		if err := os.WriteFile(n.conf, []byte(n.config(routes, s.SyncAlways, s.NoAdvertise)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.Shutdown)
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		poll.Until(t, n.Name+" accepting client connections", func() error {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(n.Host, strconv.Itoa(n.Port)), time.Second)
			if err != nil {
				return fmt.Errorf("%w (log: %s)", err, n.LogTail(5))
			}
			return conn.Close()
		}, poll.Timeout(time.Minute))
	}
	return c
}

func (n *NATSNode) config(routes []string, syncAlways, noAdvertise bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: %q\nhttp: %q\nmax_payload: 8MB\n", n.Name,
		net.JoinHostPort(n.Host, strconv.Itoa(n.Port)), net.JoinHostPort(n.Host, strconv.Itoa(n.MonitorPort)))
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n", n.StoreDir)
	if syncAlways {
		b.WriteString("  sync_interval: always\n")
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "cluster {\n  name: sluice\n  listen: %q\n  routes: [\n", net.JoinHostPort(n.Host, strconv.Itoa(n.ClusterPort)))
	for _, r := range routes {
		fmt.Fprintf(&b, "    %q\n", r)
	}
	b.WriteString("  ]\n")
	if noAdvertise {
		b.WriteString("  no_advertise: true\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// ClientURL is the node's nats:// URL.
func (n *NATSNode) ClientURL() string {
	return "nats://" + net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
}

// ClientURLs are every node's client URLs, comma-separated as --nats-url
// takes them.
func (c *NATSCluster) ClientURLs() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node whose server_name is name, or nil.
func (c *NATSCluster) Node(name string) *NATSNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Start starts the node's process on its store, as an operator restarting
// nats-server does. It fails when the node is running.
func (n *NATSNode) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("%s is running", n.Name)
	}
	f, err := os.OpenFile(n.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	argv := append(append([]string{}, n.wrap...), n.bin, "-c", n.conf)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	n.cmd, n.exited, n.paused = cmd, exited, false
	n.starts++
	go func() {
		_ = cmd.Wait()
		f.Close()
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the node's process runs (paused or not).
func (n *NATSNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Starts counts the times the node was started.
func (n *NATSNode) Starts() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts
}

// Kill sends SIGKILL and waits until the process is gone.
func (n *NATSNode) Kill() error { return n.stop(syscall.SIGKILL) }

// Stop sends SIGTERM (nats-server shuts down cleanly) and waits until
// the process is gone.
func (n *NATSNode) Stop() error { return n.stop(syscall.SIGTERM) }

func (n *NATSNode) stop(sig syscall.Signal) error {
	n.mu.Lock()
	cmd, exited, paused := n.cmd, n.exited, n.paused
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s is not running", n.Name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", n.Name, err)
	}
	if paused && sig != syscall.SIGKILL {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s did not exit within a minute of %s; killed", n.Name, sig)
	}
}

// Pause stops the process with SIGSTOP: it keeps its sockets open and
// answers nothing, as a node in a long GC pause or a frozen VM does.
func (n *NATSNode) Pause() error { return n.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process (SIGCONT).
func (n *NATSNode) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *NATSNode) signal(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("%s is not running", n.Name)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", n.Name, err)
	}
	n.paused = paused
	return nil
}

// WipeStore deletes the node's JetStream store, as a host whose disk was
// replaced loses it. The node must not be running.
func (n *NATSNode) WipeStore() error {
	if n.Running() {
		return fmt.Errorf("%s is running: stop it before wiping its store", n.Name)
	}
	return os.RemoveAll(n.StoreDir)
}

// mountTmpfs mounts a tmpfs of size bytes on dir and unmounts it when the
// test ends. Registered before the cluster's Shutdown, the unmount runs
// after it: no process holds the store then.
func mountTmpfs(t testing.TB, dir string, size int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mount a tmpfs of %d bytes on %s for a node's store (ClusterSpec.StoreSize needs root): %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Something still holds it: detach it so it goes when
			// released, and say so.
			t.Errorf("unmount the store tmpfs %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// FillStore writes a file into the node's store until its filesystem has
// no space left (ENOSPC), as a volume filled by something else does, and
// returns how many bytes it wrote and a function that deletes the file.
// The store must be on a filesystem of its own (ClusterSpec.StoreSize):
// anywhere else it would fill the machine's disk, so it refuses.
func (n *NATSNode) FillStore() (int64, func() error, error) { return n.FillStoreLeaving(0) }

// FillStoreLeaving is FillStore that stops when about free bytes are
// left (within one 64 KiB write).
func (n *NATSNode) FillStoreLeaving(free int64) (int64, func() error, error) {
	var here, parent syscall.Stat_t
	if err := syscall.Stat(n.StoreDir, &here); err != nil {
		return 0, nil, err
	}
	if err := syscall.Stat(filepath.Dir(n.StoreDir), &parent); err != nil {
		return 0, nil, err
	}
	if here.Dev == parent.Dev {
		return 0, nil, fmt.Errorf("%s's store %s is not a filesystem of its own (set ClusterSpec.StoreSize): filling it would fill the machine's disk", n.Name, n.StoreDir)
	}
	path := filepath.Join(n.StoreDir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, nil, err
	}
	release := func() error { return os.Remove(path) }
	chunk := make([]byte, 64<<10)
	var wrote int64
	for {
		var fs syscall.Statfs_t
		if err := syscall.Statfs(n.StoreDir, &fs); err != nil {
			f.Close()
			return wrote, release, err
		}
		if free > 0 && int64(fs.Bavail)*int64(fs.Bsize) <= free {
			break
		}
		k, err := f.Write(chunk)
		wrote += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			f.Close()
			return wrote, release, fmt.Errorf("fill %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		return wrote, release, fmt.Errorf("fill %s: %w", path, err)
	}
	return wrote, release, nil
}

// Healthy is why the node's /healthz does not answer 200 (nats-server's
// own check: JetStream enabled and its streams and consumers current),
// or "" when it does.
func (n *NATSNode) Healthy() string {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(n.Host, strconv.Itoa(n.MonitorPort)) + "/healthz")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	var body [512]byte
	k, _ := resp.Body.Read(body[:])
	return fmt.Sprintf("%s: %d %s", n.Name, resp.StatusCode, strings.TrimSpace(string(body[:k])))
}

// ServesDirectGets is why the node does not answer direct gets of stream
// (a key-value bucket B is stream KV_B, whose reads are direct gets), or
// "" when it does: it has joined the queue group that answers them, which
// a follower does only once it has caught up (checked every 2 s), so a
// new stream's reads go to its leader alone at first.
func (n *NATSNode) ServesDirectGets(stream string) string {
	subject := "$JS.API.DIRECT.GET." + stream + ".>"
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(n.Host, strconv.Itoa(n.MonitorPort)) + "/subsz?subs=1&limit=4096&test=" + url.QueryEscape(strings.TrimSuffix(subject, ">")+"x"))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var subsz struct {
		Subs []struct {
			Subject string `json:"subject"`
			Queue   string `json:"qgroup"`
		} `json:"subscriptions_list"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&subsz); err != nil {
		return fmt.Sprintf("%s /subsz: %v", n.Name, err)
	}
	for _, sub := range subsz.Subs {
		if sub.Subject == subject && sub.Queue != "" {
			return ""
		}
	}
	return fmt.Sprintf("%s has no subscription to %s", n.Name, subject)
}

// WaitServesDirectGets waits until every node answers direct gets of
// stream (ServesDirectGets).
func (c *NATSCluster) WaitServesDirectGets(t testing.TB, stream string) {
	t.Helper()
	for _, n := range c.Nodes {
		poll.Until(t, n.Name+" answering direct gets of "+stream, func() error {
			if why := n.ServesDirectGets(stream); why != "" {
				return errors.New(why)
			}
			return nil
		}, poll.Timeout(time.Minute))
	}
}

// WaitHealthy waits until every running node answers /healthz with 200.
func (c *NATSCluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	err := poll.Wait("every running NATS node healthy", func() error {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			if why := n.Healthy(); why != "" {
				return fmt.Errorf("%s", why)
			}
		}
		return nil
	}, poll.Timeout(timeout))
	if err != nil {
		var logs strings.Builder
		for _, n := range c.Nodes {
			fmt.Fprintf(&logs, "--- %s\n%s\n", n.Name, n.LogTail(15))
		}
		t.Fatalf("%v\n%s", err, logs.String())
	}
}

// Leader returns the node that leads stream (a key-value bucket B is
// stream KV_B), asked through a client of the whole cluster.
func (c *NATSCluster) Leader(ctx context.Context, stream string) (*NATSNode, error) {
	nc, err := nats.Connect(c.ClientURLs(), nats.Name("systest-leader"), nats.Timeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream %s has no leader now", stream)
	}
	if n := c.Node(info.Cluster.Leader); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("stream %s is led by %q, not a node of this cluster", stream, info.Cluster.Leader)
}

// MoveLeader makes node `to` the leader of stream (a key-value bucket B is
// stream KV_B): the leader steps down in its favour (JetStream's stepdown
// with a preferred placement), as an operator's `nats stream cluster
// step-down --preferred` does. It returns once node leads.
func (c *NATSCluster) MoveLeader(ctx context.Context, stream string, to *NATSNode) error {
	nc, err := nats.Connect(c.ClientURLs(), nats.Name("systest-move-leader"), nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, to.Name)
	return poll.Wait(to.Name+" leading "+stream, func() error {
		leader, err := c.Leader(ctx, stream)
		if err != nil {
			return err
		}
		if leader == to {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req))
		if err != nil {
			return fmt.Errorf("step down %s's leader %s: %w", stream, leader.Name, err)
		}
		return fmt.Errorf("%s still led by %s (stepdown answered %s)", stream, leader.Name, resp.Data)
	}, poll.Timeout(time.Minute), poll.Every(time.Second))
}

// LogTail is the last lines of the node's log.
func (n *NATSNode) LogTail(lines int) string { return fileTail(n.Log, lines) }

// Shutdown stops every running node (resuming a paused one first).
func (c *NATSCluster) Shutdown() {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if err := n.Stop(); err != nil {
			c.t.Log(err)
		}
	}
}
