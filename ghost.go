// Package ghost is GhostDB: an embeddable, peer-to-peer, distributed
// in-memory cache.
//
// Every process that calls Join becomes a node of one cache. Nodes find each
// other by gossip from a shared list of addresses, split the keyspace into
// partitions by consistent hashing, and answer any call for any key from any
// node: locally when they own the key, by one hop to its owner when they do
// not. There are no cache servers to run.
//
// The calls and their results are those of the GhostDB SDKs: Get
// (CACHE_MISS), Put and Add (STORED, NOT_STORED), Delete (REMOVED,
// NOT_FOUND), Flush (FLUSHED, ERR_FLUSH), Ping and the snitch and watchdog
// metrics. Results are Go errors that work with errors.Is; Message turns any
// result back into its GhostDB word.
package ghost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// NoExpiry as a TTL keeps a pair until it is deleted, flushed or evicted.
const NoExpiry time.Duration = -1

// MaxKeyLen is the longest key, in bytes.
const MaxKeyLen = 250

// ProtocolVersion is the version of the node-to-node protocol this release
// speaks. Nodes of different versions do not join one cluster.
const ProtocolVersion uint8 = 6

// The errors of GhostDB calls. Test for them with errors.Is: the errors
// returned wrap them with details.
var (
	// ErrCacheMiss: Get found no live pair for the key (CACHE_MISS).
	ErrCacheMiss = errors.New("ghost: CACHE_MISS")
	// ErrNotStored: Add found the key already held (NOT_STORED).
	ErrNotStored = errors.New("ghost: NOT_STORED: key exists")
	// ErrNotFound: Delete found no live pair for the key (NOT_FOUND).
	ErrNotFound = errors.New("ghost: NOT_FOUND")
	// ErrFlush: Flush could not empty every node (ERR_FLUSH).
	ErrFlush = errors.New("ghost: ERR_FLUSH")
	// ErrNoMoreServers: no node that should serve the call could be reached.
	ErrNoMoreServers = errors.New("ghost: no more servers")
	// ErrKey: the key is empty, longer than MaxKeyLen bytes, or not UTF-8.
	ErrKey = errors.New("ghost: bad key")
	// ErrValueTooLarge: the encoded value is over Config.MaxValueSize.
	ErrValueTooLarge = errors.New("ghost: value too large")
	// ErrValueTooDeep: arrays and maps in the value nest deeper than
	// MaxValueDepth.
	ErrValueTooDeep = errors.New("ghost: value nested too deep")
	// ErrBadValue: an encoded value is not well-formed msgpack. Values the
	// Go API and the HTTP gateway encode always are; this comes of bytes
	// sent raw over the cache protocol.
	ErrBadValue = errors.New("ghost: malformed value")
	// ErrClosed: the node has left the cluster.
	ErrClosed = errors.New("ghost: node closed")
	// ErrNoQuorum: the node that was to serve the call is cut off from a
	// majority of the cluster (a network split, or a majority lost at
	// once) and cannot vouch for its copies; see Node.Degraded and
	// Config.StaleReads. Calls through a member on the majority's side
	// succeed.
	ErrNoQuorum = errors.New("ghost: cut off from a majority of the cluster")
	// ErrInsecure: the node would listen beyond loopback with no secret;
	// see Config.Insecure.
	ErrInsecure = errors.New("ghost: insecure configuration")
	// ErrProtocolVersion: a peer speaks another protocol version.
	ErrProtocolVersion = errors.New("ghost: protocol version mismatch")
)

// Op names a GhostDB call, for Message.
type Op uint8

// The GhostDB calls. Their numbers are part of the wire protocol.
const (
	OpGet Op = iota + 1
	OpPut
	OpAdd
	OpDelete
	OpFlush
	OpPing
	OpSnitchMetrics
	OpWatchdogMetrics
)

