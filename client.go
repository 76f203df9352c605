package ghost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Connections to peers: a pool of pipelined connections per peer, with
// request timeouts and suspect marking for failover.

// peerClients holds a connection pool per peer address. Every forwarded
// call looks its pool up, so the map is read without a lock: it is
// replaced whole, under mu, when a pool is added or removed.
type peerClients struct {
	setup  *peerSetup
	mu     sync.Mutex
	pools  atomic.Pointer[map[string]*peerPool]
	closed bool
}

// peerSetup is what the peer pools need of their node: how to open and
// secure a connection, the limits of a call, and how to start goroutines
// that its shutdown waits for.
type peerSetup struct {
	dial            func(ctx context.Context, addr string) (net.Conn, error)
	secure          func(ctx context.Context, conn net.Conn, addr string) (net.Conn, error)
	requestTimeout  time.Duration
	connectTimeout  time.Duration
	idleTimeout     time.Duration
	suspectTimeout  time.Duration
	connsPerPeer    int
	maxFrameSize    int
	protocolVersion uint8
	frames          *frameBudget
	goBackground    func(func())
}

// peerSetup is the setup of n's peer pools.
func (n *Node) peerSetup() *peerSetup {
	return &peerSetup{
		dial:            n.ep.dial,
		secure:          n.secureClient,
		requestTimeout:  n.cfg.RequestTimeout,
		connectTimeout:  n.cfg.ConnectTimeout,
		idleTimeout:     n.cfg.IdleTimeout,
		suspectTimeout:  n.cfg.SuspectTimeout,
		connsPerPeer:    n.cfg.ConnsPerPeer,
		maxFrameSize:    n.cfg.MaxFrameSize,
		protocolVersion: n.cfg.protocolVersion,
		frames:          n.frameBudget,
		goBackground:    n.goBackground,
	}
}

func (pc *peerClients) init(s *peerSetup) {
	pc.setup = s
	pc.pools.Store(&map[string]*peerPool{})
}

