package ghost

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// rawConn opens a TCP connection to n's port.
func rawConn(t *testing.T, n *Node) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGarbageOnThePortHarmsNothing(t *testing.T) {
	c := newCluster(t, 2, true)
	target, ctx := c.nodes[1], context.Background()
	hello := append([]byte{preambleCache}, magic...)
	hello = append(hello, ProtocolVersion)
	frame := func(size uint32, body []byte) []byte {
		return append([]byte{byte(size >> 24), byte(size >> 16), byte(size >> 8), byte(size)}, body...)
	}
	sends := map[string][]byte{
		"random bytes":          []byte("\x9a\x07\xffgarbage\x00\x01"),
		"wrong magic":           append([]byte{preambleCache}, "NOTGHOST"...),
		"half a handshake":      hello[:3],
		"half a frame":          append(slices.Clone(hello), frame(100, []byte{0x95, 0x01})...),
		"frame over the limit":  append(slices.Clone(hello), frame(1<<30, nil)...),
		"frame of garbage":      append(slices.Clone(hello), frame(4, []byte{0xc1, 0xc1, 0xc1, 0xc1})...),
		"request of wrong size": append(slices.Clone(hello), frame(2, []byte{0x91, 0x01})...),
		"gossip garbage":        append([]byte{preambleGossip}, "\xff\xfe junk"...),
		"other version":         append(append([]byte{preambleCache}, magic...), ProtocolVersion+7),
	}
	for name, b := range sends {
		conn := rawConn(t, target)
		if _, err := conn.Write(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// UDP garbage on the gossip port, too.
	if u, err := net.Dial("udp", target.Addr()); err == nil {
		u.Write([]byte("not a memberlist packet"))
		u.Close()
	}
	// The refused version learns why.
	conn := rawConn(t, target)
	conn.Write(append(append([]byte{preambleCache}, magic...), ProtocolVersion+7))
	reply := make([]byte, len(magic)+2)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(reply); err != nil || reply[len(reply)-1] != 1 {
		t.Fatalf("handshake of another version: reply %v, %v", reply, err)
	}
	// And the node keeps serving, for its peers and for new connections.
	for i := range 50 {
		k := c.keyOwnedBy(target, fmt.Sprint("after-garbage", i))
		if err := c.nodes[0].Put(ctx, k, i, NoExpiry); err != nil {
			t.Fatalf("Put after garbage: %v", err)
		}
	}
	p := newPeerPool(c.nodes[0].peerSetup(), target.Addr())
	defer p.close()
	if _, err := p.call(ctx, &request{op: OpPing}); err != nil {
		t.Fatalf("fresh connection after garbage: %v", err)
	}
}

func TestConnectionsPastTheLimitAreClosed(t *testing.T) {
	c := newCluster(t, 1, true, func(cfg *Config) { cfg.MaxConnections = 8 })
	n := c.nodes[0]
	var held []net.Conn
	for range 8 {
		conn, _ := dialCache(t, n.Addr())
		held = append(held, conn)
	}
	// The ninth is closed as soon as it is accepted (a served one would
	// wait 10 s for its first byte).
	extra := rawConn(t, n)
	_ = extra.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(extra); len(got) != 0 || err != nil {
		t.Fatalf("a connection past the limit read %q, %v; want it closed", got, err)
	}
	// A place freed is taken again.
	held[0].Close()
	waitFor(t, 5*time.Second, func() error {
		if open := n.server.open.Load(); open > 7 {
			return fmt.Errorf("%d connections counted open", open)
		}
		return nil
	})
	conn, br := dialCache(t, n.Addr())
	conn.Write(requestFrame(&request{id: 1, op: OpPing}))
	if resp, err := readResponse(br); err != nil || resp.status != statusOK {
		t.Fatalf("ping after a place was freed: %+v, %v", resp, err)
	}
}

// Attack 4: a burst of connections past the process's file limit. accept
// failed with EMFILE once and the accept loop returned for good, while
// gossip still reported the node alive.
func TestAcceptSurvivesRunningOutOfFiles(t *testing.T) {
	c := newCluster(t, 1, true)
	child := startChildNode(t, 64, c.nodes[0].Addr())
	waitFor(t, 10*time.Second, func() error {
		if m := c.nodes[0].Members(); !slices.Contains(m, child.addr) {
			return fmt.Errorf("members %v lack the child %s", m, child.addr)
		}
		return nil
	})
	start := time.Now()
	var burst []net.Conn
	for range 150 {
		conn, err := net.DialTimeout("tcp", child.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(burst), err)
		}
		burst = append(burst, conn)
	}
	// Out of files, the node keeps trying, and says so once a second: wait
	// for the second time it says so.
	waitFor(t, 10*time.Second, func() error {
		if strings.Count(child.stderr.String(), "accept failed") < 2 {
			return fmt.Errorf("the child has not been out of files for a second; it logged:\n%s", child.stderr)
		}
		return nil
	})
	for _, conn := range burst {
		conn.Close()
	}
	// The node accepts again, and serves its keys to the cluster.
	waitFor(t, 15*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", child.addr, time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		conn.Write(append(cacheHello(), requestFrame(&request{id: 1, op: OpPing})...))
		br := bufio.NewReader(conn)
		if _, err := io.ReadFull(br, make([]byte, len(magic)+2)); err != nil {
			return fmt.Errorf("handshake: %v", err)
		}
		_, err = readResponse(br)
		return err
	})
	elapsed := time.Since(start)
	k := "files-0"
	for i := 1; c.nodes[0].Owner(k) != child.addr; i++ {
		k = fmt.Sprint("files-", i)
	}
	if err := c.nodes[0].Put(context.Background(), k, "v", NoExpiry); err != nil {
		t.Fatal(err)
	}
	if resp := rawCall(t, child.addr, &request{id: 1, op: OpGet, key: k}); resp.status != statusOK {
		t.Fatalf("the child does not hold its key: %+v", resp)
	}
	// Failures are logged at most once a second.
	failures := strings.Count(child.stderr.String(), "accept failed")
	t.Logf("out of files for a while; %d failures logged in %v:\n%s", failures, elapsed.Round(time.Millisecond), child.stderr)
	if strings.Contains(child.stderr.String(), "no longer serves") {
		t.Fatal("the child's accept loop gave up")
	}
	if failures > int(elapsed/time.Second)+1 {
		t.Fatalf("%d failures logged in %v", failures, elapsed)
	}
}

// A node's network is TCP unless the configuration names another; only
// TCP beyond loopback is reachable from other hosts; no name resolves on
// an in-memory network.
func TestNetworks(t *testing.T) {
	cfg, err := Config{Addr: "127.0.0.1:0"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Network.(TCPNetwork); !ok {
		t.Errorf("default network %T, want TCPNetwork", cfg.Network)
	}
	mem := NewMemNetwork()
	for _, c := range []struct {
		net     Network
		addr    string
		exposed bool
	}{
		{TCPNetwork{}, "127.0.0.1:7991", false},
		{TCPNetwork{}, "[::1]:7991", false},
		{TCPNetwork{}, "10.1.2.3:7991", true},
		{TCPNetwork{}, ":7991", true},
		{mem, "10.1.2.3:7991", false},
	} {
		if got := c.net.exposed(c.addr); got != c.exposed {
			t.Errorf("%T.exposed(%s) = %v, want %v", c.net, c.addr, got, c.exposed)
		}
	}
	if _, err := mem.lookupHost(context.Background(), "localhost"); err == nil {
		t.Error("an in-memory network resolved a host name")
	}
}
