package netns

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// listen opens a TCP listener in h that accepts and serves every
// connection by copying what it reads to io.Discard.
func listen(t *testing.T, h *Host) string {
	t.Helper()
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(h.Addr, "7000"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// dial connects from h to addr; the error says why it could not.
func dial(h *Host, addr string) error {
	return h.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// timedOut reports whether err is a dial that got no answer, as across a
// partition (not one refused or unroutable, which a cut must not cause).
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestCutHealIsolate(t *testing.T) {
	n := New(t, "a", "b", "c")
	a, b, c := n.Host("a"), n.Host("b"), n.Host("c")
	addr := listen(t, b)
	for _, h := range []*Host{a, c, n.Test} {
		if err := dial(h, addr); err != nil {
			t.Fatalf("%s cannot reach b before any fault: %v", h.Name, err)
		}
	}

	if err := n.Cut(a, b); err != nil {
		t.Fatal(err)
	}
	if err := dial(a, addr); !timedOut(err) {
		t.Errorf("a dialled b across a cut link: got %v, want a timeout", err)
	}
	if err := dial(c, addr); err != nil {
		t.Errorf("c cannot reach b while only a-b is cut: %v", err)
	}
	if err := n.Heal(a, b); err != nil {
		t.Fatal(err)
	}
	if err := dial(a, addr); err != nil {
		t.Errorf("a cannot reach b after the heal: %v", err)
	}

	if err := n.Isolate(b); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Host{a, c, n.Test} {
		if err := dial(h, addr); !timedOut(err) {
			t.Errorf("%s dialled isolated b: got %v, want a timeout", h.Name, err)
		}
	}
	if err := dial(a, net.JoinHostPort(c.Addr, "1")); err == nil || timedOut(err) {
		t.Errorf("a to c while b is isolated: got %v, want connection refused (c is up, nothing listens)", err)
	}
	if err := n.Rejoin(b); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Host{a, c, n.Test} {
		if err := dial(h, addr); err != nil {
			t.Errorf("%s cannot reach b after it rejoined: %v", h.Name, err)
		}
	}
}

func TestPartitionKeepsEachSideConnected(t *testing.T) {
	n := New(t, "n1", "n2", "n3")
	n1, n2, n3 := n.Host("n1"), n.Host("n2"), n.Host("n3")
	at2, at3 := listen(t, n2), listen(t, n3)
	if err := n.Partition([]*Host{n1}, []*Host{n2, n3}); err != nil {
		t.Fatal(err)
	}
	if err := dial(n2, at3); err != nil {
		t.Errorf("the majority side n2-n3 lost its link: %v", err)
	}
	for _, addr := range []string{at2, at3} {
		if err := dial(n1, addr); !timedOut(err) {
			t.Errorf("the minority n1 reached %s: got %v, want a timeout", addr, err)
		}
	}
	if err := n.HealPartition([]*Host{n1}, []*Host{n2, n3}); err != nil {
		t.Fatal(err)
	}
	if err := dial(n1, at2); err != nil {
		t.Errorf("n1 cannot reach n2 after the heal: %v", err)
	}
}

// TestShapedLink sends 64 KB over a link limited to 64 kbit/s, which must
// take at least the 6 s the bytes beyond the burst need (a lower bound: a
// loaded machine is slower, never faster); a link with 100% loss passes
// nothing; both heal.
func TestShapedLink(t *testing.T) {
	n := New(t, "a", "b")
	a, b := n.Host("a"), n.Host("b")
	addr := listen(t, b)
	send := func() (time.Duration, error) {
		var took time.Duration
		err := a.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			start := time.Now()
			if _, err := c.Write(make([]byte, 64<<10)); err != nil {
				return err
			}
			// Closing the write side and waiting for the peer's close
			// makes the time cover delivery, not only the copy into the
			// kernel's buffer.
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			_, err = io.Copy(io.Discard, c)
			took = time.Since(start)
			return err
		})
		return took, err
	}
	if err := n.Shape(a, Link{Rate: 64000}); err != nil {
		t.Fatal(err)
	}
	took, err := send()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("64 KB over a 64 kbit/s link: %s", took.Round(time.Millisecond))
	if took < 6*time.Second {
		t.Errorf("64 KB crossed a 64 kbit/s link in %s, want at least 6s: the rate limit did not hold", took)
	}
	if err := n.Shape(a, Link{Loss: 100}); err != nil {
		t.Fatal(err)
	}
	if err := dial(a, addr); !timedOut(err) {
		t.Errorf("dial across a link losing every packet: got %v, want a timeout", err)
	}
	if err := n.Shape(a, Link{}); err != nil {
		t.Fatal(err)
	}
	took, err = send()
	if err != nil {
		t.Fatalf("after the link healed: %v", err)
	}
	t.Logf("64 KB over the healed link: %s", took.Round(time.Millisecond))
	for _, bad := range []Link{{Loss: -1}, {Loss: 101}, {Rate: 100}} {
		if err := n.Shape(a, bad); err == nil {
			t.Errorf("Shape(%+v) accepted", bad)
		}
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	n := New(t, "a", "b")
	if ns, err := n.Namespaces(); err != nil || len(ns) != 3 {
		t.Fatalf("namespaces before Close: %v, %v; want the two hosts' and the switch's", ns, err)
	}
	if !n.RootLinkPresent() {
		t.Fatal("the test's interface is missing before Close")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if ns, err := n.Namespaces(); err != nil || len(ns) != 0 {
		t.Errorf("namespaces left after Close: %v (%v)", ns, err)
	}
	if n.RootLinkPresent() {
		t.Error("the test's interface is left after Close")
	}
}

func TestBadHostNames(t *testing.T) {
	for _, names := range [][]string{{"Upper"}, {"a", "a"}, {"test"}, {"much-too-long-name"}, {"-x"}} {
		if n, err := build(names); err == nil {
			n.Close()
			t.Errorf("hosts %q accepted", names)
		} else if !strings.Contains(err.Error(), "host name") {
			t.Errorf("hosts %q: %v, want an error naming the host name", names, err)
		}
	}
}

func TestCheckHere(t *testing.T) {
	// The suite runs as root with iproute2 and nftables (.ci/run); this
	// says what is missing when it does not.
	if err := Check(); err != nil {
		t.Fatalf("%v (uid %d)", err, os.Geteuid())
	}
}
