package ghost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNodeKilledWithoutLeave(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		t.Run(fmt.Sprint("tcp=", tcp), func(t *testing.T) {
			c := newCluster(t, 3, tcp, fastFailureDetection)
			ctx := context.Background()
			victim := c.nodes[2]
			keys := make([]string, 5)
			for i := range keys {
				keys[i] = c.keyOwnedBy(victim, fmt.Sprint("doomed", i))
				if err := c.nodes[0].Put(ctx, keys[i], i, NoExpiry); err != nil {
					t.Fatal(err)
				}
			}
			victim.halt()
			want := []string{c.nodes[0].Addr(), c.nodes[1].Addr()}
			slices.Sort(want)
			waitFor(t, 10*time.Second, func() error {
				for _, n := range c.nodes[:2] {
					up, err := n.Ping(ctx)
					if err != nil || !slices.Equal(up, want) {
						return fmt.Errorf("Ping via %s = %v, %v", n.Addr(), up, err)
					}
				}
				return nil
			})
			c.waitConverged()
			// The keys the dead node owned have a new owner that serves them.
			for i, k := range keys {
				if _, err := c.nodes[1].Get(ctx, k); err != nil && !errors.Is(err, ErrCacheMiss) {
					t.Fatalf("Get of a key the dead node owned: %v", err)
				}
				if err := c.nodes[0].Put(ctx, k, i, NoExpiry); err != nil {
					t.Fatalf("Put after the owner died: %v", err)
				}
				if it, err := c.nodes[1].Get(ctx, k); err != nil || it.Value != int64(i) {
					t.Fatalf("Get after the owner died = %v, %v", it.Value, err)
				}
			}
		})
	}
}

func TestCallsFallBackWhenOwnerUnreachable(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.RequestTimeout = 300 * time.Millisecond
	})
	ctx := context.Background()
	victim := c.nodes[2]
	k := c.keyOwnedBy(victim, "cut")
	c.net.Isolate(victim.Addr())
	// Before gossip notices, the call fails over to the next node of the
	// partition instead of failing.
	if err := c.nodes[0].Put(ctx, k, "v", NoExpiry); err != nil {
		t.Fatalf("Put with the owner cut off: %v", err)
	}
	if c.nodes[0].stats.forwardErrors.Load() == 0 {
		t.Fatal("the failed forward was not counted")
	}
	if _, err := c.nodes[0].Get(ctx, k); err != nil {
		t.Fatalf("Get from the fallback node: %v", err)
	}
}

func TestNoMoreServers(t *testing.T) {
	c := newCluster(t, 5, false, func(cfg *Config) { cfg.RequestTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	from := c.nodes[0]
	// Find a key none of whose three servers is the caller, and cut them.
	var k string
	r := from.ring.Load()
	for i := 0; k == ""; i++ {
		cand := fmt.Sprint("nms", i)
		if !slices.ContainsFunc(r.owners[from.partitionOf(cand)], func(j int) bool { return r.members[j].name == from.name }) {
			k = cand
		}
	}
	for _, j := range r.owners[from.partitionOf(k)] {
		c.net.Isolate(r.members[j].addr)
	}
	if _, err := from.Get(ctx, k); !errors.Is(err, ErrNoMoreServers) {
		t.Fatalf("Get with every server cut off: %v", err)
	}
}

func TestLeaveIsSeenAtOnce(t *testing.T) {
	c := newCluster(t, 3, true)
	leaver := c.nodes[1]
	if err := leaver.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, func() error {
		for _, n := range []*Node{c.nodes[0], c.nodes[2]} {
			if slices.Contains(n.Members(), leaver.Addr()) {
				return fmt.Errorf("%s still lists %s", n.Addr(), leaver.Addr())
			}
		}
		return nil
	})
	if err := leaver.Leave(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Leave: %v", err)
	}
	if err := leaver.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close after Leave: %v", err)
	}
	ctx := context.Background()
	if _, err := leaver.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Leave: %v", err)
	}
	if err := leaver.Put(ctx, "k", 1, NoExpiry); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Leave: %v", err)
	}
	if _, err := leaver.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ping after Leave: %v", err)
	}
}

