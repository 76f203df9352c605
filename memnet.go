package ghost

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
)

// MemNetwork is an in-memory network for tests: nodes whose Config.Network
// is the same MemNetwork reach each other without sockets, gossip included.
// Isolate cuts a node off, as a pulled cable would, to test failures.
//
// Addresses look like real ones ("127.0.0.1:7991"); port 0 picks a free
// one. They exist only inside the MemNetwork.
type MemNetwork struct {
	mu       sync.Mutex
	nodes    map[string]*memEndpoint
	side     map[string]int  // nodes on different sides cannot reach each other; 0 is the main side
	noConns  map[string]bool // nodes that packets reach but connections do not (blockConns)
	nextSide int
	nextPort int

	// Packets (gossip) sent and their bytes, and those dropped because
	// the receiver was behind; for the scale test (scale_test.go).
	packets, packetBytes, packetsDropped atomic.Int64
}

// NewMemNetwork returns an empty in-memory network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{nodes: make(map[string]*memEndpoint), side: make(map[string]int), nextPort: 20000}
}

// lookupHost resolves nothing: addresses on a MemNetwork are IP addresses.
func (m *MemNetwork) lookupHost(_ context.Context, host string) ([]string, error) {
	return nil, fmt.Errorf("no host %q on an in-memory network", host)
}

// exposed is false: nothing outside the process reaches a MemNetwork.
func (m *MemNetwork) exposed(string) bool { return false }

// Isolate cuts the node at addr off: its connections break, dials to and
// from it fail and its packets are lost, until Heal.
func (m *MemNetwork) Isolate(addr string) { m.Split(addr) }

// Split cuts the nodes at addrs off from all others, as a network split
// would: they still reach each other, but no node outside the group, until
// Heal. Their connections to the others break.
func (m *MemNetwork) Split(addrs ...string) {
	m.mu.Lock()
	m.nextSide++
	var eps []*memEndpoint
	for _, a := range addrs {
		m.side[a] = m.nextSide
		if ep := m.nodes[a]; ep != nil {
			eps = append(eps, ep)
		}
	}
	m.mu.Unlock()
	for _, ep := range eps {
		ep.breakConns(func(c *memConn) bool { return !m.reaches(string(c.local), string(c.remote)) })
	}
}

// Heal reconnects a node that Isolate or Split cut off.
func (m *MemNetwork) Heal(addr string) {
	m.mu.Lock()
	delete(m.side, addr)
	delete(m.noConns, addr)
	m.mu.Unlock()
}

// blockConns lets packets reach the node at addr but no connection, as a
// firewall open only to UDP would (or a TLS mistake): gossip probes see it
// alive, and every call to it fails. Heal undoes it.
func (m *MemNetwork) blockConns(addr string) {
	m.mu.Lock()
	if m.noConns == nil {
		m.noConns = map[string]bool{}
	}
	m.noConns[addr] = true
	ep := m.nodes[addr]
	m.mu.Unlock()
	if ep != nil {
		ep.breakConns(nil)
	}
}

// connects reports whether a connection from one node to another may be
// made.
func (m *MemNetwork) connects(from, to string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.noConns[from] && !m.noConns[to]
}

func (m *MemNetwork) reaches(from, to string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.side[from] == m.side[to]
}

func (m *MemNetwork) listen(addr string) (endpoint, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if port == "0" {
		for m.nodes[net.JoinHostPort(host, fmt.Sprint(m.nextPort))] != nil {
			m.nextPort++
		}
		port = fmt.Sprint(m.nextPort)
		m.nextPort++
	}
	addr = net.JoinHostPort(host, port)
	if m.nodes[addr] != nil {
		return nil, fmt.Errorf("memnet: %s: address already in use", addr)
	}
	ep := &memEndpoint{
		net:     m,
		address: addr,
		accepts: make(chan net.Conn, 64),
		packets: make(chan memPacket, 1024),
		done:    make(chan struct{}),
		conns:   make(map[*memConn]struct{}),
	}
	m.nodes[addr] = ep
	return ep, nil
}

// route returns the endpoint at addr when traffic from one to the other
// may pass.
func (m *MemNetwork) route(from, to string) *memEndpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.side[from] != m.side[to] {
		return nil
	}
	return m.nodes[to]
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memPacket struct {
	data []byte
	from string
}

type memEndpoint struct {
	net     *MemNetwork
	address string
	accepts chan net.Conn
	packets chan memPacket
	done    chan struct{}
	once    sync.Once

	mu    sync.Mutex
	conns map[*memConn]struct{}
}

// memConn is one end of an in-memory connection.
type memConn struct {
	net.Conn
	local, remote memAddr
	owners        [2]*memEndpoint
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }
func (c *memConn) Close() error {
	for _, ep := range c.owners {
		ep.mu.Lock()
		delete(ep.conns, c)
		ep.mu.Unlock()
	}
	return c.Conn.Close()
}

func (e *memEndpoint) track(c *memConn) {
	for _, ep := range c.owners {
		ep.mu.Lock()
		ep.conns[c] = struct{}{}
		ep.mu.Unlock()
	}
}

// breakConns closes the endpoint's connections that match, all when
// match is nil.
func (e *memEndpoint) breakConns(match func(*memConn) bool) {
	e.mu.Lock()
	conns := make([]*memConn, 0, len(e.conns))
	for c := range e.conns {
		if match == nil || match(c) {
			conns = append(conns, c)
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (e *memEndpoint) accept() (net.Conn, error) {
	select {
	case c := <-e.accepts:
		return c, nil
	case <-e.done:
		return nil, net.ErrClosed
	}
}

func (e *memEndpoint) dial(ctx context.Context, addr string) (net.Conn, error) {
	target := e.net.route(e.address, addr)
	if target == nil || !e.net.connects(e.address, addr) {
		return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(addr), Err: fmt.Errorf("connection refused")}
	}
	a, b := net.Pipe()
	client := &memConn{Conn: a, local: memAddr(e.address), remote: memAddr(addr), owners: [2]*memEndpoint{e, target}}
	server := &memConn{Conn: b, local: memAddr(addr), remote: memAddr(e.address), owners: [2]*memEndpoint{e, target}}
	e.track(client)
	e.track(server)
	select {
	case target.accepts <- server:
		return client, nil
	case <-target.done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, &net.OpError{Op: "dial", Net: "mem", Addr: memAddr(addr), Err: fmt.Errorf("connection refused")}
}

func (e *memEndpoint) readPacket(buf []byte) (int, net.Addr, error) {
	select {
	case p := <-e.packets:
		return copy(buf, p.data), memAddr(p.from), nil
	case <-e.done:
		return 0, nil, net.ErrClosed
	}
}

// writePacket delivers b unless the way is cut or the receiver is behind;
// like UDP, it never reports a loss.
func (e *memEndpoint) writePacket(b []byte, addr string) error {
	if target := e.net.route(e.address, addr); target != nil {
		e.net.packets.Add(1)
		e.net.packetBytes.Add(int64(len(b)))
		select {
		case target.packets <- memPacket{data: slices.Clone(b), from: e.address}:
		default:
			e.net.packetsDropped.Add(1)
		}
	}
	return nil
}

func (e *memEndpoint) addr() string { return e.address }

func (e *memEndpoint) close() {
	e.once.Do(func() {
		e.net.mu.Lock()
		if e.net.nodes[e.address] == e {
			delete(e.net.nodes, e.address)
		}
		e.net.mu.Unlock()
		close(e.done)
		e.breakConns(nil)
	})
}
