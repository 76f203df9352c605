package ghost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ghostdb/ghost/internal/poll"
	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// Shared test helpers: clusters of real nodes in one process.

// testGossip tunes memberlist for tests: news spreads in tens of
// milliseconds, and a node must stay silent for several seconds before it
// is declared dead, so that a machine loaded by the race detector and
// parallel tests never drops a live node from the ring mid-test.
func testGossip(mc *memberlist.Config) {
	mc.ProbeInterval = time.Second
	mc.ProbeTimeout = 800 * time.Millisecond
	mc.SuspicionMult = 4
	mc.GossipInterval = 30 * time.Millisecond
	mc.PushPullInterval = time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.GossipToTheDeadTime = time.Second
}

// fastFailureDetection is for the tests of failures: a dead node is noticed
// in a second or two (FastGossip).
func fastFailureDetection(cfg *Config) { cfg.Gossip = FastGossip }

// testConfig is a node configuration for tests: net carries the traffic,
// or, when nil, real sockets on 127.0.0.1.
func testConfig(net *MemNetwork) Config {
	cfg := Config{
		Addr:           "127.0.0.1:0",
		Gossip:         testGossip,
		RejoinInterval: 100 * time.Millisecond,
		RequestTimeout: 5 * time.Second, // generous: a loaded CI machine under -race is slow
		// Cleanup closes every node; one whose peers were cut off cannot
		// hand off, and need not wait long to find out.
		CloseTimeout: 3 * time.Second,
	}
	if net != nil { // a nil *MemNetwork in the interface would be a network
		cfg.Network = net
	}
	return cfg
}

// cluster is a set of nodes started together.
type cluster struct {
	t     testing.TB
	net   *MemNetwork // nil for real TCP
	mu    sync.Mutex  // guards the slots of nodes: writers read them while tests restart nodes
	nodes []*Node
}

// newCluster starts size nodes, each joining the first, and waits until
// every node sees all of them. With tcp the nodes talk over 127.0.0.1.
func newCluster(t testing.TB, size int, tcp bool, tune ...func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t}
	if !tcp {
		c.net = NewMemNetwork()
	}
	for range size {
		c.add(tune...)
	}
	c.waitConverged()
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Close()
		}
	})
	return c
}

// add starts one more node that joins the first one.
func (c *cluster) add(tune ...func(*Config)) *Node {
	c.t.Helper()
	cfg := testConfig(c.net)
	if len(c.nodes) > 0 {
		cfg.Peers = []string{c.nodes[0].Addr()}
	}
	for _, f := range tune {
		f(&cfg)
	}
	n, err := Join(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("Join: %v", err)
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

// live returns the nodes that have not been stopped.
func (c *cluster) live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.nodes {
		if !n.closed.Load() {
			out = append(out, n)
		}
	}
	return out
}

// waitConverged waits until every live node lists exactly the live nodes
// and holds the same partition table, with every partition's copies in
// sync (Safe).
func (c *cluster) waitConverged() {
	c.t.Helper()
	c.waitConvergedAmong(c.live())
}

// waitConvergedAmong is waitConverged for nodes, which see only each other
// (one side of a split).
func (c *cluster) waitConvergedAmong(nodes []*Node) {
	c.t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.Addr())
	}
	slices.Sort(want)
	waitFor(c.t, 20*time.Second, func() error {
		var version uint64
		for i, n := range nodes {
			if got := n.Members(); !slices.Equal(got, want) {
				return fmt.Errorf("%s sees %v, want %v", n.Addr(), got, want)
			}
			if v := n.table.Load().version; i > 0 && v != version {
				return fmt.Errorf("%s holds table %d, another %d", n.Addr(), v, version)
			} else {
				version = v
			}
			if !n.Safe() {
				return notSafe(n)
			}
		}
		return nil
	})
}

// notSafe says why n is not Safe, for a condition that waits for it.
func notSafe(n *Node) error {
	t := n.table.Load()
	pending := 0
	for p := range t.pending {
		pending += len(t.pending[p])
	}
	return fmt.Errorf("%s is not Safe: table %d of %d members, %d copies pending, %d transfers in flight", n.Addr(), t.version, len(t.members), pending, n.transfers.inFlight())
}

// waitFor polls cond until it returns nil, failing the test at the deadline
// with cond's last error.
func waitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, cond)
}

