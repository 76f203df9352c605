package ghost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Serving the cache protocol: the connection loop and the execution of
// each request on the local store.

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

	frames := newFrameReader(conn, br, n.cfg.MaxFrameSize, n.cfg.IdleTimeout)
	frames.budget = n.frameBudget
	defer frames.close()
	w := &replyWriter{conn: conn}
	w.enc = msgpack.NewEncoder(&w.queue.out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waiting sync.WaitGroup // requests served on their own goroutine
	for {
		var req request
		dec, err := frames.next()
		if err == nil {
			err = decodeRequest(dec, &req)
		}
		if err != nil {
			// The replies owed for the frames before this one still go out.
			waiting.Wait()
			w.send(nil, true)
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				n.log.Debug("ghost: dropped a cache connection", "remote", conn.RemoteAddr(), "err", err)
			}
			return
		}
		if mayWait(&req) || (req.op == OpGet || req.op == opNearGet) && n.readMayWait(req.key) {
			// A write waits for its copies, a read for a write in flight
			// or for the lease: it must not hold up the requests behind
			// it on this connection. Among them may be the copy that
			// settles what it waits for: two nodes each waiting in line
			// for the other stalled until settleWait ran out.
			waiting.Add(1)
			n.goBackground(func() {
				defer waiting.Done()
				resp := n.serve(ctx, &req)
				w.send(&resp, true)
			})
			continue
		}
		resp := n.serve(ctx, &req)
		if !w.send(&resp, br.Buffered() == 0) {
			return
		}
	}
}

// mayWait reports whether serving req may wait on other nodes: writes
// wait for their copies, and so do batches (of writes; of reads, any key
// may meet a write in flight); a transfer chunk may be pairs handed back,
// which the primary copies as it would writes. A read waits only now and
// then (readMayWait).
func mayWait(req *request) bool {
	switch req.op {
	case OpPut, OpAdd, OpDelete, OpFlush, opTransfer, opBatch, opLoad, opLoadFill:
		return true
	}
	return false
}

// replyWriter sends the replies of one connection. Replies served in order
// are flushed when no more requests are waiting; replies of requests served
// on their own goroutine are flushed at once, by whichever sender finds no
// write under way.
type replyWriter struct {
	conn   net.Conn
	mu     sync.Mutex
	queue  outQueue
	enc    *msgpack.Encoder
	broken bool
}

// send queues resp (none when nil), and writes the queue out when flush is
// set or the queue is large. It reports false once the connection is
// broken.
func (w *replyWriter) send(resp *response, flush bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return false
	}
	if resp != nil {
		encodeResponse(&w.queue.out, w.enc, resp)
	}
	if (!flush && len(w.queue.out.b) < keepOut) || w.queue.flushing {
		return true
	}
	if err := w.queue.drainLocked(&w.mu, w.conn, false); err != nil {
		w.broken = true
		w.conn.Close()
	}
	return !w.broken
}

// The ops nodes use among themselves; the public Ops are numbered below.
const (
	opReplicate      Op = 64 + iota // a copy of a write, primary → holder
	opTransfer                      // a chunk of a partition, primary → holder
	opTableGet                      // fetch the partition table
	opTablePush                     // coordinator → member: a new table
	opReady                         // primary → coordinator: a transfer is done
	opDigest                        // anti-entropy: compare a partition's summary
	opBatch                         // many keys of one op (batch.go)
	opLoad                          // GetOrLoad: the value, or the key's load lease (load.go)
	opLoadFill                      // the lease holder's loaded value
	opLoadRelease                   // a lease ends without a value
	opNearGet                       // a read that asks for a near lease (near.go)
	opNearInvalidate                // primary → near holder: drop the key's copy
	opNearRenew                     // near holder → primary: renew the leases of many keys (nearrenew.go)
)

// handlers serve each op; an op without one is answered with an error.
var handlers = map[Op]func(n *Node, ctx context.Context, req *request) response{
	OpGet:             (*Node).serveGet,
	OpPut:             (*Node).serveStore,
	OpAdd:             (*Node).serveStore,
	OpDelete:          (*Node).serveDelete,
	OpFlush:           (*Node).serveFlush,
	OpPing:            (*Node).servePing,
	OpSnitchMetrics:   (*Node).serveMetrics,
	OpWatchdogMetrics: (*Node).serveMetrics,
	opReplicate:       (*Node).serveReplica,
	opTransfer:        (*Node).serveTransfer,
	opTableGet:        (*Node).serveTableGet,
	opTablePush:       (*Node).serveTablePush,
	opReady:           (*Node).serveReady,
	opDigest:          (*Node).serveDigest,
	opBatch:           (*Node).serveBatch,
	opLoad:            (*Node).serveLoad,
	opLoadFill:        (*Node).serveStore,
	opLoadRelease:     (*Node).serveLoadRelease,
	opNearGet:         (*Node).serveNearGet,
	opNearInvalidate:  (*Node).serveNearInvalidate,
	opNearRenew:       (*Node).serveNearRenew,
}

