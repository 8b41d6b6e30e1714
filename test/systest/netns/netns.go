// Package netns builds a small network of hosts on one Linux machine for
// the partition tests (test/chaos): each host is a network namespace with
// one interface on a switch (a bridge in a namespace of its own), and the
// test's own process is on the switch too. The switch is where faults
// happen, as in a real network: a cut link drops every packet between two
// hosts in both directions without telling either end (established TCP
// connections hang, new ones time out), an isolated host is cut from every
// other, a lossy link drops a share of a host's packets and a slow one
// limits its bandwidth.
//
// It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2's ip and tc,
// and nftables' nft (Debian packages iproute2 and nftables; .ci/run
// installs them). Check says what is missing. Everything a Network creates
// is removed when the test ends, whether it passed or not; namespaces left
// by a test process that died are removed by the next New.
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is returned by Check when this machine or process cannot
// build namespaces.
var ErrUnavailable = errors.New("network namespaces unavailable")

// Check returns nil when New can build a network here, or an error
// wrapping ErrUnavailable that says what is missing.
func Check() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (CAP_NET_ADMIN and CAP_SYS_ADMIN, to create namespaces); run the tests as root, as CI does")
	}
	for _, tool := range []struct{ bin, pkg string }{{"ip", "iproute2"}, {"tc", "iproute2"}, {"nft", "nftables"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s; .ci/run does)", tool.bin, tool.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrUnavailable, strings.Join(missing, "; "))
	}
	return nil
}

// Network is a switch and the hosts on it.
type Network struct {
	// Test is the test process's own namespace as a host on the switch:
	// the hosts reach servers the test runs (a data plane, ...) at
	// Test.Addr, and Cut and Isolate treat it as any other host.
	Test  *Host
	Hosts []*Host

	id       string // unique per Network on this machine
	bridgeNS string
	rootLink string // the test's interface, in the test's namespace

	mu     sync.Mutex
	cut    map[[2]string]bool // by pair of addresses, both orders
	closed bool
}

// Host is a network namespace with one address on the switch.
type Host struct {
	Name string
	// NS is the namespace's name (ip netns), empty for Network.Test.
	NS string
	// Addr is the host's IPv4 address on the switch.
	Addr string
	port string // its interface on the switch, in the bridge namespace
}

// Wrap is the command prefix that runs a program in the host:
// {"ip", "netns", "exec", NS} (nil for Network.Test). ip execs the
// program in place, so the process's PID is the program's, and signals
// reach it.
func (h *Host) Wrap() []string {
	if h.NS == "" {
		return nil
	}
	return []string{"ip", "netns", "exec", h.NS}
}