// keyOwnedBy returns a key whose owner is n and not from.
func (c *cluster) keyOwnedBy(n *Node, prefix string) string {
	c.t.Helper()
	for i := range 100000 {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if n.Owner(k) == n.Addr() {
			return k
		}
	}
	c.t.Fatalf("no key owned by %s", n.Addr())
	return ""
}

// copiesOf counts the live nodes that hold a live pair for key.
func (c *cluster) copiesOf(key string) int {
	count := 0
	for _, n := range c.live() {
		if _, ok := n.store.get(n.partitionOf(key), key); ok {
			count++
		}
	}
	return count
}

// A ledger of acknowledged writes, for the durability tests: writers on
// every live node put and delete keys of their own while faults happen;
// afterwards every key must read back, from every node, as its last
// acknowledged write left it.
type ledger struct {
	mu    sync.Mutex
	acked map[string]int64   // last acknowledged value; deletedValue for a delete
	maybe map[string][]int64 // writes that failed after it: they may have applied
}

const deletedValue = -1

func newLedger() *ledger {
	return &ledger{acked: map[string]int64{}, maybe: map[string][]int64{}}
}

// record notes the outcome of writing v (deletedValue for a delete) to key.
func (l *ledger) record(key string, v int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil || (v == deletedValue && errors.Is(err, ErrNotFound)) {
		l.acked[key] = v
		delete(l.maybe, key)
		return
	}
	l.maybe[key] = append(l.maybe[key], v)
}

// verify reads every key of the ledger from every live node and reports
// the acknowledged writes lost and the stale values served.
func (l *ledger) verify(t testing.TB, c *cluster) (checked, lost, stale int) {
	t.Helper()
	ctx := context.Background()
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, want := range l.acked {
		for _, n := range c.live() {
			checked++
			got := int64(deletedValue)
			it, err := n.Get(ctx, key)
			switch {
			case err == nil:
				got = it.Value.(int64)
			case !errors.Is(err, ErrCacheMiss):
				t.Errorf("Get %s via %s: %v", key, n.Addr(), err)
				continue
			}
			if got == want || slices.Contains(l.maybe[key], got) {
				continue
			}
			if got == deletedValue {
				lost++
				if lost <= 5 {
					t.Errorf("lost: %s via %s is missing, acknowledged %d (owner %s)", key, n.Addr(), want, n.Owner(key))
				}
			} else {
				stale++
				if stale <= 5 {
					t.Errorf("stale: %s via %s = %d, acknowledged %d", key, n.Addr(), got, want)
				}
			}
		}
	}
	return checked, lost, stale
}

// load is a write workload running against a cluster.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ops      atomic.Int64
	failed   atomic.Int64
	firstErr atomic.Value // string
}

// startWriters starts writers goroutines, each putting (and now and then
// deleting) keys of its own through a random one of via (default: the live
// nodes), until halted.
func (c *cluster) startWriters(l *ledger, writers, keysEach int, via ...*Node) *load {
	return c.runWriters(writers, 7, via, func(ctx context.Context, w *load, n *Node, rng *rand.Rand, g int, i int64) {
		key := fmt.Sprintf("w%d-%d", g, rng.IntN(keysEach))
		var err error
		v := i
		if i%10 == 0 {
			v = deletedValue
			err = n.Delete(ctx, key)
		} else {
			err = n.Put(ctx, key, v, NoExpiry)
		}
		w.note(l, key, v, err)
	})
}

// runWriters runs writers goroutines until halted. Each calls write over
// and over (i counts its calls from 1) with a random one of via (default:
// the live nodes), a context of 5 s and a random source seeded by its
// number g and seed; write reports each key's outcome with note.
func (c *cluster) runWriters(writers int, seed uint64, via []*Node, write func(ctx context.Context, w *load, n *Node, rng *rand.Rand, g int, i int64)) *load {
	w := &load{stop: make(chan struct{})}
	for g := range writers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), seed))
			for i := int64(1); ; i++ {
				select {
				case <-w.stop:
					return
				default:
				}
				live := via
				if len(live) == 0 {
					live = c.live()
				}
				n := live[rng.IntN(len(live))]
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				write(ctx, w, n, rng, g, i)
				cancel()
			}
		}()
	}
	return w
}

