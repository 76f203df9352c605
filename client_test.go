package ghost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
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

func TestReadsFallBackWhenOwnerUnreachable(t *testing.T) {
	c := newCluster(t, 3, false, func(cfg *Config) {
		cfg.RequestTimeout = 300 * time.Millisecond
	})
	ctx := context.Background()
	victim := c.nodes[2]
	k := c.keyOwnedBy(victim, "cut")
	if err := c.nodes[0].Put(ctx, k, "v", NoExpiry); err != nil {
		t.Fatal(err)
	}
	c.net.Isolate(victim.Addr())
	// Before gossip notices, a read fails over to an in-sync backup.
	if it, err := c.nodes[0].Get(ctx, k); err != nil || it.Value != "v" {
		t.Fatalf("Get with the owner cut off = %v, %v", it.Value, err)
	}
	if c.nodes[0].stats.forwardErrors.Load() == 0 && c.nodes[1].stats.forwardErrors.Load() == 0 {
		t.Fatal("the failed forward was not counted")
	}
	// A write goes to the owner only: it fails until membership drops the
	// owner, rather than being acknowledged by a copy the owner never saw.
	if err := c.nodes[0].Put(ctx, k, "w", NoExpiry); !errors.Is(err, ErrNoMoreServers) {
		t.Fatalf("Put with the owner cut off: %v", err)
	}
}

func TestNoMoreServers(t *testing.T) {
	c := newCluster(t, 5, false, func(cfg *Config) { cfg.RequestTimeout = 200 * time.Millisecond })
	ctx := context.Background()
	from := c.nodes[0]
	// Find a key none of whose copies is on the caller, and cut them off.
	var k string
	tb := from.table.Load()
	for i := 0; k == ""; i++ {
		cand := fmt.Sprint("nms", i)
		if !tb.holds(from.partitionOf(cand)) {
			k = cand
		}
	}
	for _, j := range tb.owners[from.partitionOf(k)] {
		addr := tb.members[j].addr
		c.net.Isolate(addr)
		// Healed before the cluster closes (cleanups run last first): a
		// node cut off would wait out CloseTimeout for its hand-off.
		t.Cleanup(func() { c.net.Heal(addr) })
	}
	if _, err := from.Get(ctx, k); !errors.Is(err, ErrNoMoreServers) {
		t.Fatalf("Get with every server cut off: %v", err)
	}
}

// listenSilent listens on 127.0.0.1 and accepts connections it never
// answers, as a frozen process's kernel does.
func listenSilent(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, conn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// listenFull listens on 127.0.0.1 with a backlog it fills at once and
// never accepts: new connections are not even established.
func listenFull(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 10 {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // full
		}
		t.Cleanup(func() { conn.Close() })
	}
	t.Fatal("could not fill the listener's backlog")
	return ""
}

