package ghost

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestRepliesOwedAreSentBeforeABadFrameCloses(t *testing.T) {
	c := newCluster(t, 1, true)
	conn, br := dialCache(t, c.nodes[0].Addr())
	var batch []byte
	for id := uint64(1); id <= 3; id++ {
		batch = append(batch, requestFrame(&request{id: id, op: OpPut, key: fmt.Sprint("k", id), value: []byte{0xc0}, ttl: -1})...)
	}
	batch = append(batch, frameOf([]byte{0xc1, 0xc1})...) // decodes to nothing
	batch = append(batch, requestFrame(&request{id: 4, op: OpPing})...)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	// Writes are served on their own goroutines: their replies may come
	// in any order.
	seen := map[uint64]bool{}
	for range 3 {
		resp, err := readResponse(br)
		if err != nil || resp.id < 1 || resp.id > 3 || seen[resp.id] || resp.status != statusOK {
			t.Fatalf("reply: %+v, %v", resp, err)
		}
		seen[resp.id] = true
	}
	// Then the connection ends: nothing after the bad frame is served.
	if resp, err := readResponse(br); err != io.EOF {
		t.Fatalf("after the bad frame: %+v, %v; want the connection closed", resp, err)
	}
}

// Attack 5: connections that made one large put and then idled each kept
// their largest frame buffer: 300 of them pinned 629 MiB.
func TestIdleConnectionsHoldLittleMemory(t *testing.T) {
	c := newCluster(t, 1, true)
	n := c.nodes[0]
	value, _ := msgpack.Marshal(make([]byte, n.cfg.MaxValueSize-8))
	put := requestFrame(&request{id: 1, op: OpPut, key: "big", value: value, ttl: -1})
	get := requestFrame(&request{id: 2, op: OpGet, key: "big"})
	before := heapInUse()
	const conns = 100
	for range conns {
		conn, br := dialCache(t, n.Addr())
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		for _, frame := range [][]byte{put, get} { // the get once the put is stored
			if _, err := conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			if resp, err := readResponse(br); err != nil || resp.status != statusOK {
				t.Fatalf("large put and get: %+v, %v", resp, err)
			}
		}
	}
	grew := int64(heapInUse()) - int64(before)
	t.Logf("%d idle connections after a 1 MiB put and get each: heap grew %d KiB", conns, grew>>10)
	if open := n.server.open.Load(); open < conns {
		t.Fatalf("only %d connections open while measuring", open)
	}
	// One copy of the value is stored; each connection may keep its
	// 32 KiB read buffer and small output buffer, not 1 MiB frames.
	if grew > 40<<20 {
		t.Fatalf("%d idle connections hold %d MiB", conns, grew>>20)
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	c := newCluster(t, 1, true, func(cfg *Config) { cfg.IdleTimeout = 300 * time.Millisecond })
	n := c.nodes[0]
	cache, br := dialCache(t, n.Addr())
	_ = cache.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := cache.Write(requestFrame(&request{id: 1, op: OpPing})); err != nil {
		t.Fatal(err)
	}
	if _, err := readResponse(br); err != nil {
		t.Fatal(err)
	}
	web := rawConn(t, n)
	_ = web.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(web, "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	resp, err := readHTTPStatus(bufio.NewReader(web))
	if err != nil || !strings.Contains(resp, "200") {
		t.Fatalf("HTTP ping: %q, %v", resp, err)
	}
	// Both now idle; the node closes them, long before the 10 s deadline.
	start := time.Now()
	for name, conn := range map[string]io.Reader{"cache": br, "HTTP": web} {
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Fatalf("idle %s connection: %v after %v, want it closed", name, err, time.Since(start))
		}
	}
	waitFor(t, 5*time.Second, func() error {
		if open := n.server.open.Load(); open != 0 {
			return fmt.Errorf("%d connections still counted open", open)
		}
		return nil
	})
}

// readHTTPStatus reads an HTTP response's status line and skips the rest
// of its head and its body.
func readHTTPStatus(br *bufio.Reader) (string, error) {
	status, err := br.ReadString('\n')
	if err != nil {
		return status, err
	}
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return status, err
		}
		if line == "\r\n" {
			break
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length:"); ok {
			fmt.Sscan(strings.TrimSpace(v), &length)
		}
	}
	_, err = io.CopyN(io.Discard, br, int64(length))
	return status, err
}

// Connections that carried one large request and went idle pin no more
// memory than any other: 500 idle connections after one 512 KiB Put each
// held 270 MiB of heap while the last frame's buffer stayed referenced
// until the next frame; now the read buffers alone (32 KiB each).
func TestIdleConnectionsPinNoLargeFrame(t *testing.T) {
	c := newCluster(t, 1, true, func(cfg *Config) { cfg.IdleTimeout = time.Hour })
	n := c.nodes[0]
	value, _ := msgpack.Marshal(bytes.Repeat([]byte{'x'}, 512<<10-16))
	before := heapInUse()
	for i := range 500 {
		conn, br := dialCache(t, n.Addr())
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(requestFrame(&request{id: 1, op: OpPut, key: "big", value: value, ttl: -1, tver: n.table.Load().version})); err != nil {
			t.Fatal(err)
		}
		if resp, err := readResponse(br); err != nil || resp.status != statusOK {
			t.Fatalf("Put %d: status %d, %v %s", i, resp.status, err, resp.msg)
		}
	}
	growth := int64(heapInUse()) - int64(before)
	t.Logf("500 idle connections after a 512 KiB Put each: heap grew %d MiB", growth>>20)
	if growth > 64<<20 {
		t.Errorf("500 idle connections pin %d MiB", growth>>20)
	}
}