// note records in l the outcome of writing v (deletedValue for a delete)
// to key, and counts it. A node stopped under the call (ErrClosed) may have
// sent the write already: like any failure, it may have applied.
func (w *load) note(l *ledger, key string, v int64, err error) {
	l.record(key, v, err)
	w.ops.Add(1)
	if err != nil && !errors.Is(err, ErrNotFound) {
		w.failed.Add(1)
		w.firstErr.CompareAndSwap(nil, err.Error())
	}
}

// waitOps waits until the writers have done count more operations.
func (w *load) waitOps(t testing.TB, count int64) {
	t.Helper()
	waitCount(t, &w.ops, count, 30*time.Second, "writes")
}

// waitCount waits, for at most timeout, until counter has grown by count.
func waitCount(t testing.TB, counter *atomic.Int64, count int64, timeout time.Duration, what string) {
	t.Helper()
	target := counter.Load() + count
	waitFor(t, timeout, func() error {
		if got := counter.Load(); got < target {
			return fmt.Errorf("%d %s done, waiting for %d", got, what, target)
		}
		return nil
	})
}

func (w *load) halt() {
	close(w.stop)
	w.wg.Wait()
}

// preload writes count pairs through node 0 and records them, in batches
// (PutMulti): thousands of pairs one Put at a time took seconds under the
// race detector.
func (c *cluster) preload(l *ledger, prefix string, count int) {
	c.t.Helper()
	ctx := context.Background()
	for start := 0; start < count; start += preloadBatch {
		batch := make(map[string]any, preloadBatch)
		for i := start; i < min(start+preloadBatch, count); i++ {
			batch[fmt.Sprintf("%s-%d", prefix, i)] = int64(i)
		}
		if err := c.nodes[0].PutMulti(ctx, batch, NoExpiry); err != nil {
			c.t.Fatalf("preload %s-%d...: %v", prefix, start, err)
		}
		for key, v := range batch {
			l.record(key, v.(int64), nil)
		}
	}
}

const preloadBatch = 500

// restart stops node i gracefully (Leave, with its hand-off) and starts a
// new process's node on the same address, joining the others.
func (c *cluster) restart(i int, tune ...func(*Config)) *Node {
	c.t.Helper()
	old := c.nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := old.Leave(ctx); err != nil {
		c.t.Fatalf("Leave %s: %v", old.Addr(), err)
	}
	return c.startAt(i, old.Addr(), tune...)
}

// startAt starts a node on addr in slot i, joining the live nodes.
func (c *cluster) startAt(i int, addr string, tune ...func(*Config)) *Node {
	c.t.Helper()
	cfg := testConfig(c.net)
	cfg.Addr = addr
	for _, n := range c.live() {
		cfg.Peers = append(cfg.Peers, n.Addr())
	}
	for _, f := range tune {
		f(&cfg)
	}
	return c.joinAt(i, cfg)
}

