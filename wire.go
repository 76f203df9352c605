package ghost

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sync/semaphore"
)

// The cache protocol's messages and their codecs: requests, responses,
// length-prefixed frames and metrics samples. No sockets here, so every
// decoder can be tested and fuzzed on bytes alone.

// One port carries everything a node speaks. The first byte of a TCP
// connection says what follows:
//
//	0xF1  the cache protocol: a handshake, then msgpack frames
//	0xF2  a memberlist stream (gossip push/pull, probes over TCP)
//	A-Z, a-z  HTTP/1.1: the original GhostDB HTTP/JSON protocol (gateway.go)
//
// UDP on the same port is memberlist's alone.
//
// The cache protocol. The client opens with "\xF1GHOST" and its protocol
// version; the server answers "GHOST", its version and a status byte (0 ok,
// 1 version refused) and closes on refusal. Then both sides send frames: a
// 4-byte big-endian length and a msgpack array,
//
//	request  [id, op, key, value, ttl, table, version, flags]
//	response [id, status, value, message, table]
//
// table is the version of the partition table the sender routed with (a
// request) or holds (a response); version is a pair's version, for the
// replication ops.
//
// Requests are pipelined: a client sends many before the replies come, and
// replies carry the id of their request. Writes are served concurrently
// (they wait for their copies), so replies may come in any order.
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
	// statusWrongOwner: by the responder's table (its version in the
	// reply) it does not serve the key's partition that way.
	statusWrongOwner
	// statusStale: the request was routed with a newer table than the
	// responder holds; it is fetching it, and the caller should retry.
	statusStale
	// statusReplicaFailed: the owner applied a write but a copy did not
	// confirm it, so the write is not acknowledged.
	statusReplicaFailed
	// statusDiffers: anti-entropy found a partition's copies differ.
	statusDiffers
	statusTooDeep  // the value nests deeper than MaxValueDepth
	statusBadValue // the value is not well-formed msgpack
	// statusReplyFull: a batch reply had no room left for this key's
	// value; the caller asks for it again.
	statusReplyFull
	// statusHoldsNewer: a copy refused a write's copy because it holds a
	// newer version of the key (8 bytes, big-endian, in the reply's
	// value), which the primary's clock then moves past.
	statusHoldsNewer
	// statusNoQuorum: the responder is cut off from a majority of its
	// table and answers no reads or writes (Config.StaleReads).
	statusNoQuorum
	// statusLoadYours: the key's load lease is the caller's (load.go); its
	// version, 8 bytes big-endian, is the reply's value.
	statusLoadYours
	// statusLoadFailed: the loader of the lease the caller waited for
	// failed; msg is its error.
	statusLoadFailed
	// statusLoadWait: another caller's load is still running; ask again.
	statusLoadWait
	// statusLoadRefresh: the key's value, and its load lease to refresh
	// it ahead of its expiry: the lease's version (8 bytes, big-endian),
	// then the value, in the reply's value.
	statusLoadRefresh
	// statusNearGrant: the key's value with a near lease (near.go): the
	// pair's version, the lease and the pair's time left, then the value,
	// in the reply's value.
	statusNearGrant
)

type request struct {
	id    uint64
	op    Op
	key   string
	value []byte // encoded value, for put and add
	ttl   int64  // nanoseconds; NoExpiry never expires. Replica ops: time left, 0 never (hlc.go ttlLeft)
	tver  uint64 // version of the partition table the request was routed with
	ver   uint64 // replica ops: the pair's version; flush: its timestamp
	flags uint8  // replica ops: flagTombstone, flagEvict, flagDone
	rid   uint64 // put, add, delete and their copies: the caller's request id (dedupe.go)
}

