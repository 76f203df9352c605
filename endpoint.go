package ghost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The node's one port: the endpoint interface with its TCP implementation
// (memnet.go has the in-memory one), the accept loop, and the dispatch of
// each connection to the protocol its first byte names.

// endpoint is a node's attachment to a network: one address with a stream
// listener and a packet socket, and a way to dial others. tcpEndpoint is the
// real one; MemNetwork makes in-memory ones for tests.
// Network carries a node's traffic: TCP and UDP on the host's addresses
// (TCPNetwork, the default) or an in-memory network for tests
// (NewMemNetwork). The node does not ask which one it has: it listens,
// dials and resolves through it. Its methods are unexported, so the two
// networks are the package's own.
type Network interface {
	// listen opens the node's endpoint on addr (port 0: a free one).
	listen(addr string) (endpoint, error)
	// lookupHost resolves a host name to addresses.
	lookupHost(ctx context.Context, host string) ([]string, error)
	// exposed reports whether a node listening on addr can be reached from
	// other hosts, so that it needs a secret (Config.Insecure).
	exposed(addr string) bool
}

// TCPNetwork is the network of real sockets: TCP for the cache protocol
// and gossip streams, UDP for gossip packets, on one port; names resolve
// by DNS. It is Config.Network's default.
type TCPNetwork struct{}

func (TCPNetwork) listen(addr string) (endpoint, error) { return listenTCP(addr) }

func (TCPNetwork) lookupHost(ctx context.Context, host string) ([]string, error) {
	return net.DefaultResolver.LookupHost(ctx, host)
}

func (TCPNetwork) exposed(addr string) bool { return !loopback(addr) }

// endpoint is a node's one port on its network.
type endpoint interface {
	accept() (net.Conn, error)
	dial(ctx context.Context, addr string) (net.Conn, error)
	readPacket(buf []byte) (int, net.Addr, error)
	writePacket(b []byte, addr string) error
	addr() string
	close()
}

type tcpEndpoint struct {
	ln     net.Listener
	pc     net.PacketConn
	dialer net.Dialer
}

// listenTCP listens on addr for TCP and UDP on one port number. With port 0
// it retries until it finds a port free for both.
func listenTCP(addr string) (*tcpEndpoint, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 10 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(p)))
		if err == nil {
			return &tcpEndpoint{ln: ln, pc: pc}, nil
		}
		ln.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, lastErr
}

func (e *tcpEndpoint) accept() (net.Conn, error) { return e.ln.Accept() }

func (e *tcpEndpoint) dial(ctx context.Context, addr string) (net.Conn, error) {
	return e.dialer.DialContext(ctx, "tcp", addr)
}

func (e *tcpEndpoint) readPacket(buf []byte) (int, net.Addr, error) { return e.pc.ReadFrom(buf) }

func (e *tcpEndpoint) writePacket(b []byte, addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	_, err = e.pc.WriteTo(b, ua)
	return err
}

func (e *tcpEndpoint) addr() string { return e.ln.Addr().String() }

func (e *tcpEndpoint) close() { e.ln.Close(); e.pc.Close() }

// connSet tracks the cache-protocol connections a node serves, to close
// them on shutdown, and counts every inbound connection, whatever its
// protocol, until it is closed, to hold them to Config.MaxConnections.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	open   atomic.Int64 // inbound connections not yet closed
}

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

// admit counts conn as open until it is closed, and returns it wrapped so
// that closing it releases its place; or returns false when max
// connections are open already.
func (s *connSet) admit(conn net.Conn, max int) (net.Conn, bool) {
	if s.open.Add(1) > int64(max) {
		s.open.Add(-1)
		return nil, false
	}
	return &countedConn{Conn: conn, set: s}, true
}

// countedConn is an inbound connection counted in its connSet. Whoever
// ends up owning it (the cache server, net/http, memberlist) closes it.
type countedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.set.open.Add(-1) })
	return c.Conn.Close()
}

