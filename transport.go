package ghost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// One port carries everything a node speaks. The first byte of a TCP
// connection says what follows:
//
//	0xF1  the cache protocol: a handshake, then msgpack frames
//	0xF2  a memberlist stream (gossip push/pull, probes over TCP)
//
// UDP on the same port is memberlist's alone.
//
// The cache protocol. The client opens with "\xF1GHOST" and its protocol
// version; the server answers "GHOST", its version and a status byte (0 ok,
// 1 version refused) and closes on refusal. Then both sides send frames: a
// 4-byte big-endian length and a msgpack array,
//
//	request  [id, op, key, value, ttl]
//	response [id, status, value, message]
//
// Requests are pipelined: a client sends many before the replies come, and
// replies carry the id of their request.
const (
	preambleCache  byte = 0xF1
	preambleGossip byte = 0xF2
	magic               = "GHOST"
)

// How long a peer may take over a handshake or over the rest of a frame it
// has begun, before the connection is dropped.
const ioTimeout = 10 * time.Second

type status uint8

const (
	statusOK status = iota
	statusMiss
	statusNotStored
	statusNotFound
	statusBadKey
	statusTooLarge
	statusError
)

type request struct {
	id    uint64
	op    Op
	key   string
	value []byte // encoded value, for put and add
	ttl   int64  // nanoseconds; NoExpiry never expires
}

type response struct {
	id     uint64
	status status
	value  []byte // encoded value for get, encoded samples for metrics
	msg    string // details of an error status
}

// result turns a reply into the value and error the API returns.
func (r response) result() (response, error) {
	switch r.status {
	case statusOK:
		return r, nil
	case statusMiss:
		return r, ErrCacheMiss
	case statusNotStored:
		return r, ErrNotStored
	case statusNotFound:
		return r, ErrNotFound
	case statusBadKey:
		return r, fmt.Errorf("%w (said the owner): %s", ErrKey, r.msg)
	case statusTooLarge:
		return r, fmt.Errorf("%w (said the owner): %s", ErrValueTooLarge, r.msg)
	}
	return r, fmt.Errorf("ghost: peer error: %s", r.msg)
}

// appender is an io.Writer that appends to a byte slice, so frames can be
// encoded straight into an output buffer.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) { a.b = append(a.b, p...); return len(p), nil }
func (a *appender) WriteByte(c byte) error      { a.b = append(a.b, c); return nil }
func (a *appender) WriteString(s string) (int, error) {
	a.b = append(a.b, s...)
	return len(s), nil
}

// beginFrame reserves the length prefix; endFrame fills it in.
func beginFrame(a *appender) int { a.b = append(a.b, 0, 0, 0, 0); return len(a.b) }
func endFrame(a *appender, start int) {
	binary.BigEndian.PutUint32(a.b[start-4:], uint32(len(a.b)-start))
}

func encodeRequest(a *appender, enc *msgpack.Encoder, r *request) {
	start := beginFrame(a)
	// Writing to an appender cannot fail.
	_ = enc.EncodeArrayLen(5)
	_ = enc.EncodeUint(r.id)
	_ = enc.EncodeUint(uint64(r.op))
	_ = enc.EncodeString(r.key)
	_ = enc.EncodeBytes(r.value)
	_ = enc.EncodeInt(r.ttl)
	endFrame(a, start)
}

func encodeResponse(a *appender, enc *msgpack.Encoder, r *response) {
	start := beginFrame(a)
	_ = enc.EncodeArrayLen(4)
	_ = enc.EncodeUint(r.id)
	_ = enc.EncodeUint(uint64(r.status))
	_ = enc.EncodeBytes(r.value)
	_ = enc.EncodeString(r.msg)
	endFrame(a, start)
}

func decodeRequest(dec *msgpack.Decoder, r *request) error {
	if n, err := dec.DecodeArrayLen(); err != nil {
		return err
	} else if n != 5 {
		return fmt.Errorf("request has %d fields, want 5", n)
	}
	var err error
	var op uint8
	if r.id, err = dec.DecodeUint64(); err != nil {
		return err
	}
	if op, err = dec.DecodeUint8(); err != nil {
		return err
	}
	r.op = Op(op)
	if r.key, err = dec.DecodeString(); err != nil {
		return err
	}
	if r.value, err = dec.DecodeBytes(); err != nil {
		return err
	}
	r.ttl, err = dec.DecodeInt64()
	return err
}

