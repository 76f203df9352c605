package ghost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// Reacting to membership: memberlist's delegates only record peers and
// signal ringDue; the table loop (coordinator.go) then plans or fetches the
// partition table. Seeds are joined again in the background, and the node
// list re-read.

// peer is a live member as gossip reports it.
type peer struct {
	member
	leaving bool
}

// peerUp records a peer that joined or changed, when it speaks our
// protocol version, and schedules a table update. It runs under
// memberlist's lock, so m may be read.
func (n *Node) peerUp(m *memberlist.Node) {
	if m.Name == n.name {
		return
	}
	n.gossipMu.Lock()
	v, vok := metaVersion(m.Meta)
	start, leaving, ok := metaMember(m.Meta)
	if vok && ok && v == n.cfg.protocolVersion {
		addr := net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
		n.gossipPeers[m.Name] = peer{member: member{name: m.Name, addr: addr, start: start}, leaving: leaving}
		if metaNear(m.Meta) {
			n.nearGrants.inUse.Store(true) // for good: its leases may outlive it
		}
		if _, wasGone := n.goneAt[m.Name]; wasGone {
			n.backAt[m.Name] = time.Now() // on probation for its lease (vouchesFor)
		}
		delete(n.goneAt, m.Name)
	} else {
		delete(n.gossipPeers, m.Name)
	}
	n.peerCount.Store(int32(len(n.gossipPeers)))
	n.gossipMu.Unlock()
	n.ringChanged()
}

// peerDown forgets a peer that left or died, and schedules a table update.
func (n *Node) peerDown(m *memberlist.Node) {
	n.gossipMu.Lock()
	if _, ok := n.gossipPeers[m.Name]; ok {
		n.goneAt[m.Name] = time.Now()
	}
	delete(n.gossipPeers, m.Name)
	n.peerCount.Store(int32(len(n.gossipPeers)))
	n.gossipMu.Unlock()
	n.ringChanged()
}

func (n *Node) ringChanged() {
	n.noteQuorum()
	select {
	case n.ringDue <- struct{}{}:
	default: // an update is already due; it will see this change too
	}
}

// liveView returns the live members as gossip reports them, this node
// included, sorted by name, and the names of those leaving.
func (n *Node) liveView() ([]member, map[string]bool) {
	live := []member{n.self}
	leaving := map[string]bool{}
	if n.leaving.Load() {
		leaving[n.self.name] = true
	}
	n.gossipMu.Lock()
	for _, p := range n.gossipPeers {
		live = append(live, p.member)
		if p.leaving {
			leaving[p.name] = true
		}
	}
	n.gossipMu.Unlock()
	slices.SortFunc(live, func(a, b member) int { return strings.Compare(a.name, b.name) })
	return live, leaving
}

// joinSeeds joins the seeds that are not members yet. It returns when the
// join is done or ctx ends, whichever is first.
func (n *Node) joinSeeds(ctx context.Context, seeds []string) {
	known := make(map[string]bool)
	live, _ := n.liveView()
	for _, m := range live {
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
		n.ringChanged()
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
	if net.ParseIP(host) != nil {
		return false
	}
	ips, err := n.cfg.Network.lookupHost(ctx, host)
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
		if net.ParseIP(host) == nil {
			ips, err := cfg.Network.lookupHost(context.Background(), host)
			if err != nil || len(ips) == 0 {
				return "", fmt.Errorf("ghost: AdvertiseAddr %q: cannot resolve %s: %v", cfg.AdvertiseAddr, host, err)
			}
			host = ips[0]
		}
		return net.JoinHostPort(host, aport), nil
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