func (pc *peerClients) get(addr string) *peerPool {
	if p := (*pc.pools.Load())[addr]; p != nil {
		return p
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pools := *pc.pools.Load()
	p := pools[addr]
	if p == nil {
		p = newPeerPool(pc.setup, addr)
		if pc.closed {
			p.close() // the node is shutting down: dial nothing new
		} else {
			next := maps.Clone(pools)
			next[addr] = p
			pc.pools.Store(&next)
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
	next := maps.Clone(*pc.pools.Load())
	for addr, p := range next {
		if !keep[addr] {
			delete(next, addr)
			p.close()
		}
	}
	pc.pools.Store(&next)
}

func (pc *peerClients) closeAll() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.closed = true
	for _, p := range *pc.pools.Load() {
		p.close()
	}
	pc.pools.Store(&map[string]*peerPool{})
}

// peerPool is a small set of pipelined connections to one peer, dialled on
// first use and again after they break.
type peerPool struct {
	setup        *peerSetup
	addr         string
	slots        []poolSlot
	next         atomic.Uint32
	suspectUntil atomic.Int64
	closed       atomic.Bool
	ctx          context.Context // ends when the pool closes, cutting dials short
	cancel       context.CancelFunc
}

type poolSlot struct {
	conn    atomic.Pointer[clientConn] // the slot's connection; set under mu, read without it
	mu      sync.Mutex
	dialing *dialAttempt // the dial under way, if any
}

// live returns the slot's connection while it is not broken, or nil.
func (s *poolSlot) live() *clientConn {
	if c := s.conn.Load(); c != nil && !c.dead.Load() {
		return c
	}
	return nil
}

// dialAttempt is one dial of a slot's connection. Callers that find it
// under way wait for it rather than dial again.
type dialAttempt struct {
	done chan struct{} // closed once conn or err is set
	conn *clientConn
	err  error
}

func newPeerPool(s *peerSetup, addr string) *peerPool {
	ctx, cancel := context.WithCancel(context.Background())
	return &peerPool{setup: s, addr: addr, slots: make([]poolSlot, s.connsPerPeer), ctx: ctx, cancel: cancel}
}

func (p *peerPool) suspect() bool {
	until := p.suspectUntil.Load()
	return until != 0 && time.Now().UnixNano() < until // the clock only for a peer once suspected
}

func (p *peerPool) markSuspect() {
	p.suspectUntil.Store(time.Now().Add(p.setup.suspectTimeout).UnixNano())
}

// call sends req to the peer and waits for its reply, until ctx ends or
// the peer has owed a reply, or a connection, for longer than
// Config.RequestTimeout. A request that a pooled connection failed to
// carry because the connection was closed (by us as idle, or by the peer)
// is sent once more on a new connection.
func (p *peerPool) call(ctx context.Context, req *request) (response, error) {
	for retried := false; ; retried = true {
		c, fresh, err := p.conn(ctx)
		if err != nil {
			return response{}, err
		}
		resp, err := c.roundTrip(ctx, req)
		if err == nil || fresh || retried || ctx.Err() != nil || !connClosed(err) {
			return resp, err
		}
	}
}

// conn returns a live connection from the next slot. When the slot has
// none, one is dialled in the background, bounded by RequestTimeout and
// not by ctx, so that a caller who gives up leaves it to finish for the
// next; callers that find a dial under way wait for it, or for their ctx,
// and never for a lock held across the network. fresh reports a
// connection dialled for this call.
func (p *peerPool) conn(ctx context.Context) (c *clientConn, fresh bool, err error) {
	s := &p.slots[0]
	if len(p.slots) > 1 {
		s = &p.slots[int(p.next.Add(1))%len(p.slots)]
	}
	if c := s.live(); c != nil {
		return c, false, nil
	}
	s.mu.Lock()
	if c := s.live(); c != nil { // dialled meanwhile
		s.mu.Unlock()
		return c, false, nil
	}
	if p.closed.Load() {
		s.mu.Unlock()
		return nil, false, ErrClosed
	}
	d := s.dialing
	if d == nil {
		d = &dialAttempt{done: make(chan struct{})}
		s.dialing = d
		// close sets closed before it takes each slot's lock, so no dial
		// starts once the node's shutdown waits for its goroutines.
		p.setup.goBackground(func() { p.dial(s, d) })
	}
	s.mu.Unlock()
	select {
	case <-d.done:
		return d.conn, true, d.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// dial connects slot s for the callers waiting on d.
func (p *peerPool) dial(s *poolSlot, d *dialAttempt) {
	c, err := dialPeer(p.ctx, p.setup, p.addr)
	s.mu.Lock()
	if err == nil && p.closed.Load() {
		c.fail(ErrClosed)
		c, err = nil, ErrClosed
	}
	s.conn.Store(c)
	s.dialing = nil
	s.mu.Unlock()
	d.conn, d.err = c, err
	close(d.done)
}

func (p *peerPool) close() {
	p.closed.Store(true)
	p.cancel()
	for i := range p.slots {
		s := &p.slots[i]
		s.mu.Lock()
		if c := s.conn.Load(); c != nil {
			c.fail(ErrClosed)
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
	idle    time.Duration // closed after this long with no call
	broken  chan struct{} // closed once err is set

	mu       sync.Mutex
	queue    outQueue
	enc      *msgpack.Encoder
	nextID   uint64
	pending  map[uint64]*call
	lastUsed int64       // unix nanoseconds of the last call
	err      error       // set once the connection is broken
	dead     atomic.Bool // err is set: read without the lock
}

// errIdle breaks a connection that carried no call for a while, before the
// peer's own idle timeout (twice as long, with the same Config) closes it
// under a request.
var errIdle = errors.New("closed as idle")

// call is one request waiting for its reply. Calls are recycled through
// callPool once their reply has been taken.
type call struct {
	done  chan struct{} // capacity 1: the reader never blocks on it
	resp  response
	err   error
	start int64 // unix nanoseconds
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// dialPeer connects to the peer at addr and shakes hands. The connect is
// bounded by ConnectTimeout and the whole by RequestTimeout; ctx can only
// cut it shorter.
func dialPeer(ctx context.Context, s *peerSetup, addr string) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.requestTimeout)
	defer cancel()
	connectCtx, connected := context.WithTimeout(ctx, s.connectTimeout)
	conn, err := s.dial(connectCtx, addr)
	connected()
	if err == nil {
		conn, err = s.secure(ctx, conn, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("ghost: connect to %s: %w", addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// A pool closing mid-handshake closes the connection under it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	hello := append([]byte{preambleCache}, magic...)
	hello = append(hello, s.protocolVersion)
	var reply [len(magic) + 2]byte
	if _, err = conn.Write(hello); err == nil {
		_, err = io.ReadFull(conn, reply[:])
	}
	if err == nil && string(reply[:len(magic)]) != magic {
		err = errors.New("peer does not speak the GhostDB cache protocol")
	}
	if err == nil && reply[len(magic)+1] != 0 {
		err = fmt.Errorf("%w: we speak %d, %s speaks %d", ErrProtocolVersion, s.protocolVersion, addr, reply[len(magic)])
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ghost: connect to %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &clientConn{
		conn:     conn,
		timeout:  s.requestTimeout,
		idle:     s.idleTimeout / 2,
		broken:   make(chan struct{}),
		pending:  make(map[uint64]*call),
		lastUsed: time.Now().UnixNano(),
	}
	c.enc = msgpack.NewEncoder(&c.queue.out)
	s.goBackground(func() { c.readLoop(s.maxFrameSize, s.frames) })
	s.goBackground(c.reap)
	return c, nil
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
	c.lastUsed = cl.start
	c.nextID++
	id := c.nextID
	c.pending[id] = cl
	r := *req
	r.id = id
	encodeRequest(&c.queue.out, c.enc, &r)
	if !c.queue.flushing {
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

// flushLocked writes the queued requests out; c.mu is held on entry and
// exit. With other calls in flight it yields before each write, so that
// callers ready to send join it; a lone caller writes at once.
func (c *clientConn) flushLocked() {
	if c.err != nil {
		return
	}
	if err := c.queue.drainLocked(&c.mu, c.conn, len(c.pending) > 1); err != nil {
		c.failLocked(err)
	}
}

// reap breaks the connection when a call has waited longer than the
// request timeout, or when no call has used it for c.idle.
func (c *clientConn) reap() {
	tick := time.NewTicker(max(c.timeout/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.broken:
			return
		case now := <-tick.C:
			c.mu.Lock()
			if len(c.pending) == 0 && now.UnixNano()-c.lastUsed > int64(c.idle) {
				c.failLocked(errIdle)
			}
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

func (c *clientConn) readLoop(maxFrame int, budget *frameBudget) {
	frames := newFrameReader(c.conn, bufio.NewReaderSize(c.conn, 32<<10), maxFrame, 0)
	frames.budget = budget
	defer frames.close()
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
	c.dead.Store(true)
	close(c.broken)
	c.conn.Close()
	for id, cl := range c.pending {
		delete(c.pending, id)
		cl.err = c.err
		cl.done <- struct{}{}
	}
}

// connClosed reports whether a call failed because its connection was
// closed under it, by us as idle or by the peer, rather than because the
// peer did not answer in time.
func connClosed(err error) bool {
	return errors.Is(err, errIdle) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