func decodeResponse(dec *msgpack.Decoder, r *response) error {
	if n, err := dec.DecodeArrayLen(); err != nil {
		return err
	} else if n != 4 {
		return fmt.Errorf("response has %d fields, want 4", n)
	}
	var err error
	var st uint8
	if r.id, err = dec.DecodeUint64(); err != nil {
		return err
	}
	if st, err = dec.DecodeUint8(); err != nil {
		return err
	}
	r.status = status(st)
	if r.value, err = dec.DecodeBytes(); err != nil {
		return err
	}
	r.msg, err = dec.DecodeString()
	return err
}

// frameReader reads length-prefixed frames from a connection.
type frameReader struct {
	conn net.Conn
	br   *bufio.Reader
	max  int
	buf  []byte
	body bytes.Reader
	dec  *msgpack.Decoder
}

func newFrameReader(conn net.Conn, br *bufio.Reader, max int) *frameReader {
	return &frameReader{conn: conn, br: br, max: max, dec: msgpack.NewDecoder(nil)}
}

// next reads one frame and returns a decoder positioned on its body. A
// frame, once begun, must arrive whole within ioTimeout.
func (f *frameReader) next() (*msgpack.Decoder, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(f.br, hdr[:1]); err != nil {
		return nil, err // an idle connection may wait here for ever
	}
	timed := false
	if f.br.Buffered() < len(hdr)-1 {
		_ = f.conn.SetReadDeadline(time.Now().Add(ioTimeout))
		timed = true
	}
	if _, err := io.ReadFull(f.br, hdr[1:]); err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint32(hdr[:]))
	if size > f.max {
		return nil, fmt.Errorf("frame of %d bytes exceeds the limit of %d", size, f.max)
	}
	if cap(f.buf) < size {
		f.buf = make([]byte, size)
	}
	f.buf = f.buf[:size]
	if !timed && f.br.Buffered() < size {
		_ = f.conn.SetReadDeadline(time.Now().Add(ioTimeout))
		timed = true
	}
	if _, err := io.ReadFull(f.br, f.buf); err != nil {
		return nil, err
	}
	if timed {
		_ = f.conn.SetReadDeadline(time.Time{})
	}
	f.body.Reset(f.buf)
	f.dec.ResetReader(&f.body)
	return f.dec, nil
}

// endpoint is a node's attachment to a network: one address with a stream
// listener and a packet socket, and a way to dial others. tcpEndpoint is the
// real one; MemNetwork makes in-memory ones for tests.
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
func (e *tcpEndpoint) close()       { e.ln.Close(); e.pc.Close() }

// connSet tracks the connections a node serves, to close them on shutdown.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
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

