package ghost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// Membership and the ring.
//
// memberlist tells which nodes are alive. Its delegates run while it holds
// its own locks, so they only signal ringDue; ringLoop then reads the member
// list and computes the partition → owners table, which every node computes
// alike from the same members, and swaps it in whole. Readers load the table
// without locks.

// replicas is how many members each partition lists: its owner, then the
// members a call falls back to when the owner cannot be reached.
const replicas = 3

type member struct {
	name string // memberlist name, unique per process start
	addr string // host:port
}

// String makes member a consistent.Member.
func (m member) String() string { return m.name }

// ring is an immutable snapshot of membership and partition ownership.
type ring struct {
	members []member // sorted by name
	owners  [][]int  // per partition: indices into members, owner first
}

type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

func newRing(members []member, self string, partitions int) *ring {
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.name, b.name) })
	cm := make([]consistent.Member, len(members))
	index := make(map[string]int, len(members))
	for i, m := range members {
		cm[i] = m
		index[m.name] = i
	}
	c := consistent.New(cm, consistent.Config{
		Hasher:            xxhasher{},
		PartitionCount:    partitions,
		ReplicationFactor: 20,
		Load:              1.25,
	})
	n := min(replicas, len(members))
	r := &ring{members: members, owners: make([][]int, partitions)}
	flat := make([]int, 0, partitions*n)
	for p := range partitions {
		closest, err := c.GetClosestNForPartition(p, n)
		if err != nil {
			panic(fmt.Sprintf("ghost: ring of %d members: %v", len(members), err)) // n never exceeds the members
		}
		start := len(flat)
		for _, m := range closest {
			flat = append(flat, index[m.String()])
		}
		r.owners[p] = flat[start:len(flat):len(flat)]
	}
	return r
}

func sameMembers(a, b []member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// nodeMeta is what a node advertises through gossip: a marker and its
// protocol version.
func nodeMeta(version uint8) []byte { return []byte{'g', version} }

func metaVersion(meta []byte) (uint8, bool) {
	if len(meta) < 2 || meta[0] != 'g' {
		return 0, false
	}
	return meta[1], true
}

func (n *Node) startGossip() error {
	mc := memberlist.DefaultLANConfig()
	if n.cfg.Gossip != nil {
		n.cfg.Gossip(mc)
	}
	host, port, _ := net.SplitHostPort(n.addr)
	mc.Name = n.name
	mc.Transport = n.gossip
	mc.AdvertiseAddr = host
	mc.AdvertisePort, _ = strconv.Atoi(port)
	mc.BindAddr, mc.BindPort = host, mc.AdvertisePort
	mc.Delegate = gossipDelegate{n}
	mc.Events = gossipDelegate{n}
	mc.Alive = gossipDelegate{n}
	mc.SecretKey = n.cfg.SecretKey
	mc.Label = n.cfg.Label
	mc.LogOutput = nil
	mc.Logger = log.New(slogWriter{n.log}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("ghost: start gossip: %w", err)
	}
	n.ml = ml
	return nil
}

// gossipDelegate receives memberlist's callbacks. They run under
// memberlist's locks: nothing here may call back into memberlist.
type gossipDelegate struct{ n *Node }

func (d gossipDelegate) NodeMeta(limit int) []byte                  { return nodeMeta(d.n.cfg.protocolVersion) }
func (d gossipDelegate) NotifyMsg([]byte)                           {}
func (d gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}
func (d gossipDelegate) NotifyJoin(m *memberlist.Node)              { d.n.peerUp(m) }
func (d gossipDelegate) NotifyLeave(m *memberlist.Node)             { d.n.peerDown(m) }
func (d gossipDelegate) NotifyUpdate(m *memberlist.Node)            { d.n.peerUp(m) }

// NotifyAlive keeps nodes of another protocol version, and memberlist
// nodes that are not GhostDB nodes, out of the cluster.
func (d gossipDelegate) NotifyAlive(peer *memberlist.Node) error {
	v, ok := metaVersion(peer.Meta)
	if !ok {
		return fmt.Errorf("%s is not a GhostDB node", peer.Name)
	}
	if v != d.n.cfg.protocolVersion {
		return fmt.Errorf("%w: %s speaks %d, we speak %d", ErrProtocolVersion, peer.Name, v, d.n.cfg.protocolVersion)
	}
	return nil
}

// peerUp records a peer that joined or changed, when it speaks our
// protocol version, and schedules a ring rebuild. It runs under memberlist's
// lock, so m may be read.
func (n *Node) peerUp(m *memberlist.Node) {
	if m.Name == n.name {
		return
	}
	n.gossipMu.Lock()
	if v, ok := metaVersion(m.Meta); ok && v == n.cfg.protocolVersion {
		n.gossipPeers[m.Name] = member{name: m.Name, addr: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))}
	} else {
		delete(n.gossipPeers, m.Name)
	}
	n.gossipMu.Unlock()
	n.ringChanged()
}