type response struct {
	id     uint64
	status status
	value  []byte // encoded value for get, encoded samples for metrics
	msg    string // details of an error status; a ping's answerer names itself
	tver   uint64 // version of the responder's partition table
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
	case statusReplicaFailed:
		return r, fmt.Errorf("%w: %s", ErrReplication, strings.TrimPrefix(r.msg, ErrReplication.Error()+": "))
	case statusTooDeep:
		return r, fmt.Errorf("%w (said the owner): %s", ErrValueTooDeep, r.msg)
	case statusBadValue:
		return r, fmt.Errorf("%w (said the owner): %s", ErrBadValue, r.msg)
	case statusNoQuorum:
		return r, ErrNoQuorum
	case statusLoadYours:
		return r, errLoadYours
	case statusLoadWait:
		return r, errLoadWait
	case statusLoadRefresh:
		return r, errLoadRefresh
	case statusNearGrant:
		return r, errNearGrant
	case statusLoadFailed:
		return r, fmt.Errorf("%w (another caller's): %s", ErrLoad, r.msg)
	}
	return r, fmt.Errorf("ghost: peer error: %s", r.msg)
}

// appender is an io.Writer that appends to a byte slice, so frames can be
// encoded straight into an output buffer.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) { a.b = append(a.b, p...); return len(p), nil }

func (a *appender) WriteByte(c byte) error { a.b = append(a.b, c); return nil }

func (a *appender) WriteString(s string) (int, error) {
	a.b = append(a.b, s...)
	return len(s), nil
}

// outQueue is a connection's outgoing frames. Senders append to out under
// their connection's lock; whichever sender finds no write under way
// writes the queue out, releasing the lock during each write, so that
// frames added meanwhile leave in the same or the next write. The client
// and the server side of the cache protocol share it.
type outQueue struct {
	out      appender
	spare    []byte
	flushing bool
}