// Message returns the GhostDB word for the result of op: STORED, NOT_STORED,
// REMOVED, NOT_FOUND, FLUSHED, ERR_FLUSH, CACHE_MISS, OK for a successful
// Get, Ping or metrics call, and the error's own text for any other error.
// It is meant for logs and for gateways that speak the original protocol.
func Message(op Op, err error) string {
	switch {
	case err == nil:
		switch op {
		case OpPut, OpAdd:
			return "STORED"
		case OpDelete:
			return "REMOVED"
		case OpFlush:
			return "FLUSHED"
		}
		return "OK"
	case errors.Is(err, ErrCacheMiss):
		return "CACHE_MISS"
	case errors.Is(err, ErrNotStored):
		return "NOT_STORED"
	case errors.Is(err, ErrNotFound):
		return "NOT_FOUND"
	case op == OpFlush:
		return "ERR_FLUSH"
	}
	return err.Error()
}

// Node is a member of a GhostDB cluster. All its methods are safe for
// concurrent use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	name  string // memberlist name, unique per process start
	addr  string // advertised host:port
	self  member
	store *store
	stats *watchdog

	latency *latencies // of the calls route answers

	snitchHist, watchdogHist history

	ep      endpoint
	gossip  *gossipTransport
	ml      *memberlist.Memberlist
	peers   peerClients
	server  connSet
	gateway *gateway // nil when Config.DisableHTTP

	tls      *clusterTLS // nil without SecretKey or TLS (secure.go)
	refusals refusalLog

	// The partition table (ring.go, coordinator.go). Readers load it
	// without locks; tableMu serialises applying a new one.
	table        atomic.Pointer[table]
	tableMu      sync.Mutex
	tableChanged broadcastSignal
	ringDue      chan struct{}       // membership changed; capacity 1
	fetchDue     chan uint64         // a peer holds this newer table version
	readies      chan readyReport    // transfers done, for the coordinator
	evictions    chan evictionNotice // pairs evicted as primary, for the copies (evict.go)
	pushes       pushState
	tableCalls   tableCalls // counts of the table calls this node sent (coordinator.go)
	transfers    transferSet
	receiving    receiveState
	leaving      atomic.Bool
	forceQuorum  atomic.Bool  // the next table change needs no majority (quorum.go)
	requestIDs   requestIDs   // for the writes this node's callers make (dedupe.go)
	decided      []decided    // per partition, the writes decided lately; under the partition's lock
	cutOff       atomic.Bool  // this node sees no majority of its table, or has not caught up since (quorum.go)
	lease        leaseState   // may it serve reads from its own copies (lease.go)
	frameBudget  *frameBudget // room for large frames, over every connection (wire.go)
	tableBehind  atomic.Bool  // cut off since it last fetched the majority's tables
	catchingUp   atomic.Bool  // catchUp is running
	snapshots    snapshots    // the DataDir: snapshots and warm restart (snapshot.go)
	merges       mergeSessions
	loads        loadLeases // GetOrLoad's leases, of the partitions this node is the primary of (load.go)
	finishing    finishing  // failed writes that may be on a copy, sent again (finish.go)
	near         *nearCache // near copies of other owners' keys, or nil (near.go)
	nearGrants   nearGrants // the near leases granted as a primary (nearlease.go)

	// gossipPeers are the live peers as memberlist's events report them,
	// guarded by gossipMu. Membership is read from this copy: the nodes
	// memberlist.Members returns are changed under memberlist's lock, which
	// we cannot take, so reading them races.
	gossipMu    sync.Mutex
	gossipPeers map[string]peer
	goneAt      map[string]time.Time // when each peer left gossipPeers, for heldBack (lease.go)
	backAt      map[string]time.Time // when a peer called gone came back, for vouchesFor (lease.go)
	peerCount   atomic.Int32         // len(gossipPeers), read without the lock
	probeWait   time.Duration        // how long a member gossip calls gone gets to answer us (membership.go)

	closed atomic.Bool
	done   chan struct{} // closed when the node shuts down
	wg     sync.WaitGroup
}