// joinAt starts a node of cfg in slot i.
func (c *cluster) joinAt(i int, cfg Config) *Node {
	c.t.Helper()
	n, err := Join(context.Background(), cfg)
	if err != nil {
		c.t.Fatalf("Join on %s: %v", cfg.Addr, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return n
}

// restartAll stops every live node at once, gracefully (Close) or as a
// crash, and starts a new process's node on each address, each naming
// every address as a peer (those not up yet are tried again in the
// background), as a whole cluster redeployed would; tune(i, cfg) sets up
// slot i's node. It waits until the new nodes converge.
func (c *cluster) restartAll(crash bool, tune func(i int, cfg *Config)) {
	c.t.Helper()
	var addrs []string
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		addrs = append(addrs, n.Addr())
		wg.Go(func() {
			if crash {
				n.halt()
			} else {
				_ = n.Close()
			}
		})
	}
	wg.Wait()
	for i, addr := range addrs {
		cfg := testConfig(c.net)
		cfg.Addr = addr
		cfg.Peers = slices.Delete(slices.Clone(addrs), i, i+1)
		tune(i, &cfg)
		c.joinAt(i, cfg)
	}
	c.waitConverged()
}

// checkServes fails the test unless every node stores and reads keys owned
// by every node: the cluster serves normal calls.
func (c *cluster) checkServes(prefix string) {
	c.t.Helper()
	ctx := context.Background()
	for _, owner := range c.live() {
		k := c.keyOwnedBy(owner, prefix)
		for i, from := range c.live() {
			if err := from.Put(ctx, k, i, NoExpiry); err != nil {
				c.t.Fatalf("Put via %s: %v", from.Addr(), err)
			}
			if it, err := from.Get(ctx, k); err != nil || it.Value != int64(i) {
				c.t.Fatalf("Get via %s = %v, %v; want %d", from.Addr(), it.Value, err, i)
			}
		}
	}
}

// cacheHello is the opening of a cache-protocol connection.
func cacheHello() []byte {
	return append(append([]byte{preambleCache}, magic...), ProtocolVersion)
}

// dialCache opens a cache-protocol connection to addr and shakes hands, as
// a peer (or anyone else) would.
func dialCache(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	reply := make([]byte, len(magic)+2)
	if _, err := conn.Write(cacheHello()); err == nil {
		_, err = io.ReadFull(conn, reply)
	}
	if err != nil || reply[len(reply)-1] != 0 {
		t.Fatalf("cache handshake with %s: %q, %v", addr, reply, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, bufio.NewReader(conn)
}

// requestFrame is req as a frame on the wire.
func requestFrame(req *request) []byte {
	a := &appender{}
	encodeRequest(a, msgpack.NewEncoder(a), req)
	return a.b
}

// readResponse reads one reply frame from br.
func readResponse(br *bufio.Reader) (response, error) {
	var resp response
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return resp, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(br, body); err != nil {
		return resp, err
	}
	r := msgReader{b: body}
	return resp, decodeResponse(&r, &resp)
}

// rawCall sends req to the node at addr over a connection of its own and
// returns the reply.
func rawCall(t testing.TB, addr string, req *request) response {
	t.Helper()
	conn, br := dialCache(t, addr)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(requestFrame(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := readResponse(br)
	if err != nil {
		t.Fatalf("reply from %s: %v", addr, err)
	}
	return resp
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Nodes in other processes: the test binary started again with
// childNodeEnv set runs a node instead of the tests (see TestMain), for the
// tests that stop a process or limit its open files.
const (
	childNodeEnv   = "GHOST_TEST_CHILD_NODE"   // set: run a node
	childPeersEnv  = "GHOST_TEST_CHILD_PEERS"  // seeds, space-separated
	childNoFileEnv = "GHOST_TEST_CHILD_NOFILE" // a limit on open files
)

// childNode is a node running in a child process.
type childNode struct {
	cmd    *exec.Cmd
	addr   string
	stderr *lockedBuffer // the node's warnings and errors
}

// startChildNode starts a node in a child process, joined to peers and,
// when nofile > 0, limited to nofile open files. The process ends with the
// test.
func startChildNode(t *testing.T, nofile int, peers ...string) *childNode {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childNodeEnv+"=1", childPeersEnv+"="+strings.Join(peers, " "))
	if nofile > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", childNoFileEnv, nofile))
	}
	child := &childNode{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = child.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	stdoutDone := make(chan struct{})
	go func() {
		defer close(stdoutDone)
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // in case the test stopped it
		stdin.Close()                           // the node leaves and the process exits
		select {
		case <-stdoutDone:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-stdoutDone
		}
		_ = cmd.Wait()
	})
	select {
	case l := <-line:
		if child.addr = strings.TrimPrefix(l, "node "); child.addr == l {
			t.Fatalf("child node did not start: %q; stderr:\n%s", l, child.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("child node did not start in 30s; stderr:\n%s", child.stderr)
	}
	return child
}

// runChildNode is the child process's side of startChildNode: it prints
// "node <addr>" and serves until its standard input closes.
func runChildNode() int {
	if s := os.Getenv(childNoFileEnv); s != "" {
		var lim syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		lim.Cur, _ = strconv.ParseUint(s, 10, 64)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Fprintln(os.Stderr, "setrlimit:", err)
			return 1
		}
	}
	cfg := testConfig(nil)
	cfg.Peers = strings.Fields(os.Getenv(childPeersEnv))
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := Join(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		return 1
	}
	fmt.Printf("node %s\n", n.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	n.Close()
	return 0
}

// lockedBuffer is a bytes.Buffer safe for a writer and readers at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