// Attack 6, in one process: a peer that accepts and never answers, and
// one whose queue is full, cost a call at most about RequestTimeout,
// whatever its ctx allows; callers do not queue behind a stuck dial.
func TestSilentPeerCostsAtMostRequestTimeout(t *testing.T) {
	const timeout = 2 * time.Second
	c := newCluster(t, 1, true, func(cfg *Config) {
		cfg.RequestTimeout = timeout
		cfg.ConnectTimeout = timeout / 2
	})
	for name, addr := range map[string]string{
		"accepts and never answers": listenSilent(t),
		"never accepts":             listenFull(t),
	} {
		p := newPeerPool(c.nodes[0].peerSetup(), addr)
		defer p.close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// A caller who gives up goes at once; the dial carries on.
		short, cancelShort := context.WithTimeout(ctx, 10*time.Millisecond)
		_, err := p.call(short, &request{op: OpPing})
		cancelShort()
		p.slots[0].mu.Lock()
		dialing := p.slots[0].dialing != nil
		p.slots[0].mu.Unlock()
		if !errors.Is(err, context.DeadlineExceeded) || !dialing {
			t.Fatalf("%s: a caller with 10 ms: %v; dial under way: %v", name, err, dialing)
		}
		// Ten callers with a minute to spare fail together, in about
		// RequestTimeout.
		errs := make(chan error, 10)
		for range 10 {
			go func() {
				start := time.Now()
				_, err := p.call(ctx, &request{op: OpPing})
				if took := time.Since(start); err == nil || ctx.Err() != nil || took > 3*timeout {
					err = fmt.Errorf("took %v: %w", took, err)
				} else {
					err = nil
				}
				errs <- err
			}()
		}
		for range 10 {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// Attack 6: a peer whose process is stopped (SIGSTOP). Callers stalled
// for their whole ctx deadline; they must fail over after about
// RequestTimeout.
func TestFrozenPeerCostsAtMostRequestTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c := newCluster(t, 2, true, func(cfg *Config) {
		cfg.RequestTimeout = timeout
		cfg.SuspectTimeout = 200 * time.Millisecond // so that calls try the frozen peer often
		cfg.Gossip = func(mc *memberlist.Config) {
			testGossip(mc)
			mc.SuspicionMult = 30 // gossip keeps the frozen peer listed throughout
		}
	})
	child := startChildNode(t, 0, c.nodes[0].Addr())
	ctx := context.Background()
	waitFor(t, 10*time.Second, func() error {
		for _, n := range c.nodes {
			if !slices.Contains(n.Members(), child.addr) {
				return fmt.Errorf("%s does not list the child", n.Addr())
			}
		}
		return nil
	})
	var keys []string
	for i := 0; len(keys) < 2; i++ {
		if k := fmt.Sprint("frozen-", i); c.nodes[0].Owner(k) == child.addr {
			if err := c.nodes[0].Put(ctx, k, i, NoExpiry); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
	}
	if err := child.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Each call has a minute; each must end, failed over, in about
	// RequestTimeout, while the frozen peer is still a member.
	var mu sync.Mutex
	var longest time.Duration
	get := func(n *Node, k string) error {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		start := time.Now()
		_, err := n.Get(ctx, k)
		took := time.Since(start)
		mu.Lock()
		longest = max(longest, took)
		mu.Unlock()
		if took > 4*timeout || err != nil && !errors.Is(err, ErrCacheMiss) {
			return fmt.Errorf("Get via %s took %v: %v", n.Addr(), took, err)
		}
		return nil
	}
	for round := range 2 {
		for _, n := range c.nodes {
			for _, k := range keys {
				if err := get(n, k); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
		}
		// Once no node holds the frozen peer suspect, calls try it again.
		waitFor(t, 5*time.Second, func() error {
			for _, n := range c.nodes {
				if n.peers.get(child.addr).suspect() {
					return fmt.Errorf("%s holds the frozen peer suspect", n.Addr())
				}
			}
			return nil
		})
	}
	errs := make(chan error, 16)
	for i := range 16 {
		go func() { errs <- get(c.nodes[i%2], keys[i%len(keys)]) }()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	t.Logf("the longest call with a frozen peer took %v (RequestTimeout %v, ctx 1 minute)", longest.Round(time.Millisecond), timeout)
	for _, n := range c.nodes {
		if !slices.Contains(n.Members(), child.addr) {
			t.Fatalf("%s dropped the frozen peer: the test proved nothing", n.Addr())
		}
		if n.stats.forwardErrors.Load() == 0 {
			t.Fatalf("%s never tried the frozen peer", n.Addr())
		}
	}
}

// A request written on a pooled connection the peer closes (as idle, say)
// is sent again on a new connection, and the caller never knows.
func TestCallRetriesWhenTheConnectionIsClosedUnderIt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A peer that answers one request on its first connection, then closes
	// it on reading the next; it answers everything on later connections.
	served := make(chan struct{})
	go func() {
		defer close(served)
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fakePeer(conn, map[bool]int{true: 1, false: -1}[i == 0])
		}
	}()
	defer func() { ln.Close(); <-served }()
	var goroutines sync.WaitGroup
	defer goroutines.Wait()
	p := newPeerPool(plainPeerSetup(&goroutines), ln.Addr().String())
	defer p.close()
	for i := range 3 {
		if _, err := p.call(context.Background(), &request{op: OpPing}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// plainPeerSetup is a peer pool's setup without a node: plain TCP, the
// default limits, its goroutines counted in wg.
func plainPeerSetup(wg *sync.WaitGroup) *peerSetup {
	cfg, err := Config{Addr: "127.0.0.1:0"}.withDefaults()
	if err != nil {
		panic(err)
	}
	var d net.Dialer
	return &peerSetup{
		dial:            func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		secure:          func(_ context.Context, conn net.Conn, _ string) (net.Conn, error) { return conn, nil },
		requestTimeout:  cfg.RequestTimeout,
		connectTimeout:  cfg.ConnectTimeout,
		idleTimeout:     cfg.IdleTimeout,
		suspectTimeout:  cfg.SuspectTimeout,
		connsPerPeer:    cfg.ConnsPerPeer,
		maxFrameSize:    cfg.MaxFrameSize,
		protocolVersion: cfg.protocolVersion,
		frames:          frameBudgetFor(cfg.MaxFrameSize),
		goBackground:    func(f func()) { wg.Go(f) },
	}
}

// fakePeer shakes hands on conn and answers OK to requests, closing the
// connection instead of answering once it has answered limit of them
// (never, for limit -1).
func fakePeer(conn net.Conn, limit int) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := io.ReadFull(br, make([]byte, len(cacheHello()))); err != nil {
		return
	}
	conn.Write(append([]byte(magic), ProtocolVersion, 0))
	frames := newFrameReader(conn, br, 1<<20, 0)
	out := &appender{}
	enc := msgpack.NewEncoder(out)
	for answered := 0; limit < 0 || answered < limit; answered++ {
		var req request
		r, err := frames.next()
		if err == nil {
			err = decodeRequest(r, &req)
		}
		if err != nil {
			return
		}
		out.b = out.b[:0]
		encodeResponse(out, enc, &response{id: req.id})
		if _, err := conn.Write(out.b); err != nil {
			return
		}
	}
	_, _ = frames.next() // the request it will not answer
}

func TestIdleConnectionsBetweenNodesCloseUnnoticed(t *testing.T) {
	c := newCluster(t, 1, true)
	// The second node closes idle connections after 300 ms, its own after
	// 150 ms; the first keeps the default minute.
	b := c.add(func(cfg *Config) { cfg.IdleTimeout = 300 * time.Millisecond })
	c.waitConverged()
	a, ctx := c.nodes[0], context.Background()
	onB, onA := c.keyOwnedBy(b, "idle"), c.keyOwnedBy(a, "idle")
	for round := range 2 {
		if err := a.Put(ctx, onB, round, NoExpiry); err != nil {
			t.Fatal(err)
		}
		if err := b.Put(ctx, onA, round, NoExpiry); err != nil {
			t.Fatal(err)
		}
		// b closes both: the one a dialled as idle on its side, its own
		// as idle on the calling side.
		waitFor(t, 5*time.Second, func() error {
			for _, pc := range []struct {
				from *Node
				to   string
			}{{a, b.Addr()}, {b, a.Addr()}} {
				s := &pc.from.peers.get(pc.to).slots[0]
				if s.live() != nil {
					return fmt.Errorf("%s still holds its connection to %s", pc.from.Addr(), pc.to)
				}
			}
			return nil
		})
	}
	for _, n := range c.nodes {
		if e := n.stats.forwardErrors.Load(); e != 0 {
			t.Fatalf("%s counted %d failed forwards", n.Addr(), e)
		}
	}
}