// Backoff after a failed accept, as net/http's: 5 ms, doubling up to 1 s.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// acceptLoop accepts connections on the node's port and hands each to the
// protocol its first byte names. It ends only when the node shuts down:
// a failed accept (out of file descriptors, EMFILE or ENFILE; a connection
// aborted before it was accepted) backs off and tries again, and
// connections past Config.MaxConnections are closed at once. Both are
// logged at most once a second.
func (n *Node) acceptLoop() {
	var delay time.Duration
	var failLog, refuseLog logLimiter
	for {
		conn, err := n.ep.accept()
		if err != nil {
			select {
			case <-n.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				n.log.Error("ghost: the listener closed; the node no longer serves", "err", err)
				return
			}
			delay = min(max(2*delay, acceptRetryMin), acceptRetryMax)
			if ok, skipped := failLog.allow(); ok {
				n.log.Warn("ghost: accept failed; retrying", "err", err, "retry_in", delay, "failures_not_logged", skipped)
			}
			select {
			case <-time.After(delay):
			case <-n.done:
				return
			}
			continue
		}
		delay = 0
		counted, ok := n.server.admit(conn, n.cfg.MaxConnections)
		if !ok {
			conn.Close()
			if ok, skipped := refuseLog.allow(); ok {
				n.log.Warn("ghost: too many connections; closed a new one", "limit", n.cfg.MaxConnections, "remote", conn.RemoteAddr(), "refusals_not_logged", skipped)
			}
			continue
		}
		if !n.server.add(counted) {
			counted.Close()
			return
		}
		n.goBackground(func() { n.dispatch(counted) })
	}
}

// logLimiter lets a repeated log line through at most once a second. It is
// for one goroutine's use.
type logLimiter struct {
	last    time.Time
	skipped int
}

// allow reports whether to log now, and how many times it said no since it
// last said yes.
func (l *logLimiter) allow() (bool, int) {
	now := time.Now()
	if now.Sub(l.last) < time.Second {
		l.skipped++
		return false, 0
	}
	skipped := l.skipped
	l.last, l.skipped = now, 0
	return true, skipped
}

func (n *Node) dispatch(conn net.Conn) {
	handedOff := false
	defer func() {
		if !handedOff {
			n.server.remove(conn)
			conn.Close()
		}
	}()
	first, err := readFirstByte(conn)
	if err != nil {
		return
	}
	// inner is the connection the protocol speaks on: conn, or TLS over
	// it (secure.go). Without TLS every peer counts as a member.
	inner, member := conn, n.tls == nil
	if first == preambleTLS && n.tls != nil {
		tc, verified, err := n.secureServer(conn)
		if err != nil {
			n.refusePeer(conn.RemoteAddr().String(), "TLS handshake failed", err)
			return
		}
		if first, err = readFirstByte(tc); err != nil {
			return
		}
		inner, member = tc, verified
	}
	switch first {
	case preambleCache:
		if !member {
			n.refusePeer(conn.RemoteAddr().String(), "cache protocol without a cluster certificate", nil)
			return
		}
		n.serveCache(inner)
	case preambleGossip:
		if !member {
			n.refusePeer(conn.RemoteAddr().String(), "gossip stream without a cluster certificate", nil)
			return
		}
		// memberlist owns the connection from here and closes it.
		n.server.remove(conn)
		handedOff = true
		n.gossip.handOff(inner)
	default:
		if n.gateway != nil && isHTTPStart(first) {
			// net/http owns the connection from here and closes it.
			n.server.remove(conn)
			handedOff = true
			n.gateway.handOff(inner, first)
			return
		}
		n.log.Debug("ghost: dropped a connection speaking no known protocol", "remote", conn.RemoteAddr(), "first", first)
	}
}

// readFirstByte reads the byte that names a connection's protocol.
func readFirstByte(conn net.Conn) (byte, error) {
	var first [1]byte
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return 0, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	return first[0], nil
}
