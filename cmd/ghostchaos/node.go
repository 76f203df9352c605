package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ghostdb/ghost"
	"github.com/prometheus/client_golang/prometheus"
)

// The node process: one GhostDB node in a host's network namespace, with
// the clients of that host (writers and readers calling the embedded node,
// as an application would). It reports every write it begins and ends to
// the suite before and after the call, so the ledger survives the process's
// death: a write begun and never ended is indeterminate.

// requestTimeout is Config.RequestTimeout: a peer that owes a reply this
// long is given up, and the call fails over.
const requestTimeout = time.Second

// leaseTerm is the nodes' read-lease term: four of FastGossip's 200 ms
// probe intervals (lease.go). A table that drops a dead member follows
// gossip by that much.
const leaseTerm = 800 * time.Millisecond

// callTimeout bounds one client call, fail-overs included.
const callTimeout = 3 * time.Second

// nodeProcess is the state of a node process.
type nodeProcess struct {
	cfg   nodeConfig
	guard *addrGuard
	node  *ghost.Node
	out   *reporter

	mu   sync.Mutex // guards load
	load *load      // nil when no load runs
}

// runNode is main for a node process. It returns when stdin closes (the
// suite is gone or done with it) or after a leave command.
func runNode(raw string, ns nodeSettings, stdin io.Reader, stdout io.Writer) error {
	out := &reporter{enc: json.NewEncoder(stdout)}
	np, err := startNode(raw, ns, out)
	if err != nil {
		out.send(message{T: msgFailed, Err: err.Error()})
		return err
	}
	out.send(message{T: msgReady})
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20)
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			out.send(message{T: msgReply, Err: fmt.Sprintf("bad command: %v", err)})
			continue
		}
		reply, leave := np.do(cmd)
		reply.T, reply.ID = msgReply, cmd.ID
		out.send(reply)
		if leave {
			return nil
		}
	}
	// The suite is done with this node, and is ending the others at the
	// same moment: their Leave broadcasts may find no one left to hear
	// them, which is no news.
	np.stopLoad()
	_ = np.node.Close()
	return nil
}

// startNode checks the configuration against the address guard and joins.
func startNode(raw string, ns nodeSettings, out *reporter) (*nodeProcess, error) {
	var cfg nodeConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	subnet, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil {
		return nil, fmt.Errorf("node config: subnet: %w", err)
	}
	var hosts []netip.Addr
	for _, h := range cfg.Hosts {
		ip, err := netip.ParseAddr(h)
		if err != nil {
			return nil, fmt.Errorf("node config: host %q: %w", h, err)
		}
		hosts = append(hosts, ip)
	}
	guard, err := newAddrGuard(subnet, hosts)
	if err != nil {
		return nil, err
	}
	if err := guard.check(cfg.Addr); err != nil {
		return nil, fmt.Errorf("refusing to listen: %w", err)
	}
	if err := checkNodeFile(cfg.NodeFile, guard); err != nil {
		return nil, err
	}
	logger := slog.New(slog.DiscardHandler)
	if cfg.Verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("host", cfg.Host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gcfg := ghost.Config{
		Addr:           cfg.Addr,
		PeersFile:      cfg.NodeFile,
		Gossip:         ghost.FastGossip,
		RejoinInterval: 250 * time.Millisecond,
		RequestTimeout: requestTimeout,
		DisableHTTP:    true,
		Logger:         logger,
		// The hosts are network namespaces of this machine, on a test
		// network no one else reaches.
		Insecure: true,
	}
	ns.apply(&gcfg)
	if ns.SnapshotInterval > 0 {
		gcfg.DataDir = cfg.DataDir
	}
	node, err := ghost.Join(ctx, gcfg)
	if err != nil {
		return nil, err
	}
	return &nodeProcess{cfg: cfg, guard: guard, node: node, out: out}, nil
}

// checkNodeFile refuses a node file naming any address outside the guard.
func checkNodeFile(path string, guard *addrGuard) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(b)) {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		if err := guard.check(line); err != nil {
			return fmt.Errorf("node file %s: %w", path, err)
		}
	}
	return nil
}