// serve executes a request on this node. Forwarded requests and local ones
// take this same path.
func (n *Node) serve(ctx context.Context, req *request) response {
	h := handlers[req.op]
	if h == nil {
		return response{id: req.id, status: statusError, msg: fmt.Sprintf("unknown op %d", req.op)}
	}
	return h(n, ctx, req)
}

func badKey(req *request) (response, bool) {
	if err := checkKey(req.key); err != nil {
		return response{id: req.id, status: statusBadKey, msg: err.Error()}, true
	}
	return response{}, false
}

// admitRead checks a read as any copy serving it does: its key, the table
// it was routed with, this node's quorum and lease. It returns the key's
// hash and partition and the table, or the refusal to answer with.
func (n *Node) admitRead(ctx context.Context, req *request) (h uint64, p int, t *table, refusal *response) {
	if resp, bad := badKey(req); bad {
		return 0, 0, nil, &resp
	}
	h = hashKey(req.key)
	p = n.partitionOfHash(h)
	t = n.table.Load()
	if req.tver > t.version || !t.inSync(p) {
		// Routed with a newer table than ours: by it we may hold nothing
		// of the partition (a process started on a member's address that
		// has not joined yet holds a table of its own, alone). The caller
		// asks another copy.
		resp := n.refuse(req, t, "a read")
		return 0, 0, nil, &resp
	}
	if n.refuses(OpGet) || !n.awaitLease(ctx) {
		return 0, 0, nil, &response{id: req.id, status: statusNoQuorum, tver: t.version}
	}
	return h, p, t, nil
}

// serveGet reads a key on one of its partition's in-sync copies.
func (n *Node) serveGet(ctx context.Context, req *request) response {
	h, p, t, refusal := n.admitRead(ctx, req)
	if refusal != nil {
		return *refusal
	}
	resp := response{id: req.id, tver: t.version}
	v, ok := n.readLocal(ctx, p, h, req.key)
	if !ok {
		resp.status = statusMiss
	}
	resp.value = v
	return resp
}

// readLocal reads key, of hash h, from this node's copy of partition p,
// counting the read as served.
func (n *Node) readLocal(ctx context.Context, p int, h uint64, key string) ([]byte, bool) {
	n.stats.getRequests.Add(1)
	v, ok := n.store.getHashed(ctx, p, h, key)
	if !ok {
		n.stats.cacheMiss.Add(1)
	}
	return v, ok
}

func (n *Node) serveStore(ctx context.Context, req *request) response {
	if resp, bad := badKey(req); bad {
		return resp
	}
	if len(req.value) > n.cfg.MaxValueSize {
		return response{id: req.id, status: statusTooLarge, msg: fmt.Sprintf("%d bytes, limit %d", len(req.value), n.cfg.MaxValueSize)}
	}
	if err := checkValue(req.value); err != nil {
		return refuseValue(req.id, err)
	}
	resp := n.serveWrite(ctx, req)
	if req.op == opLoadFill && resp.status != statusWrongOwner && resp.status != statusStale {
		n.loads.resolve(req.key, req.ver, "") // stored or not, the waiters read again
	}
	n.loads.forget(req.key) // a failed load remembered is forgotten at a write
	return resp
}

func (n *Node) serveDelete(ctx context.Context, req *request) response {
	if resp, bad := badKey(req); bad {
		return resp
	}
	n.loads.forget(req.key)
	return n.serveWrite(ctx, req)
}

// serveFlush empties this node; req.ver is the flush's version, so that
// copies of older pairs still travelling are refused.
func (n *Node) serveFlush(_ context.Context, req *request) response {
	n.stats.flushRequests.Add(1)
	n.store.flush(req.ver)
	for p := range n.cfg.PartitionCount {
		n.nearGrants.forget(p) // Flush clears the near caches next
	}
	n.stats.flushed.Add(1)
	return response{id: req.id, tver: n.table.Load().version}
}

// servePing answers with this node's name, so that a member probing it
// directly (membership.go) knows who answered.
func (n *Node) servePing(_ context.Context, req *request) response {
	resp := response{id: req.id, tver: n.table.Load().version, msg: n.name}
	if req.key != "" && !n.vouchesFor(req.key) { // a lease ping, naming its sender
		resp.value = []byte(notVouched)
	}
	return resp
}

func (n *Node) serveMetrics(_ context.Context, req *request) response {
	return response{id: req.id, value: encodeSamples(n.localSamples(req.op))}
}

func (n *Node) serveTableGet(_ context.Context, req *request) response {
	t := n.table.Load()
	return response{id: req.id, value: encodeTable(t), tver: t.version}
}

// serveTablePush applies a table its coordinator pushed.
func (n *Node) serveTablePush(_ context.Context, req *request) response {
	t, err := decodeTable(req.value, n.cfg.PartitionCount)
	if err != nil {
		n.log.Warn("ghost: refused a pushed partition table", "err", err)
		return response{id: req.id, status: statusError, msg: err.Error()}
	}
	if !n.applyTable(t) {
		if cur := n.table.Load(); cur.version != t.version || cur.coordinator != t.coordinator {
			// Refused: this node holds a newer table, or another of the
			// same version. Its coordinator must not count it as pushed.
			return response{id: req.id, status: statusStale, tver: cur.version}
		}
	}
	return response{id: req.id, tver: n.table.Load().version}
}