// drainLocked writes the queue to conn until it stays empty, and returns
// the first write error. mu, the connection's lock, is held on entry and
// exit and released during each write; with yield, also once before each
// write, so that senders ready to go join it.
func (q *outQueue) drainLocked(mu *sync.Mutex, conn net.Conn, yield bool) error {
	q.flushing = true
	defer func() { q.flushing = false }()
	for len(q.out.b) > 0 {
		if yield {
			mu.Unlock()
			runtime.Gosched()
			mu.Lock()
		}
		buf := q.out.b
		q.out.b = q.spare[:0]
		mu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := conn.Write(buf)
		mu.Lock()
		// The written buffer is the next spare, unless a large frame grew
		// it: then it is dropped, and so is the spare, which is out now
		// and must not be handed out again while it is being filled.
		q.spare = nil
		if cap(buf) <= keepOut {
			q.spare = buf[:0]
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// keepOut is the most capacity an output buffer keeps between writes.
const keepOut = 64 << 10

// beginFrame reserves the length prefix; endFrame fills it in.
func beginFrame(a *appender) int { a.b = append(a.b, 0, 0, 0, 0); return len(a.b) }

func endFrame(a *appender, start int) {
	binary.BigEndian.PutUint32(a.b[start-4:], uint32(len(a.b)-start))
}

func encodeRequest(a *appender, enc *msgpack.Encoder, r *request) {
	start := beginFrame(a)
	// Writing to an appender cannot fail.
	_ = enc.EncodeArrayLen(9)
	_ = enc.EncodeUint(r.id)
	_ = enc.EncodeUint(uint64(r.op))
	_ = enc.EncodeString(r.key)
	_ = enc.EncodeBytes(r.value)
	_ = enc.EncodeInt(r.ttl)
	_ = enc.EncodeUint(r.tver)
	_ = enc.EncodeUint(r.ver)
	_ = enc.EncodeUint(uint64(r.flags))
	_ = enc.EncodeUint(r.rid)
	endFrame(a, start)
}

func encodeResponse(a *appender, enc *msgpack.Encoder, r *response) {
	start := beginFrame(a)
	_ = enc.EncodeArrayLen(5)
	_ = enc.EncodeUint(r.id)
	_ = enc.EncodeUint(uint64(r.status))
	_ = enc.EncodeBytes(r.value)
	_ = enc.EncodeString(r.msg)
	_ = enc.EncodeUint(r.tver)
	endFrame(a, start)
}

func decodeRequest(r *msgReader, req *request) error {
	if n, err := r.arrayLen(); err != nil {
		return err
	} else if n != 9 {
		return fmt.Errorf("request has %d fields, want 9", n)
	}
	var err error
	var op uint64
	if req.id, err = r.uint(math.MaxUint64); err != nil {
		return err
	}
	if op, err = r.uint(math.MaxUint8); err != nil {
		return err
	}
	req.op = Op(op)
	if req.key, err = r.str(); err != nil {
		return err
	}
	if req.value, err = r.bytes(); err != nil {
		return err
	}
	if req.ttl, err = r.int(); err != nil {
		return err
	}
	if req.tver, err = r.uint(math.MaxUint64); err != nil {
		return err
	}
	if req.ver, err = r.uint(math.MaxUint64); err != nil {
		return err
	}
	var flags uint64
	if flags, err = r.uint(math.MaxUint8); err != nil {
		return err
	}
	req.flags = uint8(flags)
	req.rid, err = r.uint(math.MaxUint64)
	return err
}

func decodeResponse(r *msgReader, resp *response) error {
	if n, err := r.arrayLen(); err != nil {
		return err
	} else if n != 5 {
		return fmt.Errorf("response has %d fields, want 5", n)
	}
	var err error
	var st uint64
	if resp.id, err = r.uint(math.MaxUint64); err != nil {
		return err
	}
	if st, err = r.uint(math.MaxUint8); err != nil {
		return err
	}
	resp.status = status(st)
	if resp.value, err = r.bytes(); err != nil {
		return err
	}
	if resp.msg, err = r.str(); err != nil {
		return err
	}
	resp.tver, err = r.uint(math.MaxUint64)
	return err
}

// frameReader reads length-prefixed frames from a connection. It keeps no
// buffer of its own: a frame that fits in the bufio.Reader is decoded where
// it lies there, and a larger one is read into a buffer of its own that is
// dropped with it, so a connection that once carried a large frame holds no
// more memory than any other. Decoders copy what they keep.
type frameReader struct {
	conn   readDeadliner
	br     *bufio.Reader
	max    int
	idle   time.Duration // how long to wait for a frame to begin; 0 for ever
	timed  bool          // a read deadline is set
	body   msgReader
	budget *frameBudget // the room for large frames the node's connections share; nil: no bound
	held   int64        // bytes of the budget the last frame holds
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }

func newFrameReader(conn readDeadliner, br *bufio.Reader, max int, idle time.Duration) *frameReader {
	return &frameReader{conn: conn, br: br, max: max, idle: idle}
}

// next reads one frame and returns a reader of its body, valid until the
// next read from f.br. A connection may stay idle between frames for
// f.idle; a frame, once begun, must arrive whole within ioTimeout.
func (f *frameReader) next() (*msgReader, error) {
	// The last frame goes before the wait for the next: a large one read
	// into a buffer of its own must not stay pinned while the connection
	// idles (500 idle connections after one 512 KiB Put each held 270 MiB).
	f.body.reset(nil)
	f.release()
	if f.br.Buffered() == 0 {
		f.deadline(f.idle)
	}
	if _, err := f.br.Peek(1); err != nil {
		return nil, err
	}
	if f.br.Buffered() < 4 {
		f.deadline(ioTimeout)
	}
	hdr, err := f.br.Peek(4)
	if err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint32(hdr))
	if size > f.max {
		return nil, fmt.Errorf("frame of %d bytes exceeds the limit of %d", size, f.max)
	}
	_, _ = f.br.Discard(4)
	if f.br.Buffered() < size {
		f.deadline(ioTimeout)
	}
	var body []byte
	if size <= f.br.Size() {
		// Discarding what is buffered reads nothing: the bytes stay where
		// they are until the next read from br.
		if body, err = f.br.Peek(size); err == nil {
			_, _ = f.br.Discard(size)
		}
	} else {
		// Room for it first: a peer that announces a large frame and
		// sends it slowly must not make the node allocate it at once, on
		// every connection it opens.
		if err := f.budget.acquire(int64(size)); err != nil {
			return nil, err
		}
		f.held = int64(size)
		body = make([]byte, size)
		_, err = io.ReadFull(f.br, body)
	}
	if err != nil {
		f.release()
		return nil, err
	}
	f.body.reset(body)
	return &f.body, nil
}

// release gives back the room the last frame held.
func (f *frameReader) release() {
	if f.held > 0 {
		f.budget.release(f.held)
		f.held = 0
	}
}

// close releases what the reader holds, once its connection is done.
func (f *frameReader) close() {
	f.body.reset(nil)
	f.release()
}

// frameBudget bounds the memory that frames larger than a connection's
// read buffer hold at once, over every connection of a node: each such
// frame takes room before its buffer is allocated, and gives it back when
// the next frame is read (or the connection ends). A frame that finds no
// room waits for it up to ioTimeout, then fails its connection. Frames
// that fit the read buffer (the 32 KiB every connection has) take none.
type frameBudget struct {
	sem   *semaphore.Weighted // nil: no bound
	size  int64
	bytes atomic.Int64 // held now
	waits atomic.Int64 // frames that found no room at once
}

// frameBudgetFor is the budget of a node whose largest frame is maxFrame:
// 64 MiB, or eight of the largest frames when that is more.
func frameBudgetFor(maxFrame int) *frameBudget {
	size := max(64<<20, 8*int64(maxFrame))
	return &frameBudget{sem: semaphore.NewWeighted(size), size: size}
}

func (b *frameBudget) acquire(n int64) error {
	if b == nil {
		return nil
	}
	if !b.sem.TryAcquire(n) {
		b.waits.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		err := b.sem.Acquire(ctx, n)
		cancel()
		if err != nil {
			return fmt.Errorf("no room for a frame of %d bytes: the node's %d bytes for large frames are in use", n, b.size)
		}
	}
	b.bytes.Add(n)
	return nil
}

func (b *frameBudget) release(n int64) {
	if b == nil {
		return
	}
	b.bytes.Add(-n)
	b.sem.Release(n)
}

// deadline sets the read deadline d from now, or clears it for d 0. Every
// read that may block is preceded by a call.
func (f *frameReader) deadline(d time.Duration) {
	if d > 0 {
		_ = f.conn.SetReadDeadline(time.Now().Add(d))
		f.timed = true
	} else if f.timed {
		_ = f.conn.SetReadDeadline(time.Time{})
		f.timed = false
	}
}

// encodeSamples is the payload of a metrics reply: each sample as
// [UnixNano, {figure name: value}], the figures named as in the SDK JSON.
func encodeSamples(samples []Sample) []byte {
	wire := make([][2]any, len(samples))
	for i, s := range samples {
		wire[i] = [2]any{s.Time.UnixNano(), s.Figures()}
	}
	b, _ := msgpack.Marshal(wire) // maps of int64 always encode
	return b
}

// decodeSamples reads the payload of a reply to a metrics call of op's
// kind. Figures the node does not know (a newer node's) are dropped.
func decodeSamples(b []byte, op Op, out *[]Sample) error {
	var wire []struct {
		_msgpack struct{} `msgpack:",as_array"`
		Time     int64
		Values   map[string]int64
	}
	// The typed decoder allocates what lengths claim: check them first.
	if err := checkValue(b); err != nil {
		return err
	}
	if err := msgpack.Unmarshal(b, &wire); err != nil {
		return err
	}
	*out = make([]Sample, len(wire))
	for i, w := range wire {
		(*out)[i] = sampleOfKind(op, time.Unix(0, w.Time), w.Values)
	}
	return nil
}
