package ghost

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

// rawConn opens a TCP connection to n's port.
func rawConn(t *testing.T, n *Node) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", n.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGarbageOnThePortHarmsNothing(t *testing.T) {
	c := newCluster(t, 2, true)
	target, ctx := c.nodes[1], context.Background()
	hello := append([]byte{preambleCache}, magic...)
	hello = append(hello, ProtocolVersion)
	frame := func(size uint32, body []byte) []byte {
		return append([]byte{byte(size >> 24), byte(size >> 16), byte(size >> 8), byte(size)}, body...)
	}
	sends := map[string][]byte{
		"random bytes":          []byte("\x9a\x07\xffgarbage\x00\x01"),
		"wrong magic":           append([]byte{preambleCache}, "NOTGHOST"...),
		"half a handshake":      hello[:3],
		"half a frame":          append(slices.Clone(hello), frame(100, []byte{0x95, 0x01})...),
		"frame over the limit":  append(slices.Clone(hello), frame(1<<30, nil)...),
		"frame of garbage":      append(slices.Clone(hello), frame(4, []byte{0xc1, 0xc1, 0xc1, 0xc1})...),
		"request of wrong size": append(slices.Clone(hello), frame(2, []byte{0x91, 0x01})...),
		"gossip garbage":        append([]byte{preambleGossip}, "\xff\xfe junk"...),
		"other version":         append(append([]byte{preambleCache}, magic...), ProtocolVersion+7),
	}
	for name, b := range sends {
		conn := rawConn(t, target)
		if _, err := conn.Write(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// UDP garbage on the gossip port, too.
	if u, err := net.Dial("udp", target.Addr()); err == nil {
		u.Write([]byte("not a memberlist packet"))
		u.Close()
	}
	// The refused version learns why.
	conn := rawConn(t, target)
	conn.Write(append(append([]byte{preambleCache}, magic...), ProtocolVersion+7))
	reply := make([]byte, len(magic)+2)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(reply); err != nil || reply[len(reply)-1] != 1 {
		t.Fatalf("handshake of another version: reply %v, %v", reply, err)
	}
	// And the node keeps serving, for its peers and for new connections.
	for i := range 50 {
		k := c.keyOwnedBy(target, fmt.Sprint("after-garbage", i))
		if err := c.nodes[0].Put(ctx, k, i, NoExpiry); err != nil {
			t.Fatalf("Put after garbage: %v", err)
		}
	}
	p := newPeerPool(c.nodes[0], target.Addr())
	defer p.close()
	if _, err := p.call(ctx, &request{op: OpPing}); err != nil {
		t.Fatalf("fresh connection after garbage: %v", err)
	}
}