// acceptLoop accepts connections on the node's port and hands each to the
// protocol its first byte names.
func (n *Node) acceptLoop() {
	for {
		conn, err := n.ep.accept()
		if err != nil {
			select {
			case <-n.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			n.log.Error("ghost: accept failed; the node no longer serves", "err", err)
			return
		}
		if !n.server.add(conn) {
			conn.Close()
			return
		}
		n.goBackground(func() { n.dispatch(conn) })
	}
}

func (n *Node) dispatch(conn net.Conn) {
	handedOff := false
	defer func() {
		if !handedOff {
			n.server.remove(conn)
			conn.Close()
		}
	}()
	var first [1]byte
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	switch first[0] {
	case preambleCache:
		n.serveCache(conn)
	case preambleGossip:
		// memberlist owns the connection from here and closes it.
		n.server.remove(conn)
		handedOff = true
		n.gossip.handOff(conn)
	default:
		n.log.Debug("ghost: dropped a connection speaking no known protocol", "remote", conn.RemoteAddr(), "first", first[0])
	}
}

// serveCache serves one cache-protocol connection: a handshake, then
// requests answered in order. Replies are flushed when no more requests are
// already waiting, so a busy connection sends many replies per write.
func (n *Node) serveCache(conn net.Conn) {
	br := bufio.NewReaderSize(conn, 32<<10)
	var hello [len(magic) + 1]byte
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(br, hello[:]); err != nil || string(hello[:len(magic)]) != magic {
		n.log.Debug("ghost: bad cache handshake", "remote", conn.RemoteAddr(), "err", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	ok := hello[len(magic)] == n.cfg.protocolVersion
	reply := append([]byte(magic), n.cfg.protocolVersion, 0)
	if !ok {
		reply[len(reply)-1] = 1
	}
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(reply); err != nil || !ok {
		n.log.Warn("ghost: refused a peer of another protocol version", "remote", conn.RemoteAddr(), "version", hello[len(magic)])
		return
	}

	frames := newFrameReader(conn, br, n.cfg.MaxFrameSize)
	out := &appender{}
	enc := msgpack.NewEncoder(out)
	var req request
	for {
		dec, err := frames.next()
		if err == nil {
			err = decodeRequest(dec, &req)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				n.log.Debug("ghost: dropped a cache connection", "remote", conn.RemoteAddr(), "err", err)
			}
			return
		}
		resp := n.serve(&req)
		encodeResponse(out, enc, &resp)
		if br.Buffered() == 0 || len(out.b) > 64<<10 {
			_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := conn.Write(out.b); err != nil {
				return
			}
			out.b = out.b[:0]
		}
	}
}

// peerClients holds a connection pool per peer address.
type peerClients struct {
	node   *Node
	mu     sync.RWMutex
	pools  map[string]*peerPool
	closed bool
}

func (pc *peerClients) init(n *Node) {
	pc.node = n
	pc.pools = make(map[string]*peerPool)
}

func (pc *peerClients) get(addr string) *peerPool {
	pc.mu.RLock()
	p := pc.pools[addr]
	pc.mu.RUnlock()
	if p != nil {
		return p
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if p = pc.pools[addr]; p == nil {
		p = &peerPool{node: pc.node, addr: addr, slots: make([]poolSlot, pc.node.cfg.ConnsPerPeer)}
		if pc.closed {
			p.closed.Store(true) // the node is shutting down: dial nothing new
		} else {
			pc.pools[addr] = p
		}
	}
	return p
}

// retain closes the pools of peers that are no longer members.
func (pc *peerClients) retain(members []member) {
	keep := make(map[string]bool, len(members))
	for _, m := range members {
		keep[m.addr] = true
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for addr, p := range pc.pools {
		if !keep[addr] {
			delete(pc.pools, addr)
			p.close()
		}
	}
}

func (pc *peerClients) closeAll() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.closed = true
	for addr, p := range pc.pools {
		delete(pc.pools, addr)
		p.close()
	}
}

// peerPool is a small set of pipelined connections to one peer, dialled on
// first use and again after they break.
type peerPool struct {
	node         *Node
	addr         string
	slots        []poolSlot
	next         atomic.Uint32
	suspectUntil atomic.Int64
	closed       atomic.Bool
}

type poolSlot struct {
	mu   sync.Mutex
	conn *clientConn
}

func (p *peerPool) suspect() bool { return time.Now().UnixNano() < p.suspectUntil.Load() }

func (p *peerPool) markSuspect() {
	p.suspectUntil.Store(time.Now().Add(p.node.cfg.SuspectTimeout).UnixNano())
}

// call sends req to the peer and waits for its reply, until ctx ends or
// the peer has owed a reply for longer than Config.RequestTimeout.
func (p *peerPool) call(ctx context.Context, req *request) (response, error) {
	c, err := p.conn(ctx)
	if err != nil {
		return response{}, err
	}
	return c.roundTrip(ctx, req)
}

func (p *peerPool) conn(ctx context.Context) (*clientConn, error) {
	s := &p.slots[int(p.next.Add(1))%len(p.slots)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil && s.conn.alive() {
		return s.conn, nil
	}
	if p.closed.Load() {
		return nil, ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.node.cfg.RequestTimeout)
		defer cancel()
	}
	c, err := dialPeer(ctx, p.node, p.addr)
	if err != nil {
		return nil, err
	}
	s.conn = c
	return c, nil
}

func (p *peerPool) close() {
	p.closed.Store(true)
	for i := range p.slots {
		s := &p.slots[i]
		s.mu.Lock()
		if s.conn != nil {
			s.conn.fail(ErrClosed)
		}
		s.mu.Unlock()
	}
}

// clientConn is one pipelined connection to a peer. Callers encode their
// requests into a shared buffer; whichever caller finds no write under way
// writes the buffer out, and keeps writing while others add to it, so under
// load many requests leave in one write.
//
// No timer is started per call: a reaper checks the oldest unanswered call
// a few times per RequestTimeout, and breaks the connection when the peer
// has fallen that far behind, which fails every call waiting on it.
type clientConn struct {
	conn    net.Conn
	timeout time.Duration
	broken  chan struct{} // closed once err is set

	mu       sync.Mutex
	out      *appender
	spare    []byte
	enc      *msgpack.Encoder
	flushing bool
	nextID   uint64
	pending  map[uint64]*call
	err      error // set once the connection is broken
}

// call is one request waiting for its reply. Calls are recycled through
// callPool once their reply has been taken.
type call struct {
	done  chan struct{} // capacity 1: the reader never blocks on it
	resp  response
	err   error
	start int64 // unix nanoseconds
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func dialPeer(ctx context.Context, n *Node, addr string) (*clientConn, error) {
	conn, err := n.ep.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	hello := append([]byte{preambleCache}, magic...)
	hello = append(hello, n.cfg.protocolVersion)
	var reply [len(magic) + 2]byte
	if _, err = conn.Write(hello); err == nil {
		_, err = io.ReadFull(conn, reply[:])
	}
	if err == nil && string(reply[:len(magic)]) != magic {
		err = errors.New("peer does not speak the GhostDB cache protocol")
	}
	if err == nil && reply[len(magic)+1] != 0 {
		err = fmt.Errorf("%w: we speak %d, %s speaks %d", ErrProtocolVersion, n.cfg.protocolVersion, addr, reply[len(magic)])
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ghost: connect to %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &clientConn{
		conn:    conn,
		timeout: n.cfg.RequestTimeout,
		broken:  make(chan struct{}),
		out:     &appender{},
		pending: make(map[uint64]*call),
	}
	c.enc = msgpack.NewEncoder(c.out)
	n.goBackground(func() { c.readLoop(n.cfg.MaxFrameSize) })
	n.goBackground(c.reap)
	return c, nil
}

func (c *clientConn) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil
}

func (c *clientConn) roundTrip(ctx context.Context, req *request) (response, error) {
	cl := callPool.Get().(*call)
	cl.start = time.Now().UnixNano()
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		callPool.Put(cl)
		return response{}, err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = cl
	r := *req
	r.id = id
	encodeRequest(c.out, c.enc, &r)
	if !c.flushing {
		c.flushing = true
		c.flushLocked()
	}
	c.mu.Unlock()

	select {
	case <-cl.done:
		resp, err := cl.resp, cl.err
		*cl = call{done: cl.done}
		callPool.Put(cl)
		return resp, err
	case <-ctx.Done():
		c.mu.Lock()
		_, waiting := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if waiting { // nobody else holds cl: recycle it
			callPool.Put(cl)
		}
		return response{}, ctx.Err()
	}
}

// flushLocked writes the output buffer until it stays empty. c.mu is held
// on entry and exit, and released during each write. Before each write it
// yields once, so callers that are ready to send join the same write.
func (c *clientConn) flushLocked() {
	for len(c.out.b) > 0 && c.err == nil {
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
		buf := c.out.b
		c.out.b = c.spare[:0]
		c.mu.Unlock()
		_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := c.conn.Write(buf)
		c.mu.Lock()
		c.spare = buf[:0]
		if err != nil {
			c.failLocked(err)
		}
	}
	c.flushing = false
}

// reap breaks the connection when a call has waited longer than the
// request timeout.
func (c *clientConn) reap() {
	tick := time.NewTicker(max(c.timeout/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.broken:
			return
		case now := <-tick.C:
			c.mu.Lock()
			for _, cl := range c.pending {
				if now.UnixNano()-cl.start > int64(c.timeout) {
					c.failLocked(fmt.Errorf("no reply within %v", c.timeout))
					break
				}
			}
			c.mu.Unlock()
		}
	}
}

func (c *clientConn) readLoop(maxFrame int) {
	frames := newFrameReader(c.conn, bufio.NewReaderSize(c.conn, 32<<10), maxFrame)
	for {
		dec, err := frames.next()
		var resp response
		if err == nil {
			err = decodeResponse(dec, &resp)
		}
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		cl := c.pending[resp.id]
		delete(c.pending, resp.id)
		c.mu.Unlock()
		if cl != nil {
			cl.resp = resp
			cl.done <- struct{}{}
		}
	}
}

func (c *clientConn) fail(err error) {
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
}

func (c *clientConn) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = fmt.Errorf("ghost: connection to %s: %w", c.conn.RemoteAddr(), err)
	close(c.broken)
	c.conn.Close()
	for id, cl := range c.pending {
		delete(c.pending, id)
		cl.err = c.err
		cl.done <- struct{}{}
	}
}

func encodeSamples(samples []Sample) []byte {
	wire := make([][2]any, len(samples))
	for i, s := range samples {
		wire[i] = [2]any{s.Time.UnixNano(), s.Values}
	}
	b, _ := msgpack.Marshal(wire) // maps of int64 always encode
	return b
}

func decodeSamples(b []byte, out *[]Sample) error {
	var wire []struct {
		_msgpack struct{} `msgpack:",as_array"`
		Time     int64
		Values   map[string]int64
	}
	if err := msgpack.Unmarshal(b, &wire); err != nil {
		return err
	}
	*out = make([]Sample, len(wire))
	for i, w := range wire {
		(*out)[i] = Sample{Time: time.Unix(0, w.Time), Values: w.Values}
	}
	return nil
}