// peerDown forgets a peer that left or died, and schedules a ring rebuild.
func (n *Node) peerDown(m *memberlist.Node) {
	n.gossipMu.Lock()
	delete(n.gossipPeers, m.Name)
	n.gossipMu.Unlock()
	n.ringChanged()
}

func (n *Node) ringChanged() {
	select {
	case n.ringDue <- struct{}{}:
	default: // a rebuild is already due; it will see this change too
	}
}

func (n *Node) ringLoop() {
	for {
		select {
		case <-n.ringDue:
			n.rebuildRing()
		case <-n.done:
			return
		}
	}
}

// rebuildRing recomputes the ring from the live peers memberlist reported.
func (n *Node) rebuildRing() {
	n.ringMu.Lock()
	defer n.ringMu.Unlock()
	ms := []member{{name: n.name, addr: n.addr}}
	n.gossipMu.Lock()
	for _, m := range n.gossipPeers {
		ms = append(ms, m)
	}
	n.gossipMu.Unlock()
	slices.SortFunc(ms, func(a, b member) int { return strings.Compare(a.name, b.name) })
	if sameMembers(n.ring.Load().members, ms) {
		return
	}
	n.ring.Store(newRing(ms, n.name, n.cfg.PartitionCount))
	n.peers.retain(ms)
	n.log.Info("ghost: membership changed", "members", len(ms))
}

// joinSeeds joins the seeds that are not members yet. It returns when the
// join is done or ctx ends, whichever is first.
func (n *Node) joinSeeds(ctx context.Context, seeds []string) {
	known := make(map[string]bool)
	for _, m := range n.ring.Load().members {
		known[m.addr] = true
	}
	var todo []string
	for _, s := range seeds {
		if !known[s] && !n.resolvesToMember(ctx, s, known) {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return
	}
	joined := make(chan struct{})
	n.goBackground(func() {
		defer close(joined)
		count, err := n.ml.Join(todo)
		if err != nil {
			n.log.Debug("ghost: could not reach some seeds", "seeds", todo, "joined", count, "err", err)
		}
		n.rebuildRing()
	})
	select {
	case <-joined:
	case <-ctx.Done():
	case <-n.done:
	}
}

// resolvesToMember reports whether a seed named by host name is an address
// of a known member already.
func (n *Node) resolvesToMember(ctx context.Context, seed string, known map[string]bool) bool {
	host, port, _ := net.SplitHostPort(seed)
	if n.cfg.Network != nil || net.ParseIP(host) != nil {
		return false
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if known[net.JoinHostPort(ip, port)] {
			return true
		}
	}
	return false
}

// seedLoop re-joins seeds that are not members, and re-reads the node list
// for new ones, until the node shuts down.
func (n *Node) seedLoop(seeds []string) {
	rejoin := time.NewTicker(n.cfg.RejoinInterval)
	defer rejoin.Stop()
	refresh := time.NewTicker(n.cfg.PeersRefresh)
	defer refresh.Stop()
	join := func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RejoinInterval)
		defer cancel()
		n.joinSeeds(ctx, seeds)
	}
	for {
		select {
		case <-rejoin.C:
			join()
		case <-refresh.C:
			if n.cfg.PeersFile == "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PeersRefresh)
			fresh, err := loadSeeds(ctx, n.cfg)
			cancel()
			if err != nil {
				n.log.Warn("ghost: could not re-read the node list; keeping the old one", "err", err)
				continue
			}
			if !slices.Equal(fresh, seeds) {
				n.log.Info("ghost: node list changed", "seeds", len(fresh))
				seeds = fresh
				join()
			}
		case <-n.done:
			return
		}
	}
}