// do runs one command; leave reports that the process should now exit.
func (np *nodeProcess) do(cmd command) (reply message, leave bool) {
	switch cmd.Cmd {
	case cmdLoad:
		if cmd.Load == nil {
			return message{Err: "load without a spec"}, false
		}
		np.startLoad(*cmd.Load)
	case cmdStop:
		np.stopLoad()
	case cmdFreeze:
		np.mu.Lock()
		if np.load != nil {
			np.load.frozen.Store(true)
		}
		np.mu.Unlock()
	case cmdStatus:
		reply.Members = np.node.Members()
		reply.Safe = safeState(np.node)
		reply.Addr = np.node.Addr()
		reply.Stats = nodeStats(np.node)
		if err := np.guard.checkAll(reply.Members); err != nil {
			reply.Err = fmt.Sprintf("a member outside the suite's hosts: %v", err)
		}
	case cmdCheck:
		reply.Reads = np.readAll(cmd.Keys)
	case cmdProbe:
		var err error
		if reply.Reached, err = np.probe(cmd.Probe); err != nil {
			reply.Err = err.Error()
		}
	case cmdLeave:
		np.stopLoad()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := np.node.Leave(ctx); err != nil {
			reply.Err = err.Error()
		}
		return reply, true
	default:
		reply.Err = fmt.Sprintf("unknown command %q", cmd.Cmd)
	}
	return reply, false
}

// nodeStats reads a few of the node's own figures from its collector, by
// their Prometheus names: whether the cache filled up and evicted, and
// whether pairs expired. They are this node's alone, where
// WatchdogMetrics would ask every member.
func nodeStats(node *ghost.Node) map[string]float64 {
	figures := []string{statPairs, statEvictions, statExpired, statSnapshot, statRestored}
	reg := prometheus.NewRegistry()
	if err := reg.Register(node.Collector()); err != nil {
		return nil
	}
	families, _ := reg.Gather() // a figure that fails is left out
	out := map[string]float64{}
	for _, f := range families {
		if !slices.Contains(figures, f.GetName()) {
			continue
		}
		for _, m := range f.GetMetric() {
			out[f.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

// safeState asks the node whether it is Safe: every partition has its
// copies, nothing is moving.
func safeState(node *ghost.Node) string {
	if node.Safe() {
		return safeYes
	}
	return safeNo
}

// Bounds of the final reads: a wedged cluster can fail every read after
// its full timeout and retries, which one at a time would take hours.
const (
	checkReaders  = 16               // keys read at once
	checkDeadline = 40 * time.Second // then the keys not read yet are unreadable
)

// readAll reads every key, retrying failed reads a few times, and returns
// what it read, with when.
func (np *nodeProcess) readAll(keys []string) map[string]readResult {
	deadline := time.Now().Add(checkDeadline)
	out := make([]readResult, len(keys))
	next := make(chan int)
	var wg sync.WaitGroup
	for range checkReaders {
		wg.Go(func() {
			for i := range next {
				out[i] = np.readRetrying(keys[i], deadline)
			}
		})
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	m := make(map[string]readResult, len(keys))
	for i, k := range keys {
		m[k] = out[i]
	}
	return m
}

// readRetrying reads key, again after a failure, until the deadline.
func (np *nodeProcess) readRetrying(key string, deadline time.Time) readResult {
	r := readResult{Err: "not read: the check ran out of time"}
	for try := range 4 {
		if try > 0 {
			time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			break
		}
		if r = np.read(key); r.Err == "" {
			break
		}
	}
	return r
}

// read reads key once, timing the call: a TTL's deadline is judged
// against that interval.
func (np *nodeProcess) read(key string) readResult {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	start := time.Now()
	it, err := np.node.Get(ctx, key)
	r := readResult{Start: start.UnixNano(), End: time.Now().UnixNano()}
	switch {
	case errors.Is(err, ghost.ErrCacheMiss):
		return r
	case err != nil:
		r.Err = err.Error()
		return r
	}
	var v string
	if err := it.Decode(&v); err != nil {
		r.Err = fmt.Sprintf("decode: %v", err)
		return r
	}
	r.Present, r.Value = true, v
	return r
}

// probe dials each address from this host, briefly: it tells the suite
// whether the network lets a connection through, whatever the nodes make
// of it. Each address must be one of the suite's hosts.
func (np *nodeProcess) probe(addrs []string) (map[string]string, error) {
	if err := np.guard.checkAll(addrs); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(addrs))
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, probeTimeout)
		if err != nil {
			out[a] = err.Error()
			continue
		}
		c.Close()
		out[a] = ""
	}
	return out, nil
}

// probeTimeout bounds one probe's connect: on the suite's bridge a
// connection that is let through is made in well under a millisecond.
const probeTimeout = 300 * time.Millisecond

func (np *nodeProcess) startLoad(spec loadSpec) {
	np.mu.Lock()
	defer np.mu.Unlock()
	if np.load == nil {
		np.load = startLoad(np.node, np.cfg, spec, np.out)
	}
}

func (np *nodeProcess) stopLoad() {
	np.mu.Lock()
	defer np.mu.Unlock()
	if np.load != nil {
		np.load.stop()
		np.load = nil
	}
}

// reporter writes messages to stdout, one JSON line each, unbuffered: a
// line written before the process is killed reaches the suite.
type reporter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (r *reporter) send(m message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.enc.Encode(m) // the suite is gone: nothing to tell
}
