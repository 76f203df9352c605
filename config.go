package ghost

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the port GhostDB nodes listen on, and the port assumed for
// an address in the node list that names none.
const DefaultPort = 7991

// Config configures a node. The zero value of every field means its
// documented default, so Config{PeersFile: "nodes.conf"} is a complete
// configuration.
type Config struct {
	// PeersFile is the node list: a file path, or an http:// or https:// URL,
	// holding one address per line ("10.0.0.7", "10.0.0.7:7991",
	// "[fd00::7]:7991" or a host name; no port means 7991; blank lines and
	// "#" comments are ignored). It is re-read every PeersRefresh and new
	// addresses are joined. Optional.
	PeersFile string

	// Peers are seed addresses given in code, in the same formats as the
	// lines of PeersFile. Used together with PeersFile. Optional.
	Peers []string

	// Addr is where the node listens, for gossip (TCP and UDP), the cache
	// protocol and the HTTP gateway (TCP) alike. Default ":7991".
	// "127.0.0.1:0" picks a free port; Node.Addr reports it.
	Addr string

	// DisableHTTP turns off the HTTP gateway: the original GhostDB HTTP/JSON
	// protocol (POST /get, /put, /add, /delete, /flush...) that the original
	// SDKs speak to port 7991, and the pages beside it (GET /metrics for
	// Prometheus, GET /dashboard). With it off, HTTP connections are dropped;
	// Node.Collector still gives the metrics to the application.
	// Who may use it: see HTTPToken and HTTPOpen. Default false: the
	// gateway is on.
	DisableHTTP bool

	// HTTPToken, when set, is a secret every gateway request must carry as
	// "Authorization: Bearer <token>", pages included; others get 401.
	// It is never logged. Default none.
	HTTPToken string

	// HTTPOpen lets a closed cluster's gateway (SecretKey or TLS set)
	// serve clients from other hosts without HTTPToken: for the original
	// SDKs on a trusted network. Without it, such a gateway answers only
	// loopback clients. Without SecretKey and TLS the gateway is open, as
	// the original GhostDB's was. Default false.
	HTTPOpen bool

	// AdvertiseAddr is the host:port peers use to reach this node. Default:
	// Addr when it names an IP, else a private address of this host as
	// go-sockaddr's GetPrivateIP picks it (the interface of the default
	// route first; it may be IPv6), else 127.0.0.1; with Addr's port. Set
	// it on hosts with several interfaces, containers or NAT.
	AdvertiseAddr string

	// Name is this node's name in the cluster; it must be unique among live
	// nodes. Default: the advertised address followed by a random suffix, so
	// a restarted process never collides with its former self.
	Name string

	// Replicas is how many copies of each pair the cluster keeps, the
	// owner's included. Default 2 (the owner and one backup): no
	// acknowledged write is lost when any one node crashes. 1 keeps a
	// single copy (a crash loses the pairs its node owned). With fewer
	// members than Replicas, every member keeps a copy. Each extra copy
	// costs one more round trip per write and its share of memory.
	Replicas int

	// AntiEntropyInterval is how often each partition's owner compares its
	// copy with its backups' and resyncs a backup that differs. Default 30
	// seconds.
	AntiEntropyInterval time.Duration

	// TombstoneTTL is how long a deleted key's tombstone is kept, so that
	// an older copy of the pair arriving from a transfer or a healed split
	// cannot bring it back. A split that heals after longer than this may
	// revive pairs deleted meanwhile. Default 5 minutes.
	TombstoneTTL time.Duration

	// DataDir, when set, is a directory of this node's own where it keeps
	// the partitions it holds, so that a cluster stopped as a whole comes
	// back warm: a snapshot of its pairs and tombstones is written every
	// SnapshotInterval and when it leaves, and the next Join on the same
	// DataDir offers them to the cluster (newer wins, as in a healed
	// split; see the README's "Warm restart"). One node per directory:
	// Join fails with ErrDataDirInUse when another holds it. Default "":
	// nothing is written to disk.
	DataDir string

	// SnapshotInterval is how often a node with a DataDir writes its
	// snapshot; a crash loses what was written since the last one, unless
	// other nodes hold it. Default 10 seconds.
	SnapshotInterval time.Duration

	// RefreshAhead, when set, has GetOrLoad reload a key before its TTL
	// runs out: a call that finds the key's pair with less than this left
	// to live gets it, and runs the loader in the background to replace
	// it, once in the whole cluster, while every caller keeps reading the
	// current pair. A hot key then never expires into a miss. Default 0:
	// off. With it, GetOrLoad always asks the key's primary.
	RefreshAhead time.Duration

	// StaleWhileRevalidate, when set, keeps a pair this long past its
	// expiry for GetOrLoad, which serves it while one caller in the
	// cluster reloads it in the background, instead of making every
	// caller wait for the load: a hot key whose reload is slow never
	// reads as a miss. Get and the other reads see the pair gone at its
	// expiry. Every node must have the same setting. Default 0: none.
	StaleWhileRevalidate time.Duration

	// LoadErrorTTL, when set, caches a loader's failure (negative
	// caching): for this long, GetOrLoad of the key fails with the same
	// error (ErrLoad) at once instead of running the loader again, unless
	// a write of the key comes first. Keep it short: a second or two
	// spares a failing database a stampede of retries. Default 0: a
	// failure is not cached.
	LoadErrorTTL time.Duration

	// LoadTimeout bounds how long the callers of GetOrLoad wait for
	// another caller's load of the same key when that caller vanishes
	// without a word (its process died); then one of them loads. A load
	// that takes longer may run twice. Default 10 seconds.
	LoadTimeout time.Duration

	// NearCacheKeys, when set, keeps a near cache of at most this many
	// keys: values this node reads often (twice within a while) from the
	// other members that own them are kept here and served at the speed
	// of a local hit, for a lease of NearCacheLease at most. A near copy
	// is never served once a write of its key could have been read
	// anywhere: the key's primary tells every node holding one to drop it
	// before the write takes effect (waiting out the lease of a node it
	// cannot reach), and the first writes of a partition whose primary
	// changed wait one lease. Default 0: no near cache.
	NearCacheKeys int

	// NearCacheBytes bounds the near cache's keys and values (as
	// encoded). Default 64 MiB when NearCacheKeys is set.
	NearCacheBytes int64

	// NearCacheLease is how long a near copy is served before it is read
	// from its owner again, and how long the owner's writes may wait for a
	// node holding one that does not answer. A node grants leases of its
	// own NearCacheLease; a holder keeps a copy for the shorter of the
	// two. Default 1 second.
	NearCacheLease time.Duration

	// CloseTimeout bounds the hand-off of Close (see Node.Leave).
	// Default 30 seconds.
	CloseTimeout time.Duration

	// MaxKeys is the most pairs (and tombstones) this node holds; past it,
	// the least recently used are evicted. Default: no limit, so that
	// MaxBytes alone bounds the node and a cache of many small pairs does
	// not evict with memory to spare (65,536 before, which evicted 3-5 % of
	// 100,000 keys on 3 nodes with Replicas 2).
	MaxKeys int

	// MaxBytes is the most key+value bytes (values as encoded) this node
	// holds; past it, the least recently used pairs are evicted.
	// Default 256 MiB.
	MaxBytes int64

	// MaxValueSize is the largest encoded value a Put or Add accepts;
	// larger ones fail with ErrValueTooLarge. Default 1 MiB.
	MaxValueSize int

	// DefaultTTL applies when a call passes ttl 0. Default NoExpiry.
	DefaultTTL time.Duration

	// CrawlerInterval is how often expired pairs are removed in the
	// background. Expired pairs are never returned, whatever this is.
	// Default 1 minute.
	CrawlerInterval time.Duration

	// SnitchInterval and WatchdogInterval are how often a system and an
	// application metrics sample is recorded. Default 1 minute each.
	SnitchInterval   time.Duration
	WatchdogInterval time.Duration

	// MetricsHistory is how many recorded samples of each kind are kept.
	// Default 60.
	MetricsHistory int

	// PeersRefresh is how often PeersFile is re-read. Default 30 seconds.
	PeersRefresh time.Duration

	// RejoinInterval is how often seeds that are not members are joined
	// again, so that a node started before its peers finds them. Default 5
	// seconds.
	RejoinInterval time.Duration

	// RequestTimeout bounds how long a peer may owe a reply: a connection
	// on which a reply is later than this is closed and its calls fail over
	// to the next node, whatever their ctx allows. Default 2 seconds.
	RequestTimeout time.Duration

	// ConnectTimeout bounds the TCP connect to a peer. The connect and the
	// cache-protocol handshake after it are bounded by RequestTimeout as
	// well, whatever the caller's ctx allows, so a peer that is frozen or
	// never answers costs a call at most RequestTimeout before the call
	// fails over. Default 1 second, and never more than RequestTimeout.
	ConnectTimeout time.Duration

	// IdleTimeout is how long an inbound cache-protocol or HTTP connection
	// may stay silent between requests before the node closes it. The node
	// closes its own idle connections to peers after half of it, so that
	// between nodes with the same setting the calling side closes first.
	// Default 1 minute.
	IdleTimeout time.Duration

	// MaxConnections is the most inbound TCP connections the node holds
	// open at once, cache protocol, HTTP and gossip streams together; past
	// it, new connections are closed as soon as they are accepted. Peers
	// need ConnsPerPeer each. Default 4096.
	MaxConnections int

	// SuspectTimeout is how long a peer that failed a call is skipped before
	// calls try it again (membership removes it for good once gossip agrees
	// it is dead). Default 1 second.
	SuspectTimeout time.Duration

	// ConnsPerPeer is how many TCP connections this node keeps to each peer;
	// requests are pipelined on each, and fewer connections batch more
	// requests per write. Default 1.
	ConnsPerPeer int

	// MaxFrameSize is the largest message accepted on the wire.
	// Default MaxValueSize + 64 KiB.
	MaxFrameSize int

	// PartitionCount is how many partitions the keyspace is split into. It
	// must be the same on every node, for the life of the cluster.
	// Default 271.
	PartitionCount int

	// SecretKey, when set (16, 24 or 32 bytes, the same on every node),
	// closes the cluster to whoever lacks it: gossip is encrypted, and
	// every TCP connection between nodes (cache protocol and gossip
	// streams) runs over mutually authenticated TLS 1.3, with
	// certificates from a CA every node derives from the key. Plaintext
	// peers are refused. The gateway then also speaks HTTPS on the same
	// port (Node.ClusterCA gives its CA) and serves only loopback clients
	// unless HTTPToken or HTTPOpen is set. See "Security" in the README.
	SecretKey []byte

	// SecretKeys are further keys accepted, not sent, for a rotation
	// without downtime: gossip sealed with any of them is read, and
	// certificates of their CAs are trusted. Each is 16, 24 or 32 bytes.
	// Requires SecretKey. Default none.
	SecretKeys [][]byte

	// TLS, when set, is used for connections between nodes instead of the
	// CA derived from SecretKey, for users with their own PKI: it must
	// hold the node's certificate (a client and server one), the CAs that
	// verify its peers (RootCAs and ClientCAs) and ClientAuth
	// RequireAndVerifyClientCert or VerifyClientCertIfGiven (peers must
	// present a verified certificate either way; HTTPS clients need not).
	// ServerName, when empty, is the host dialled. TLS 1.3 is required.
	// Gossip packets (UDP) are encrypted only with SecretKey: set both.
	TLS *tls.Config

	// Label keeps clusters that share a network apart: nodes with
	// different labels ignore each other's gossip. Default none.
	Label string

	// Gossip, when set, is called with the memberlist configuration just
	// before it is used, to tune probe and gossip timing (FastGossip is a
	// ready profile for quick failure detection). Its ProbeInterval also
	// sets the read lease's term, four of them (lease.go): use the same
	// profile on every node. Network settings (Transport, addresses, Name,
	// delegates) are GhostDB's and are set again afterwards.
	Gossip func(*memberlist.Config)

	// Logger receives the node's logs, memberlist's included. Default: the
	// warnings and errors go to slog.Default(), the rest nowhere.
	Logger *slog.Logger

	// Insecure lets a node listen beyond loopback without SecretKey or TLS:
	// an open cluster, as the original GhostDB's, in which anyone who
	// reaches the port can join by gossip, read, write and flush. Without
	// it, Join refuses such a configuration with ErrInsecure (as Redis's
	// protected mode does). Set it only on a network you trust. Default
	// false.
	Insecure bool

	// StaleReads lets a node cut off from a majority of its partition
	// table's members (see Node.Degraded) go on answering reads from the
	// copies it holds, however old they grow: the far side may have
	// failed its partitions over and taken writes since. It refuses writes
	// either way. Without it, such a node refuses reads and writes with
	// ErrNoQuorum once gossip has told it the majority is gone, and
	// before that it stops serving reads from its own copies when its read
	// lease lapses: a majority has not answered its pings for a lease term
	// (four gossip probe intervals), which is before the majority can
	// drop it. Its callers get an error they can retry elsewhere, never a
	// stale value. Default false.
	StaleReads bool

	// Clock, when set, is the node's wall clock, in place of time.Now: the
	// source of write versions, of TTL deadlines and of tombstone ages. It
	// is here so that tests can run a node whose clock is skewed; see
	// "Clocks" in docs/replication.md for what a skewed clock can and cannot
	// do. Default time.Now.
	Clock func() time.Time

	// Network carries the node's traffic. Default TCPNetwork: sockets on
	// the host's addresses. NewMemNetwork's network carries it in memory
	// instead, for fast tests of clusters in one process.
	Network Network

	// protocolVersion overrides ProtocolVersion; tests use it to play a
	// peer from another release.
	protocolVersion uint8
}

