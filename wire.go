package ghost

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/vmihailenco/msgpack/v5"
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
)

type request struct {
	id    uint64
	op    Op
	key   string
	value []byte // encoded value, for put and add
	ttl   int64  // nanoseconds; NoExpiry never expires. Replica ops: absolute expiry
	tver  uint64 // version of the partition table the request was routed with
	ver   uint64 // replica ops: the pair's version; flush: its timestamp
	flags uint8  // replica ops: flagTombstone
}

type response struct {
	id     uint64
	status status
	value  []byte // encoded value for get, encoded samples for metrics
	msg    string // details of an error status
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
		return r, fmt.Errorf("%w: %s", ErrReplication, r.msg)
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

// beginFrame reserves the length prefix; endFrame fills it in.
func beginFrame(a *appender) int { a.b = append(a.b, 0, 0, 0, 0); return len(a.b) }

func endFrame(a *appender, start int) {
	binary.BigEndian.PutUint32(a.b[start-4:], uint32(len(a.b)-start))
}

func encodeRequest(a *appender, enc *msgpack.Encoder, r *request) {
	start := beginFrame(a)
	// Writing to an appender cannot fail.
	_ = enc.EncodeArrayLen(8)
	_ = enc.EncodeUint(r.id)
	_ = enc.EncodeUint(uint64(r.op))
	_ = enc.EncodeString(r.key)
	_ = enc.EncodeBytes(r.value)
	_ = enc.EncodeInt(r.ttl)
	_ = enc.EncodeUint(r.tver)
	_ = enc.EncodeUint(r.ver)
	_ = enc.EncodeUint(uint64(r.flags))
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

func decodeRequest(dec *msgpack.Decoder, r *request) error {
	if n, err := dec.DecodeArrayLen(); err != nil {
		return err
	} else if n != 8 {
		return fmt.Errorf("request has %d fields, want 8", n)
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
	if r.ttl, err = dec.DecodeInt64(); err != nil {
		return err
	}
	if r.tver, err = dec.DecodeUint64(); err != nil {
		return err
	}
	if r.ver, err = dec.DecodeUint64(); err != nil {
		return err
	}
	r.flags, err = dec.DecodeUint8()
	return err
}

func decodeResponse(dec *msgpack.Decoder, r *response) error {
	if n, err := dec.DecodeArrayLen(); err != nil {
		return err
	} else if n != 5 {
		return fmt.Errorf("response has %d fields, want 5", n)
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
	if r.msg, err = dec.DecodeString(); err != nil {
		return err
	}
	r.tver, err = dec.DecodeUint64()
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