// gossipTransport carries memberlist's traffic over the node's one port:
// UDP packets on the endpoint, and TCP streams that open with
// preambleGossip, handed over by the node's accept loop.
type gossipTransport struct {
	n       *Node
	packets chan *memberlist.Packet
	streams chan net.Conn
	ctx     context.Context // ends at Shutdown, cutting dials short
	stop    context.CancelFunc
}

func newGossipTransport(n *Node) *gossipTransport {
	ctx, stop := context.WithCancel(context.Background())
	t := &gossipTransport{
		n:       n,
		packets: make(chan *memberlist.Packet, 256),
		streams: make(chan net.Conn),
		ctx:     ctx,
		stop:    stop,
	}
	n.goBackground(t.readPackets)
	return t
}

func (t *gossipTransport) readPackets() {
	buf := make([]byte, 65536)
	for {
		size, from, err := t.n.ep.readPacket(buf)
		if err != nil {
			select {
			case <-t.ctx.Done():
				return
			case <-t.n.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			t.n.log.Debug("ghost: gossip packet read ends", "err", err)
			return
		}
		p := &memberlist.Packet{Buf: slices.Clone(buf[:size]), From: from, Timestamp: time.Now()}
		select {
		case t.packets <- p:
		case <-t.ctx.Done():
			return
		}
	}
}

func (t *gossipTransport) handOff(conn net.Conn) {
	select {
	case t.streams <- conn:
	case <-t.ctx.Done():
		conn.Close()
	}
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *gossipTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	host, port, _ := net.SplitHostPort(t.n.addr)
	p, _ := strconv.Atoi(port)
	return net.ParseIP(host), p, nil
}

// WriteTo implements memberlist.Transport.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return time.Now(), t.n.ep.writePacket(b, addr)
}

// PacketCh implements memberlist.Transport.
func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	conn, err := t.n.ep.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte{preambleGossip}); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// StreamCh implements memberlist.Transport.
func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown implements memberlist.Transport. The endpoint itself is the
// node's to close.
func (t *gossipTransport) Shutdown() error {
	t.stop()
	return nil
}

// advertiseAddr is the host:port peers reach this node at.
func advertiseAddr(cfg Config, listening string) (string, error) {
	_, port, _ := net.SplitHostPort(listening)
	if cfg.AdvertiseAddr != "" {
		host, aport, err := net.SplitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return "", fmt.Errorf("ghost: AdvertiseAddr %q: %w", cfg.AdvertiseAddr, err)
		}
		if aport == "0" || aport == "" {
			aport = port
		}
		ip := net.ParseIP(host)
		if ip == nil {
			ips, err := net.LookupIP(host)
			if err != nil || len(ips) == 0 {
				return "", fmt.Errorf("ghost: AdvertiseAddr %q: cannot resolve %s: %v", cfg.AdvertiseAddr, host, err)
			}
			ip = ips[0]
		}
		return net.JoinHostPort(ip.String(), aport), nil
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return net.JoinHostPort(ip.String(), port), nil
	}
	if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
		return net.JoinHostPort(ip, port), nil
	}
	return net.JoinHostPort("127.0.0.1", port), nil
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// slogWriter turns memberlist's log lines ("[DEBUG] memberlist: ...") into
// slog records at the matching level.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError} {
		if strings.HasPrefix(line, prefix) {
			level, line = l, strings.TrimSpace(strings.TrimPrefix(line, prefix))
			break
		}
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}