// Join starts a node on cfg.Addr, joins the peers named by cfg.PeersFile and
// cfg.Peers, and returns once the node serves. Seeds that cannot be reached
// do not fail Join: the node starts alone and keeps trying them in the
// background. ctx bounds the first join attempt.
func Join(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	seeds, err := loadSeeds(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var dataLock *os.File
	if cfg.DataDir != "" {
		if dataLock, err = openDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	ep, err := cfg.Network.listen(cfg.Addr)
	if err != nil {
		if dataLock != nil {
			dataLock.Close()
		}
		return nil, fmt.Errorf("ghost: listen on %s: %w", cfg.Addr, err)
	}
	n := &Node{
		cfg:          cfg,
		log:          cfg.Logger,
		stats:        &watchdog{},
		latency:      newLatencies(),
		snitchHist:   history{max: cfg.MetricsHistory},
		watchdogHist: history{max: cfg.MetricsHistory},
		ep:           ep,
		ringDue:      make(chan struct{}, 1),
		fetchDue:     make(chan uint64, 1),
		readies:      make(chan readyReport, 1024),
		evictions:    make(chan evictionNotice, evictionQueue),
		pushes:       pushState{acked: map[string]uint64{}, inflight: map[string]bool{}},
		receiving:    receiveState{sessions: map[int]*receiveSession{}},
		gossipPeers:  make(map[string]peer),
		goneAt:       make(map[string]time.Time),
		backAt:       make(map[string]time.Time),
		frameBudget:  frameBudgetFor(cfg.MaxFrameSize),
		done:         make(chan struct{}),
	}
	n.snapshots.dir, n.snapshots.lock = cfg.DataDir, dataLock
	n.transfers.init()
	n.requestIDs.init()
	n.lease.init()
	n.finishing.init()
	n.nearGrants.init(cfg.PartitionCount, cfg.NearCacheLease, n.stats)
	if cfg.NearCacheKeys > 0 {
		n.near = newNearCache(cfg.NearCacheKeys, cfg.NearCacheBytes, cfg.NearCacheLease, n.stats)
		n.nearGrants.inUse.Store(true)
	}
	n.decided = make([]decided, cfg.PartitionCount)
	n.store = newStore(cfg.PartitionCount, int64(cfg.MaxKeys), cfg.MaxBytes, n.stats, func() int64 { return cfg.Clock().UnixNano() })
	n.store.settleWait = cfg.RequestTimeout
	n.store.grace = int64(cfg.StaleWhileRevalidate)
	if n.addr, err = advertiseAddr(cfg, ep.addr()); err != nil {
		ep.close()
		n.snapshots.close()
		return nil, err
	}
	if n.tls, err = newClusterTLS(cfg, n.addr); err != nil {
		ep.close()
		n.snapshots.close()
		return nil, err
	}
	n.name = cfg.Name
	if n.name == "" {
		n.name = n.addr + "#" + randomSuffix()
	}
	n.self = member{name: n.name, addr: n.addr, start: time.Now().UnixNano()}
	n.peers.init(n.peerSetup())
	n.gossip = newGossipTransport(n.ep, n.secureClient, n.addr, n.log, n.goBackground)
	n.table.Store(singleTable(n.self, cfg.PartitionCount))
	n.markPrimaries(n.table.Load())
	n.store.evicted = n.noteEviction

	if !cfg.DisableHTTP {
		n.gateway = newGateway(n)
	}
	n.goBackground(n.acceptLoop)
	if err := n.startGossip(); err != nil {
		n.shutdown()
		n.snapshots.close()
		return nil, err
	}
	n.goBackground(n.tableLoop)
	n.goBackground(n.leaseLoop)
	n.goBackground(n.evictionLoop)
	n.goBackground(n.finishLoop)
	if n.near != nil {
		n.goBackground(n.nearRenewLoop)
	}
	n.joinSeeds(ctx, seeds)
	n.awaitTable(ctx)
	n.startSnapshots()
	n.goBackground(func() { n.seedLoop(seeds) })
	n.goBackground(n.crawlLoop)
	n.goBackground(n.metricsLoop)
	n.goBackground(n.antiEntropyLoop)
	n.log.Info("ghost: node started", "name", n.name, "addr", n.addr, "members", len(n.Members()))
	n.warnOpenGateway()
	return n, nil
}

// awaitTable waits, when the node has found peers, until it holds the
// cluster's partition table, at most until ctx ends or RequestTimeout.
func (n *Node) awaitTable(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	for n.table.Load().version == 0 && n.peerCount.Load() > 0 {
		changed := n.tableChanged.wait()
		n.learnVersion(1)
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// Get returns the pair stored under key, or ErrCacheMiss.
func (n *Node) Get(ctx context.Context, key string) (Item, error) {
	raw, err := n.read(ctx, key)
	return itemOf(key, raw, err)
}

// itemOf is the Item of key's encoded value raw, read with err.
func itemOf(key string, raw []byte, err error) (Item, error) {
	if err != nil {
		return Item{Key: key}, err
	}
	v, err := decodeValue(raw)
	if err != nil {
		return Item{Key: key}, fmt.Errorf("ghost: decode value of %q: %w", key, err)
	}
	return Item{Key: key, Value: v, raw: raw}, nil
}

// Put stores value under key, replacing any pair there (STORED). ttl is how
// long the pair lives: NoExpiry for ever, 0 for Config.DefaultTTL.
func (n *Node) Put(ctx context.Context, key string, value any, ttl time.Duration) error {
	return n.store1(ctx, OpPut, key, value, ttl)
}

// Add stores value under key only when no live pair holds the key (STORED);
// otherwise it returns ErrNotStored. When many callers Add one key at once,
// exactly one succeeds.
func (n *Node) Add(ctx context.Context, key string, value any, ttl time.Duration) error {
	return n.store1(ctx, OpAdd, key, value, ttl)
}

func (n *Node) store1(ctx context.Context, op Op, key string, value any, ttl time.Duration) error {
	ttl, err := n.checkTTL(ttl)
	if err != nil {
		return err
	}
	raw, err := n.encodeValue(key, value)
	if err != nil {
		return err
	}
	_, err = n.route(ctx, &request{op: op, key: key, value: raw, ttl: int64(ttl), rid: n.requestIDs.id()})
	return err
}

// checkTTL returns the TTL a write is stored with: Config.DefaultTTL for 0.
func (n *Node) checkTTL(ttl time.Duration) (time.Duration, error) {
	if ttl == 0 {
		ttl = n.cfg.DefaultTTL
	}
	if ttl < 0 && ttl != NoExpiry {
		return 0, fmt.Errorf("ghost: ttl %v: want NoExpiry, 0 or a positive duration", ttl)
	}
	return ttl, nil
}

// encodeValue encodes the value of a write, refusing what its owner would.
func (n *Node) encodeValue(key string, value any) ([]byte, error) {
	raw, err := msgpack.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("ghost: encode value of %q: %w", key, err)
	}
	if len(raw) > n.cfg.MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrValueTooLarge, len(raw), n.cfg.MaxValueSize)
	}
	if err := checkValue(raw); err != nil {
		return nil, fmt.Errorf("ghost: value of %q: %w", key, err)
	}
	return raw, nil
}

// Delete removes the pair stored under key (REMOVED), or returns ErrNotFound.
func (n *Node) Delete(ctx context.Context, key string) error {
	_, err := n.route(ctx, &request{op: OpDelete, key: key, rid: n.requestIDs.id()})
	return err
}

// Flush removes every pair from every node (FLUSHED). When a node cannot be
// reached, the others are still flushed and the error wraps ErrFlush.
func (n *Node) Flush(ctx context.Context) error {
	var errs []error
	for _, r := range n.broadcast(ctx, OpFlush) {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.addr, r.err))
		}
	}
	if n.nearGrants.inUse.Load() {
		// Then the near caches, once no store holds a pair a near copy
		// could have been granted of (near.go).
		for _, r := range n.broadcast(ctx, opNearInvalidate) {
			if r.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.addr, r.err))
			}
		}
	}
	if len(errs) > 0 {
		n.stats.errFlush.Add(1)
		return fmt.Errorf("%w: %w", ErrFlush, errors.Join(errs...))
	}
	return nil
}

