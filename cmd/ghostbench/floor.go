package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// The floor: what one request and its reply between two Go processes over
// loopback cost on this machine, with nothing of GhostDB in them. The
// server is a process of its own (ghostbench -floor-server) that answers
// every get with a value of -value bytes and every set with nothing; it
// serves every request its read buffer holds before one write. The client
// shares one connection among its callers: a caller that finds no write
// under way writes for everyone waiting, and one goroutine reads the
// replies. A forwarded GhostDB call can cost no less; the ratio to this row
// says how much of each hop is GhostDB's own.
//
// A frame is a 4-byte length, then an 8-byte call id, then for a request
// an op byte and the key (and, for a set, the value after a 2-byte key
// length), for a reply the value.

const (
	floorGet byte = 1
	floorSet byte = 2
)

// floorMaxFrame bounds a frame either way.
const floorMaxFrame = 16 << 20

// runFloorServer listens on a free port of 127.0.0.1, prints its address on
// stdout and serves until stdin closes.
func runFloorServer(valueSize int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().String())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	value := make([]byte, valueSize)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go serveFloorConn(conn, value)
	}
}

// serveFloorConn answers one connection's requests in order, writing once
// the requests it has read are all answered.
func serveFloorConn(conn net.Conn, value []byte) {
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 32<<10)
	bw := bufio.NewWriterSize(conn, 32<<10)
	var hdr [12]byte
	var body []byte
	for {
		if _, err := io.ReadFull(br, hdr[:4]); err != nil {
			return
		}
		size := int(binary.BigEndian.Uint32(hdr[:4]))
		if size < 9 || size > floorMaxFrame {
			return
		}
		if cap(body) < size {
			body = make([]byte, size)
		}
		body = body[:size]
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		reply := value
		if body[8] == floorSet {
			reply = nil
		}
		binary.BigEndian.PutUint32(hdr[:4], uint32(8+len(reply)))
		copy(hdr[4:], body[:8])
		_, _ = bw.Write(hdr[:])
		_, _ = bw.Write(reply)
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

// startFloor starts the floor server as a process of its own, a copy of
// ghostbench.
func startFloor(ctx context.Context, valueSize int) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &server{name: targetFloor, version: "Go floor (ghostbench -floor-server)", exited: make(chan struct{})}
	s.cmd = exec.Command(self, "-floor-server", "-value", fmt.Sprint(valueSize))
	s.cmd.SysProcAttr = childAttr()
	s.cmd.Stderr = os.Stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := s.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the floor server: %w", err)
	}
	s.stdin = stdin
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	select {
	case s.addr = <-addr:
	case <-s.exited:
		return nil, errors.New("the floor server exited at start")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	if _, _, err := net.SplitHostPort(s.addr); err != nil {
		s.stop()
		return nil, fmt.Errorf("the floor server said %q, not its address", s.addr)
	}
	return s, nil
}

// floorClient is the client side of the floor: callers share one
// connection.
type floorClient struct {
	conn net.Conn

	mu      sync.Mutex
	out     []byte // requests not written yet
	spare   []byte // the buffer the last write used, for the next requests
	writing bool   // a caller is writing out
	nextID  uint64
	waiting map[uint64]chan floorReply
	err     error // the connection broke
}

type floorReply struct {
	value []byte
	err   error
}

func newFloorClient(addr string) (client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &floorClient{conn: conn, waiting: map[uint64]chan floorReply{}}
	go c.readReplies()
	return c, nil
}

// call sends one request and waits for its reply.
func (c *floorClient) call(ctx context.Context, op byte, key string, value []byte) (floorReply, error) {
	ch := make(chan floorReply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return floorReply{}, err
	}
	c.nextID++
	id := c.nextID
	c.waiting[id] = ch
	size := 8 + 1 + len(key)
	if op == floorSet {
		size += 2 + len(value)
	}
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(size))
	c.out = binary.BigEndian.AppendUint64(c.out, id)
	c.out = append(c.out, op)
	if op == floorSet {
		c.out = binary.BigEndian.AppendUint16(c.out, uint16(len(key)))
	}
	c.out = append(c.out, key...)
	c.out = append(c.out, value...)
	if !c.writing {
		// No write under way: this caller writes for everyone waiting,
		// its request and those that come while it writes.
		c.writing = true
		for len(c.out) > 0 && c.err == nil {
			buf := c.out
			c.out = c.spare[:0]
			c.mu.Unlock()
			_, err := c.conn.Write(buf)
			c.mu.Lock()
			c.spare = buf
			if err != nil {
				c.failLocked(err)
			}
		}
		c.writing = false
	}
	c.mu.Unlock()
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
		return floorReply{}, ctx.Err()
	}
}

// readReplies hands each reply to its caller until the connection breaks.
func (c *floorClient) readReplies() {
	br := bufio.NewReaderSize(c.conn, 32<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.fail(err)
			return
		}
		size := int(binary.BigEndian.Uint32(hdr[:]))
		if size < 8 || size > floorMaxFrame {
			c.fail(fmt.Errorf("a reply of %d bytes", size))
			return
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(br, body); err != nil {
			c.fail(err)
			return
		}
		id := binary.BigEndian.Uint64(body)
		c.mu.Lock()
		ch := c.waiting[id]
		delete(c.waiting, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- floorReply{value: body[8:]}
		}
	}
}

func (c *floorClient) fail(err error) {
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
}

func (c *floorClient) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = fmt.Errorf("floor connection: %w", err)
	for id, ch := range c.waiting {
		ch <- floorReply{err: c.err}
		delete(c.waiting, id)
	}
	c.conn.Close()
}

func (c *floorClient) get(ctx context.Context, key string) (bool, error) {
	r, err := c.call(ctx, floorGet, key, nil)
	return err == nil && len(r.value) > 0, err
}

func (c *floorClient) set(ctx context.Context, key string, value []byte) error {
	_, err := c.call(ctx, floorSet, key, value)
	return err
}

func (c *floorClient) close() { c.fail(net.ErrClosed) }
