package ghost

import (
	"bufio"
	"context"
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

// Connections to peers: a pool of pipelined connections per peer, with
// request timeouts and suspect marking for failover.

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