// Ping returns the addresses of the members that answered, sorted. This
// node always answers.
func (n *Node) Ping(ctx context.Context) ([]string, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	var up []string
	for _, r := range n.broadcast(ctx, OpPing) {
		if r.err == nil {
			up = append(up, r.addr)
		}
	}
	slices.Sort(up)
	return up, nil
}

// SnitchMetrics returns system metrics (memory, CPU, goroutines, keys
// held), one entry per member that answered: its recorded history and a
// sample taken now. Members that did not answer are left out and named in
// the error, which is nil when every member answered.
func (n *Node) SnitchMetrics(ctx context.Context) ([]NodeMetrics, error) {
	return n.metrics(ctx, OpSnitchMetrics)
}

// WatchdogMetrics returns application metrics (request and result counts),
// one entry per member, as SnitchMetrics does.
func (n *Node) WatchdogMetrics(ctx context.Context) ([]NodeMetrics, error) {
	return n.metrics(ctx, OpWatchdogMetrics)
}

func (n *Node) metrics(ctx context.Context, op Op) ([]NodeMetrics, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	var out []NodeMetrics
	var errs []error
	for _, r := range n.broadcast(ctx, op) {
		if r.err == nil {
			var samples []Sample
			if r.err = decodeSamples(r.value, op, &samples); r.err == nil {
				out = append(out, NodeMetrics{Node: r.addr, Data: samples})
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", r.addr, r.err))
	}
	return out, errors.Join(errs...)
}

// Members returns the addresses of the live members of the cluster as
// gossip reports them, this node included, sorted.
func (n *Node) Members() []string {
	live, _ := n.liveView()
	out := make([]string, len(live))
	for i, m := range live {
		out[i] = m.addr
	}
	slices.Sort(out)
	return out
}

// Owner returns the address of the member that owns key by this node's
// partition table: its primary, which decides its writes and serves its
// reads.
func (n *Node) Owner(key string) string {
	t := n.table.Load()
	return t.members[t.primary(n.partitionOf(key))].addr
}

// Addr returns the host:port this node listens on, as peers reach it. With
// Config.Addr port 0 it carries the port picked.
func (n *Node) Addr() string { return n.addr }

// Close leaves the cluster as Leave does, allowing the hand-off at most
// Config.CloseTimeout.
func (n *Node) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CloseTimeout)
	defer cancel()
	return n.Leave(ctx)
}

