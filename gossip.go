package ghost

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// The memberlist adapter: gossip over the node's one port (UDP packets,
// and TCP streams that open with preambleGossip), and the delegates that
// receive memberlist's callbacks.

// nodeMeta is what a node advertises through gossip: a marker, its
// protocol version, when it joined (the oldest member coordinates),
// whether it is leaving (handing its partitions off) and whether it keeps
// a near cache (nearlease.go).
func nodeMeta(version uint8, start int64, leaving, near bool) []byte {
	b := []byte{'g', version}
	b = binary.BigEndian.AppendUint64(b, uint64(start))
	b = append(b, flagByte(leaving))
	return append(b, flagByte(near))
}

func flagByte(on bool) byte {
	if on {
		return 1
	}
	return 0
}

// metaNear reads whether a peer keeps a near cache.
func metaNear(meta []byte) bool { return len(meta) >= 12 && meta[0] == 'g' && meta[11] == 1 }

// metaMember reads a peer's meta: its start time and whether it is leaving.
func metaMember(meta []byte) (start int64, leaving bool, ok bool) {
	if len(meta) < 11 || meta[0] != 'g' {
		return 0, false, false
	}
	return int64(binary.BigEndian.Uint64(meta[2:10])), meta[10] == 1, true
}

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
	if len(n.cfg.SecretKeys) > 0 {
		// The extra keys are accepted; SecretKey, made primary by
		// memberlist, is the one gossip is sent with.
		kr, err := memberlist.NewKeyring(n.cfg.SecretKeys, n.cfg.SecretKey)
		if err != nil {
			return fmt.Errorf("ghost: SecretKeys: %w", err)
		}
		mc.Keyring = kr
	}
	mc.Label = n.cfg.Label
	mc.LogOutput = nil
	mc.Logger = log.New(slogWriter{n.log}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("ghost: start gossip: %w", err)
	}
	n.ml = ml
	n.probeWait = mc.ProbeInterval
	return nil
}

// gossipDelegate receives memberlist's callbacks. They run under
// memberlist's locks: nothing here may call back into memberlist.
type gossipDelegate struct{ n *Node }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	return nodeMeta(d.n.cfg.protocolVersion, d.n.self.start, d.n.leaving.Load(), d.n.near != nil)
}

func (d gossipDelegate) NotifyMsg([]byte) {}

func (d gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

func (d gossipDelegate) LocalState(join bool) []byte { return nil }

func (d gossipDelegate) MergeRemoteState(buf []byte, join bool) {}

func (d gossipDelegate) NotifyJoin(m *memberlist.Node) { d.n.peerUp(m) }

func (d gossipDelegate) NotifyLeave(m *memberlist.Node) { d.n.peerDown(m) }

func (d gossipDelegate) NotifyUpdate(m *memberlist.Node) { d.n.peerUp(m) }

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

// gossipTransport carries memberlist's traffic over the node's one port:
// UDP packets on the endpoint, and TCP streams that open with
// preambleGossip, handed over by the node's accept loop.
type gossipTransport struct {
	ep      endpoint // the node's: its packets, and its dials
	secure  func(ctx context.Context, conn net.Conn, addr string) (net.Conn, error)
	addr    string // the node's advertised address
	log     *slog.Logger
	packets chan *memberlist.Packet
	streams chan net.Conn
	ctx     context.Context // ends at Shutdown, cutting dials short
	stop    context.CancelFunc
}

// newGossipTransport carries gossip over ep, securing its streams with
// secure, for a node advertised at addr; start runs its packet reader.
func newGossipTransport(ep endpoint, secure func(context.Context, net.Conn, string) (net.Conn, error), addr string, log *slog.Logger, start func(func())) *gossipTransport {
	ctx, stop := context.WithCancel(context.Background())
	t := &gossipTransport{
		ep:      ep,
		secure:  secure,
		addr:    addr,
		log:     log,
		packets: make(chan *memberlist.Packet, 256),
		streams: make(chan net.Conn),
		ctx:     ctx,
		stop:    stop,
	}
	start(t.readPackets)
	return t
}

func (t *gossipTransport) readPackets() {
	buf := make([]byte, 65536)
	for {
		size, from, err := t.ep.readPacket(buf)
		if err != nil {
			select {
			case <-t.ctx.Done(): // Shutdown, which the node's shutdown calls
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			t.log.Debug("ghost: gossip packet read ends", "err", err)
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
	host, port, _ := net.SplitHostPort(t.addr)
	p, _ := strconv.Atoi(port)
	return net.ParseIP(host), p, nil
}

// WriteTo implements memberlist.Transport.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return time.Now(), t.ep.writePacket(b, addr)
}

// PacketCh implements memberlist.Transport.
func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	conn, err := t.ep.dial(ctx, addr)
	if err == nil {
		conn, err = t.secure(ctx, conn, addr)
	}
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