// FastGossip is a memberlist profile for Config.Gossip that declares a node
// that stops answering dead in one to two seconds, rather than the five to
// twenty-five of memberlist's LAN defaults, at the cost of more gossip
// traffic: probes every 200 ms with a 150 ms timeout, a suspicion of three
// probe rounds (at most doubled), gossip every 30 ms. It holds on a loaded
// two-core machine without declaring live nodes dead. The demo, the
// fault-injection suite, the benchmarks and the tests of failures use it;
// on a real network, measure before you adopt it.
func FastGossip(mc *memberlist.Config) {
	mc.ProbeInterval = 200 * time.Millisecond
	mc.ProbeTimeout = 150 * time.Millisecond
	mc.SuspicionMult = 3
	mc.SuspicionMaxTimeoutMult = 2
	mc.GossipInterval = 30 * time.Millisecond
	mc.PushPullInterval = time.Second
	mc.TCPTimeout = 2 * time.Second
	mc.GossipToTheDeadTime = time.Second
}

// withDefaults fills in the zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = fmt.Sprintf(":%d", DefaultPort)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return c, fmt.Errorf("ghost: Addr %q: %w", c.Addr, err)
	}
	setDefault(&c.Replicas, 2)
	setDefault(&c.AntiEntropyInterval, 30*time.Second)
	setDefault(&c.TombstoneTTL, 5*time.Minute)
	setDefault(&c.CloseTimeout, 30*time.Second)
	setDefault(&c.SnapshotInterval, 10*time.Second)
	setDefault(&c.LoadTimeout, 10*time.Second)
	setDefault(&c.NearCacheLease, time.Second)
	if c.NearCacheKeys > 0 {
		setDefault(&c.NearCacheBytes, 64<<20)
	}
	setDefault(&c.MaxKeys, math.MaxInt)
	setDefault(&c.MaxBytes, 256<<20)
	setDefault(&c.MaxValueSize, 1<<20)
	setDefault(&c.DefaultTTL, NoExpiry)
	setDefault(&c.CrawlerInterval, time.Minute)
	setDefault(&c.SnitchInterval, time.Minute)
	setDefault(&c.WatchdogInterval, time.Minute)
	setDefault(&c.MetricsHistory, 60)
	setDefault(&c.PeersRefresh, 30*time.Second)
	setDefault(&c.RejoinInterval, 5*time.Second)
	setDefault(&c.RequestTimeout, 2*time.Second)
	setDefault(&c.SuspectTimeout, time.Second)
	setDefault(&c.ConnectTimeout, time.Second)
	c.ConnectTimeout = min(c.ConnectTimeout, c.RequestTimeout)
	setDefault(&c.IdleTimeout, time.Minute)
	setDefault(&c.MaxConnections, 4096)
	setDefault(&c.ConnsPerPeer, 1)
	setDefault(&c.MaxFrameSize, c.MaxValueSize+64<<10)
	setDefault(&c.PartitionCount, 271)
	setDefault(&c.protocolVersion, ProtocolVersion)
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(warnings{slog.Default().Handler()})
	}
	if c.Network == nil {
		c.Network = TCPNetwork{}
	}
	if c.Network.exposed(c.Addr) && len(c.SecretKey) == 0 && c.TLS == nil && !c.Insecure {
		return c, fmt.Errorf("%w: Addr %q listens beyond this host, and without a secret anyone who reaches the port can join the cluster, read, write and flush; set SecretKey (the same 16, 24 or 32 bytes on every node) or TLS, listen on 127.0.0.1, or set Insecure to run an open cluster on a network you trust", ErrInsecure, c.Addr)
	}
	switch {
	case c.MaxKeys < 0, c.MaxBytes < 0, c.MaxValueSize < 0, c.ConnsPerPeer < 0, c.PartitionCount < 0, c.Replicas < 0, c.MaxConnections < 0, c.NearCacheKeys < 0, c.NearCacheBytes < 0:
		return c, fmt.Errorf("ghost: negative limit in Config")
	case c.RequestTimeout < 0, c.ConnectTimeout < 0, c.IdleTimeout < 0, c.SnapshotInterval < 0, c.RefreshAhead < 0, c.LoadTimeout < 0, c.NearCacheLease < 0, c.StaleWhileRevalidate < 0, c.LoadErrorTTL < 0:
		return c, fmt.Errorf("ghost: negative timeout in Config")
	case c.PartitionCount > 65535:
		return c, fmt.Errorf("ghost: PartitionCount %d exceeds 65535", c.PartitionCount)
	case int64(c.MaxValueSize) > c.MaxBytes:
		return c, fmt.Errorf("ghost: MaxValueSize %d exceeds MaxBytes %d", c.MaxValueSize, c.MaxBytes)
	case c.MaxFrameSize < c.MaxValueSize:
		return c, fmt.Errorf("ghost: MaxFrameSize %d is below MaxValueSize %d", c.MaxFrameSize, c.MaxValueSize)
	case c.DefaultTTL < 0 && c.DefaultTTL != NoExpiry:
		return c, fmt.Errorf("ghost: DefaultTTL %v: want NoExpiry or a positive duration", c.DefaultTTL)
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return c, fmt.Errorf("ghost: SecretKey is %d bytes; want 16, 24 or 32", len(c.SecretKey))
	}
	if len(c.SecretKeys) > 0 && len(c.SecretKey) == 0 {
		return c, fmt.Errorf("ghost: SecretKeys without SecretKey")
	}
	for i, k := range c.SecretKeys {
		switch len(k) {
		case 16, 24, 32:
		default:
			return c, fmt.Errorf("ghost: SecretKeys[%d] is %d bytes; want 16, 24 or 32", i, len(k))
		}
	}
	return c, nil
}

// loopback reports whether addr (host:port) listens on a loopback address
// only.
func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// warnings passes the records of Warn level and above on to its handler:
// the default Logger, so that a node's warnings are not lost and its
// routine news does not fill the application's log.
type warnings struct{ slog.Handler }

func (w warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnings) WithAttrs(as []slog.Attr) slog.Handler { return warnings{w.Handler.WithAttrs(as)} }

func (w warnings) WithGroup(name string) slog.Handler { return warnings{w.Handler.WithGroup(name)} }

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
