package main

import (
	"encoding/binary"
	"testing"
)

func TestNetlinkMessages(t *testing.T) {
	ne := binary.NativeEndian
	m := verdictUpTo(7, 0x01020304)
	if int(ne.Uint32(m[0:])) != len(m) || len(m) != nlmsgHdrLen+nfgenLen+12 {
		t.Fatalf("verdict: length field %d, len %d", ne.Uint32(m[0:]), len(m))
	}
	if typ := ne.Uint16(m[4:]); typ != 3<<8|3 {
		t.Errorf("verdict type %#x, want NFQNL_MSG_VERDICT_BATCH", typ)
	}
	if q := binary.BigEndian.Uint16(m[nlmsgHdrLen+2:]); q != 7 {
		t.Errorf("queue %d, want 7", q)
	}
	attr := m[nlmsgHdrLen+nfgenLen:]
	if ne.Uint16(attr[0:]) != 12 || ne.Uint16(attr[2:]) != nfqaVerdictHdr {
		t.Errorf("verdict attribute header % x", attr[:4])
	}
	if v, id := binary.BigEndian.Uint32(attr[4:]), binary.BigEndian.Uint32(attr[8:]); v != nfAccept || id != 0x01020304 {
		t.Errorf("verdict %d for id %#x", v, id)
	}
	for i, c := range configMessages(7) {
		if int(ne.Uint32(c[0:])) != len(c) || len(c)%4 != 0 {
			t.Errorf("config message %d: length %d of %d, not aligned", i, ne.Uint32(c[0:]), len(c))
		}
		if flags := ne.Uint16(c[6:]); flags != nlmFRequest|nlmFAck {
			t.Errorf("config message %d asks no ack: flags %#x", i, flags)
		}
	}
}

// packetMessage is what the kernel sends for a queued packet: a packet
// header attribute (after another attribute, to test the walk).
func packetMessage(id uint32) []byte {
	hdr := append(be32(id), 0x08, 0x00, 3) // id, hw_protocol, hook
	return nlMessage(nfqnlPacket, 0, 0, 7, nlAttr(9, []byte{1, 2, 3, 4, 5}), nlAttr(nfqaPacketHdr, hdr))
}

func TestParseNetlink(t *testing.T) {
	ack := make([]byte, nlmsgHdrLen+4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(ack[0:], uint32(len(ack)))
	binary.NativeEndian.PutUint16(ack[4:], nlmsgError)
	refused := append([]byte(nil), ack...)
	binary.NativeEndian.PutUint32(refused[nlmsgHdrLen:], uint32(0xfffffffe)) // -ENOENT
	buf := append(append(append(packetMessage(41), ack...), packetMessage(42)...), refused...)
	got, err := parseNetlink(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []nlReply{{isPacket: true, packetID: 41}, {isError: true}, {isPacket: true, packetID: 42}, {isError: true, errno: -2}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for name, bad := range map[string][]byte{
		"length past the end":   buf[:len(buf)-1],
		"packet without header": nlMessage(nfqnlPacket, 0, 0, 7, nlAttr(9, []byte{1})),
		"zero-length attribute": nlMessage(nfqnlPacket, 0, 0, 7, []byte{0, 0, 1, 0}),
	} {
		if _, err := parseNetlink(bad); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}