func TestUnreachableSeedsDoNotStopJoin(t *testing.T) {
	mem := NewMemNetwork()
	cfg := testConfig(mem)
	cfg.Peers = []string{"127.0.0.1:30001"} // nobody there yet
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := Join(ctx, cfg)
	if err != nil {
		t.Fatalf("Join with an unreachable seed: %v", err)
	}
	defer a.Close()
	if got := a.Members(); len(got) != 1 {
		t.Fatalf("members %v, want only itself", got)
	}
	later := testConfig(mem)
	later.Addr = "127.0.0.1:30001"
	b, err := Join(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// a keeps retrying its seed, and finds b.
	waitFor(t, 5*time.Second, func() error {
		if len(a.Members()) != 2 || len(b.Members()) != 2 {
			return fmt.Errorf("a sees %v, b sees %v", a.Members(), b.Members())
		}
		return nil
	})
}

func TestPeersFileIsReread(t *testing.T) {
	mem := NewMemNetwork()
	dir := t.TempDir()
	file := filepath.Join(dir, "nodes.conf")
	write := func(lines ...string) {
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("# empty cluster for now", "")
	ctx := context.Background()
	cfg := testConfig(mem)
	cfg.PeersFile = file
	cfg.PeersRefresh = 50 * time.Millisecond
	a, err := Join(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Join(ctx, testConfig(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The file now names b, and a itself, which is harmless.
	write(a.Addr(), b.Addr()+" # added later")
	waitFor(t, 5*time.Second, func() error {
		if len(a.Members()) != 2 || len(b.Members()) != 2 {
			return fmt.Errorf("a sees %v, b sees %v", a.Members(), b.Members())
		}
		return nil
	})
}

func TestPeersFileFromURL(t *testing.T) {
	seed, err := Join(context.Background(), testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer seed.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# served node list\n%s\n", seed.Addr())
	}))
	defer srv.Close()
	cfg := testConfig(nil)
	cfg.PeersFile = srv.URL + "/nodes.conf"
	n, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitFor(t, 5*time.Second, func() error {
		if len(n.Members()) != 2 {
			return fmt.Errorf("members %v", n.Members())
		}
		return nil
	})

	gone := httptest.NewServer(http.NotFoundHandler())
	defer gone.Close()
	missing := testConfig(nil)
	missing.PeersFile = gone.URL + "/nodes.conf"
	if _, err := Join(context.Background(), missing); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Join with a node list URL that answers 404: %v", err)
	}
}

func TestParseNodeList(t *testing.T) {
	good := "10.0.0.7\n10.0.0.8:7000\n[fd00::7]:7991\nfd00::8\n\n  # a comment\ncache-1.example.internal\ncache-2:8000 # trailing comment\n"
	got, err := parseNodeList(strings.NewReader(good), "nodes.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.7:7991", "10.0.0.8:7000", "[fd00::7]:7991", "[fd00::8]:7991", "cache-1.example.internal:7991", "cache-2:8000"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{
		"10.0.0.7:",
		"10.0.0.7:abc",
		"10.0.0.7:70000",
		"10.0.0.7:0",
		"[fd00::7",
		"[10.0.0.7]:7991",
		"two words",
		"bad_host!name",
		"-leading-dash",
		"a:b:c:d:zz",
	} {
		_, err := parseNodeList(strings.NewReader("10.0.0.1\n\n"+bad+"\n"), "nodes.conf")
		if err == nil || !strings.Contains(err.Error(), "nodes.conf:3") {
			t.Errorf("line %q: err %v, want one naming nodes.conf:3", bad, err)
		}
	}
}

func TestJoinRejectsMalformedNodeList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gdb.conf")
	os.WriteFile(file, []byte("127.0.0.1\n127.0.0.1:notaport\n"), 0o644)
	cfg := testConfig(NewMemNetwork())
	cfg.PeersFile = file
	_, err := Join(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), file+":2") {
		t.Fatalf("Join: %v, want an error naming %s:2", err, file)
	}
	cfg.PeersFile = filepath.Join(t.TempDir(), "missing.conf")
	if _, err := Join(context.Background(), cfg); err == nil {
		t.Fatal("Join with a missing node list succeeded")
	}
	cfg.PeersFile = ""
	cfg.Peers = []string{"not a seed"}
	if _, err := Join(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "Peers[0]") {
		t.Fatalf("Join with a bad seed: %v", err)
	}
}

func TestPeerOfAnotherVersionStaysOut(t *testing.T) {
	c := newCluster(t, 2, true)
	cfg := testConfig(nil)
	cfg.Peers = []string{c.nodes[0].Addr()}
	cfg.protocolVersion = ProtocolVersion + 1
	odd, err := Join(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer odd.Close()
	ctx := context.Background()
	// Join's push/pull has run both ways: each side refused the other.
	// The cache protocol refuses it too.
	if _, err := dialPeer(ctx, c.nodes[0], odd.Addr()); !errors.Is(err, ErrProtocolVersion) {
		t.Fatalf("dial to a node of another version: %v", err)
	}
	for _, n := range c.nodes {
		if slices.Contains(n.Members(), odd.Addr()) {
			t.Fatalf("%s let a node of another version in", n.Addr())
		}
	}
	if len(odd.Members()) != 1 {
		t.Fatalf("the odd node sees %v", odd.Members())
	}
	for i := range 20 {
		k := fmt.Sprint("v", i)
		if err := c.nodes[1].Put(ctx, k, i, NoExpiry); err != nil {
			t.Fatalf("cluster stopped serving: %v", err)
		}
	}
}

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
	p := &peerPool{node: c.nodes[0], addr: target.Addr(), slots: make([]poolSlot, 1)}
	defer p.close()
	if _, err := p.call(ctx, &request{op: OpPing}); err != nil {
		t.Fatalf("fresh connection after garbage: %v", err)
	}
}

func TestBadKeysAndValues(t *testing.T) {
	c := newCluster(t, 2, false, func(cfg *Config) { cfg.MaxValueSize = 1000 })
	n, ctx := c.nodes[0], context.Background()
	for name, key := range map[string]string{
		"empty":     "",
		"too long":  strings.Repeat("k", MaxKeyLen+1),
		"not UTF-8": "bad\xff\xfekey",
	} {
		if _, err := n.Get(ctx, key); !errors.Is(err, ErrKey) {
			t.Errorf("Get with a key %s: %v", name, err)
		}
		if err := n.Put(ctx, key, 1, NoExpiry); !errors.Is(err, ErrKey) {
			t.Errorf("Put with a key %s: %v", name, err)
		}
		if err := n.Add(ctx, key, 1, NoExpiry); !errors.Is(err, ErrKey) {
			t.Errorf("Add with a key %s: %v", name, err)
		}
		if err := n.Delete(ctx, key); !errors.Is(err, ErrKey) {
			t.Errorf("Delete with a key %s: %v", name, err)
		}
	}
	if err := n.Put(ctx, strings.Repeat("k", MaxKeyLen), 1, NoExpiry); err != nil {
		t.Fatalf("a key of exactly MaxKeyLen bytes: %v", err)
	}
	if err := n.Put(ctx, "big", make([]byte, 1000), NoExpiry); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("oversized value: %v", err)
	}
	if err := n.Put(ctx, "unencodable", make(chan int), NoExpiry); err == nil {
		t.Fatal("a channel value was accepted")
	}
	if _, err := n.Get(ctx, "big"); !errors.Is(err, ErrCacheMiss) {
		t.Fatalf("a rejected value was stored: %v", err)
	}
	// The owner checks too, whatever a peer sends.
	resp := n.serve(&request{op: OpPut, key: "x", value: make([]byte, 2000)})
	if _, err := resp.result(); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("owner accepted an oversized value: %v", err)
	}
	resp = n.serve(&request{op: OpGet, key: ""})
	if _, err := resp.result(); !errors.Is(err, ErrKey) {
		t.Fatalf("owner accepted an empty key: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"bad addr":         {Addr: "nonsense"},
		"value over bytes": {MaxBytes: 100, MaxValueSize: 1000},
		"negative ttl":     {DefaultTTL: -5 * time.Second},
		"short key":        {SecretKey: []byte("short")},
	} {
		cfg.Network = NewMemNetwork()
		if _, err := Join(context.Background(), cfg); err == nil {
			t.Errorf("%s: Join succeeded", name)
		}
	}
}
