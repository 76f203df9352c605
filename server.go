package ghost

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
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
	out := &appender{}
	enc := msgpack.NewEncoder(out)
	var req request
	for {
		dec, err := frames.next()
		if err == nil {
			err = decodeRequest(dec, &req)
		}
		if err != nil {
			// The replies owed for the frames before this one still go out.
			_ = writeOut(conn, out)
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				n.log.Debug("ghost: dropped a cache connection", "remote", conn.RemoteAddr(), "err", err)
			}
			return
		}
		resp := n.serve(&req)
		encodeResponse(out, enc, &resp)
		if br.Buffered() == 0 || len(out.b) > 64<<10 {
			if writeOut(conn, out) != nil {
				return
			}
		}
	}
}

// writeOut writes out's bytes to conn and empties out. A buffer grown past
// keepOut by a large reply is dropped rather than kept for the life of the
// connection.
func writeOut(conn net.Conn, out *appender) error {
	if len(out.b) == 0 {
		return nil
	}
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := conn.Write(out.b)
	if cap(out.b) > keepOut {
		out.b = nil
	} else {
		out.b = out.b[:0]
	}
	return err
}

// serve executes a request on the local store. Forwarded requests and local
// ones take this same path.
func (n *Node) serve(req *request) response {
	resp := response{id: req.id}
	switch req.op {
	case OpGet, OpPut, OpAdd, OpDelete:
		if err := checkKey(req.key); err != nil {
			return response{id: req.id, status: statusBadKey, msg: err.Error()}
		}
	}
	switch req.op {
	case OpGet:
		n.stats.getRequests.Add(1)
		v, ok := n.store.get(n.partitionOf(req.key), req.key)
		if !ok {
			n.stats.cacheMiss.Add(1)
			resp.status = statusMiss
		}
		resp.value = v
	case OpPut, OpAdd:
		if len(req.value) > n.cfg.MaxValueSize {
			return response{id: req.id, status: statusTooLarge, msg: fmt.Sprintf("%d bytes, limit %d", len(req.value), n.cfg.MaxValueSize)}
		}
		if err := checkValue(req.value); err != nil {
			return refuseValue(req.id, err)
		}
		var expires int64
		if req.ttl > 0 {
			expires = time.Now().UnixNano() + req.ttl
		}
		if req.op == OpPut {
			n.stats.putRequests.Add(1)
		} else {
			n.stats.addRequests.Add(1)
		}
		if n.store.set(n.partitionOf(req.key), req.key, req.value, expires, req.op == OpAdd) {
			n.stats.stored.Add(1)
		} else {
			n.stats.notStored.Add(1)
			resp.status = statusNotStored
		}
	case OpDelete:
		n.stats.deleteRequests.Add(1)
		if n.store.del(n.partitionOf(req.key), req.key) {
			n.stats.removed.Add(1)
		} else {
			n.stats.notFound.Add(1)
			resp.status = statusNotFound
		}
	case OpFlush:
		n.stats.flushRequests.Add(1)
		n.store.flush()
		n.stats.flushed.Add(1)
	case OpPing:
	case OpSnitchMetrics, OpWatchdogMetrics:
		resp.value = encodeSamples(n.localSamples(req.op))
	default:
		resp.status, resp.msg = statusError, fmt.Sprintf("unknown op %d", req.op)
	}
	return resp
}