// Do runs f on a thread that has joined the host's namespace. A socket f
// opens (net.Listen, net.Dial) belongs to the host for its whole life,
// whichever goroutine later uses it.
func (h *Host) Do(f func() error) error {
	if h.NS == "" {
		return f()
	}
	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer own.Close()
	target, err := os.Open("/var/run/netns/" + h.NS)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("join host %s: %w", h.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so it ends with this goroutine
		// instead of running other goroutines in the wrong namespace.
		return fmt.Errorf("leave host %s: %w", h.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

var (
	counter atomic.Int64
	// stale matches the namespaces and interfaces New creates, with the
	// PID of the test process that made them.
	staleNS   = regexp.MustCompile(`^sluice-(\d+)-\d+-`)
	staleLink = regexp.MustCompile(`^sl(\d+)-\d+$`)
)

// New builds a network with a host per name (names are DNS-label-like:
// letters, digits, '-'; at most 12 characters) and registers its removal
// with t.Cleanup. It fails the test, saying what is needed, when Check
// does.
func New(t testing.TB, names ...string) *Network {
	t.Helper()
	if err := Check(); err != nil {
		t.Fatalf("the partition tests build hosts in network namespaces: %v", err)
	}
	n, err := build(names)
	if n != nil {
		t.Cleanup(func() {
			if err := n.Close(); err != nil {
				t.Errorf("remove the test network: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("build the test network: %v", err)
	}
	return n
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,11}$`)

func build(names []string) (*Network, error) {
	seen := map[string]bool{"test": true}
	for _, name := range names {
		if !validName.MatchString(name) || seen[name] {
			return nil, fmt.Errorf("host name %q: want a unique name of lower-case letters, digits and '-', at most 12 characters, not \"test\"", name)
		}
		seen[name] = true
	}
	if len(names) > 250 {
		return nil, fmt.Errorf("%d hosts: at most 250 fit the network's /24", len(names))
	}
	// One lock across test processes: choosing a free subnet and adding
	// the test's interface with it must not race another package's test.
	unlock, err := lockMachine()
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeStale()
	subnet, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	k := counter.Add(1)
	n := &Network{
		id:       fmt.Sprintf("%d-%d", os.Getpid(), k),
		rootLink: fmt.Sprintf("sl%d-%d", os.Getpid(), k),
		cut:      map[[2]string]bool{},
	}
	n.bridgeNS = "sluice-" + n.id + "-switch"
	if err := run("ip", "netns", "add", n.bridgeNS); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"ip", "-n", n.bridgeNS, "link", "add", "name", "br0", "type", "bridge"},
		{"ip", "-n", n.bridgeNS, "link", "set", "dev", "br0", "up"},
		{"ip", "link", "add", "name", n.rootLink, "type", "veth", "peer", "name", "p-test", "netns", n.bridgeNS},
		{"ip", "-n", n.bridgeNS, "link", "set", "dev", "p-test", "master", "br0", "up"},
		{"ip", "addr", "add", subnet + "254/24", "dev", n.rootLink},
		{"ip", "link", "set", "dev", n.rootLink, "up"},
	}
	n.Test = &Host{Name: "test", Addr: subnet + "254", port: "p-test"}
	for i, name := range names {
		h := &Host{Name: name, NS: "sluice-" + n.id + "-" + name, Addr: subnet + strconv.Itoa(i+1), port: "p-" + name}
		n.Hosts = append(n.Hosts, h)
		steps = append(steps,
			[]string{"ip", "netns", "add", h.NS},
			[]string{"ip", "-n", n.bridgeNS, "link", "add", "name", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			[]string{"ip", "-n", n.bridgeNS, "link", "set", "dev", h.port, "master", "br0", "up"},
			[]string{"ip", "-n", h.NS, "link", "set", "dev", "lo", "up"},
			[]string{"ip", "-n", h.NS, "addr", "add", h.Addr + "/24", "dev", "eth0"},
			[]string{"ip", "-n", h.NS, "link", "set", "dev", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return n, err
		}
	}
	if err := n.nft(n.ruleset()); err != nil {
		return n, err
	}
	return n, nil
}

// ruleset is the switch's filter: one set of cut (source, destination)
// pairs, and a chain per host for its loss, which Shape fills.
func (n *Network) ruleset() string {
	var b strings.Builder
	b.WriteString("table bridge sluice {\n  set cut { type ipv4_addr . ipv4_addr; }\n")
	for _, h := range append([]*Host{n.Test}, n.Hosts...) {
		fmt.Fprintf(&b, "  chain loss-%s { }\n", h.Name)
	}
	b.WriteString("  chain forward {\n    type filter hook forward priority 0; policy accept;\n    ip saddr . ip daddr @cut drop\n")
	for _, h := range append([]*Host{n.Test}, n.Hosts...) {
		fmt.Fprintf(&b, "    ip saddr %s jump loss-%s\n    ip daddr %s jump loss-%s\n", h.Addr, h.Name, h.Addr, h.Name)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// Host returns the host named name, or nil.
func (n *Network) Host(name string) *Host {
	if name == n.Test.Name {
		return n.Test
	}
	for _, h := range n.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Cut drops every packet between a and b, both ways, until Heal. Cutting
// a cut link changes nothing.
func (n *Network) Cut(a, b *Host) error { return n.setCut(true, [][2]*Host{{a, b}}) }

// Heal restores the link between a and b. Healing a link that is not cut
// changes nothing.
func (n *Network) Heal(a, b *Host) error { return n.setCut(false, [][2]*Host{{a, b}}) }

// Isolate cuts h from every other host and from the test.
func (n *Network) Isolate(h *Host) error { return n.setCut(true, n.pairsOf(h)) }

// Rejoin heals every link of h.
func (n *Network) Rejoin(h *Host) error { return n.setCut(false, n.pairsOf(h)) }

// Partition cuts every link between a host of side and a host of other.
func (n *Network) Partition(side, other []*Host) error {
	return n.setCut(true, pairs(side, other))
}

// HealPartition heals every link between a host of side and one of other.
func (n *Network) HealPartition(side, other []*Host) error {
	return n.setCut(false, pairs(side, other))
}

func pairs(side, other []*Host) [][2]*Host {
	var out [][2]*Host
	for _, a := range side {
		for _, b := range other {
			out = append(out, [2]*Host{a, b})
		}
	}
	return out
}

func (n *Network) pairsOf(h *Host) [][2]*Host {
	var out [][2]*Host
	for _, o := range append([]*Host{n.Test}, n.Hosts...) {
		if o != h {
			out = append(out, [2]*Host{h, o})
		}
	}
	return out
}

func (n *Network) setCut(cut bool, links [][2]*Host) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var elems []string
	for _, l := range links {
		a, b := l[0], l[1]
		if a == nil || b == nil || a == b {
			return fmt.Errorf("cut or heal a link between two different hosts of the network, not %v and %v", a, b)
		}
		k := [2]string{a.Addr, b.Addr}
		if n.cut[k] == cut {
			continue
		}
		elems = append(elems, a.Addr+" . "+b.Addr, b.Addr+" . "+a.Addr)
	}
	if len(elems) == 0 {
		return nil
	}
	op := "delete"
	if cut {
		op = "add"
	}
	if err := n.nft(fmt.Sprintf("%s element bridge sluice cut { %s }\n", op, strings.Join(elems, ", "))); err != nil {
		return err
	}
	for _, l := range links {
		a, b := l[0], l[1]
		n.cut[[2]string{a.Addr, b.Addr}], n.cut[[2]string{b.Addr, a.Addr}] = cut, cut
	}
	return nil
}

// Link is how a host's link to the switch behaves. The zero Link is a
// healthy one.
//
// Delay and reordering need the kernel's netem queueing discipline
// (CONFIG_NET_SCH_NETEM), which the CI machine's kernel lacks; Link
// offers what every kernel with nftables and tbf has.
type Link struct {
	// Loss is the share of the host's packets dropped, each way, in
	// percent (0-100), chosen at random per packet.
	Loss int
	// Rate, when set, limits the link's bandwidth each way, in bits per
	// second (at least 8000): packets beyond it queue, so a busy link is
	// slow, and those that would wait more than a second are dropped.
	Rate int64
}

// Validate says what is wrong with l.
func (l Link) Validate() error {
	if l.Loss < 0 || l.Loss > 100 {
		return fmt.Errorf("link loss %d%%: want 0 to 100", l.Loss)
	}
	if l.Rate != 0 && l.Rate < 8000 {
		return fmt.Errorf("link rate %d bit/s: want at least 8000, or 0 for no limit", l.Rate)
	}
	return nil
}

// Shape makes h's link behave as l until the next Shape; Shape(h, Link{})
// restores a healthy link.
func (n *Network) Shape(h *Host, l Link) error {
	if err := l.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	rules := fmt.Sprintf("flush chain bridge sluice loss-%s\n", h.Name)
	switch {
	case l.Loss == 100:
		rules += fmt.Sprintf("add rule bridge sluice loss-%s drop\n", h.Name)
	case l.Loss > 0:
		rules += fmt.Sprintf("add rule bridge sluice loss-%s numgen random mod 100 < %d drop\n", h.Name, l.Loss)
	}
	if err := n.nft(rules); err != nil {
		return err
	}
	// Both ends of the host's cable: its own interface (what it sends)
	// and the switch's port (what it receives).
	ends := [][]string{{"-n", n.bridgeNS, "qdisc", "%s", "dev", h.port, "root"}}
	if h.NS != "" {
		ends = append(ends, []string{"-n", h.NS, "qdisc", "%s", "dev", "eth0", "root"})
	} else {
		ends = append(ends, []string{"qdisc", "%s", "dev", n.rootLink, "root"})
	}
	for _, end := range ends {
		args := make([]string, len(end))
		copy(args, end)
		for i, a := range args {
			if a == "%s" {
				args[i] = "replace"
				if l.Rate == 0 {
					args[i] = "del"
				}
			}
		}
		if l.Rate > 0 {
			// A burst of 10 full packets, so that rates down to 8 kbit/s
			// still pass a packet of 1500 bytes.
			args = append(args, "tbf", "rate", strconv.FormatInt(l.Rate, 10)+"bit", "burst", "15000", "latency", "1s")
		}
		err := run(append([]string{"tc"}, args...)...)
		if err != nil && l.Rate == 0 && strings.Contains(err.Error(), "Cannot delete qdisc with handle of zero") {
			err = nil // no limit was set
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Close removes every namespace and interface of the network. It is safe
// to call twice.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	var errs []error
	if err := run("ip", "link", "del", "dev", n.rootLink); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		errs = append(errs, err)
	}
	for _, h := range n.Hosts {
		if err := delNS(h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := delNS(n.bridgeNS); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func delNS(name string) error {
	err := run("ip", "netns", "del", name)
	if err != nil && strings.Contains(err.Error(), "No such file") {
		return nil
	}
	return err
}

// Namespaces lists the namespaces and the interface of the test's
// namespace that the network holds now, to check that Close removed them.
func (n *Network) Namespaces() ([]string, error) {
	out, err := output("ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "sluice-"+n.id+"-") {
			mine = append(mine, f[0])
		}
	}
	return mine, nil
}

// RootLinkPresent reports whether the test's interface still exists.
func (n *Network) RootLinkPresent() bool {
	_, err := net.InterfaceByName(n.rootLink)
	return err == nil
}

func (n *Network) nft(script string) error {
	cmd := exec.Command("ip", "netns", "exec", n.bridgeNS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s (script: %q)", n.bridgeNS, err, strings.TrimSpace(out.String()), script)
	}
	return nil
}

func run(argv ...string) error {
	_, err := output(argv...)
	return err
}

func output(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// lockMachine takes a lock every test process on this machine shares.
func lockMachine() (func(), error) {
	f, err := os.OpenFile("/run/sluice-netns.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the netns lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("take the netns lock: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// freeSubnet returns the prefix ("10.199.7.") of a /24 in 10.199.0.0/16
// that no interface of the test's namespace uses.
func freeSubnet() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	used := map[int]bool{}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip4 := ipn.IP.To4(); ip4 != nil && ip4[0] == 10 && ip4[1] == 199 {
				used[int(ip4[2])] = true
			}
		}
	}
	for x := range 256 {
		if !used[x] {
			return fmt.Sprintf("10.199.%d.", x), nil
		}
	}
	return "", errors.New("no free /24 left in 10.199.0.0/16 for a test network")
}

// removeStale removes the namespaces and interfaces of test processes that
// are gone (killed by a test timeout, say, before their cleanup ran).
func removeStale() {
	alive := func(pid string) bool {
		p, err := strconv.Atoi(pid)
		return err == nil && (p == os.Getpid() || syscall.Kill(p, 0) == nil)
	}
	if out, err := output("ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if m := staleNS.FindStringSubmatch(f[0]); m != nil && !alive(m[1]) {
				_ = delNS(f[0])
			}
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return
	}
	for _, i := range ifs {
		if m := staleLink.FindStringSubmatch(i.Name); m != nil && !alive(m[1]) {
			_ = run("ip", "link", "del", "dev", i.Name)
		}
	}
}