// halt stops the node without telling anyone, as a crash would.
func (n *Node) halt() {
	if n.closed.CompareAndSwap(false, true) {
		n.shutdown()
		n.snapshots.close()
	}
}

// shutdown stops gossip, the listener, every connection and every
// background goroutine, and waits for them.
func (n *Node) shutdown() {
	n.closed.Store(true)
	close(n.done)
	if n.ml != nil {
		_ = n.ml.Shutdown()
	}
	n.gossip.Shutdown()
	n.ep.close()
	n.server.closeAll()
	n.peers.closeAll()
	if n.gateway != nil {
		n.gateway.close()
	}
	n.wg.Wait()
	n.log.Info("ghost: node stopped", "name", n.name)
}

func (n *Node) goBackground(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// every runs f every interval until the node shuts down.
func (n *Node) every(interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			f()
		case <-n.done:
			return
		}
	}
}

func (n *Node) crawlLoop() {
	n.every(n.cfg.CrawlerInterval, func() {
		if removed := n.store.crawl(int64(n.cfg.TombstoneTTL)); removed > 0 {
			n.log.Debug("ghost: crawler removed expired pairs", "count", removed)
		}
	})
}

// partitionOf is the partition of key: the same function consistent's
// FindPartitionID uses, without its []byte conversion.
func (n *Node) partitionOf(key string) int { return n.partitionOfHash(hashKey(key)) }

// partitionOfHash is the partition of a key whose hash is h.
func (n *Node) partitionOfHash(h uint64) int { return int(h % uint64(n.cfg.PartitionCount)) }

func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrKey)
	}
	return nil
}
