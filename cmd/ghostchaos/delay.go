package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// delayerPass, as a line on the delayer's stdin, ends the delay.
const delayerPass = "pass"

// delayerConfig is what a delayer starts with, as JSON after -delayer.
type delayerConfig struct {
	Queue uint16        `json:"queue"`
	Delay time.Duration `json:"delay"`
}

// The delayer's netlink messages (NFQUEUE, linux/netfilter/nfnetlink_queue.h):
// built and parsed here without sockets, so that they can be tested
// anywhere; delay_linux.go does the talking.

const (
	nlmsgHdrLen = 16 // struct nlmsghdr
	nfgenLen    = 4  // struct nfgenmsg

	nlmsgError   = 2 // NLMSG_ERROR
	nlmFRequest  = 1 // NLM_F_REQUEST
	nlmFAck      = 4 // NLM_F_ACK
	nlaTypeMask  = 0x3fff
	nfnlSubsysQ  = 3 // NFNL_SUBSYS_QUEUE
	nfqnlPacket  = 0 // NFQNL_MSG_PACKET
	nfqnlConfig  = 2 // NFQNL_MSG_CONFIG
	nfqnlVerdBat = 3 // NFQNL_MSG_VERDICT_BATCH: every packet up to an id

	nfqaPacketHdr   = 1 // NFQA_PACKET_HDR
	nfqaVerdictHdr  = 2 // NFQA_VERDICT_HDR
	nfqaCfgCmd      = 1 // NFQA_CFG_CMD
	nfqaCfgParams   = 2 // NFQA_CFG_PARAMS
	nfqaCfgMaxLen   = 3 // NFQA_CFG_QUEUE_MAXLEN
	nfqaCfgMask     = 4 // NFQA_CFG_MASK
	nfqaCfgFlags    = 5 // NFQA_CFG_FLAGS
	nfqnlCmdBind    = 1 // NFQNL_CFG_CMD_BIND
	nfqnlCopyMeta   = 1 // NFQNL_COPY_META: headers only, no payload
	nfqaFlagFailOpn = 1 // NFQA_CFG_F_FAIL_OPEN: a full queue lets packets pass
	nfAccept        = 1 // NF_ACCEPT
	afINET          = 2
)

// nlMessage builds one nfnetlink message for queue: header, nfgenmsg and
// attributes (already encoded with nlAttr).
func nlMessage(msgType uint16, flags uint16, seq uint32, queue uint16, attrs ...[]byte) []byte {
	b := make([]byte, nlmsgHdrLen+nfgenLen)
	ne := binary.NativeEndian
	ne.PutUint16(b[4:], nfnlSubsysQ<<8|msgType)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	// nfgenmsg: family AF_UNSPEC, version 0, queue number big-endian.
	binary.BigEndian.PutUint16(b[nlmsgHdrLen+2:], queue)
	for _, a := range attrs {
		b = append(b, a...)
	}
	ne.PutUint32(b[0:], uint32(len(b)))
	return b
}

// nlAttr encodes one attribute, padded to 4 bytes.
func nlAttr(typ uint16, data []byte) []byte {
	n := 4 + len(data)
	b := make([]byte, align4(n))
	binary.NativeEndian.PutUint16(b[0:], uint16(n))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

func align4(n int) int { return (n + 3) &^ 3 }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// configMessages are the messages that bind the queue and set it up: copy
// packet headers only, a long queue, and fail open when it is full.
func configMessages(queue uint16) [][]byte {
	bind := []byte{nfqnlCmdBind, 0, 0, afINET} // command, pad, pf (big-endian)
	params := append(be32(0), nfqnlCopyMeta)   // copy_range, copy_mode
	return [][]byte{
		nlMessage(nfqnlConfig, nlmFRequest|nlmFAck, 1, queue, nlAttr(nfqaCfgCmd, bind)),
		nlMessage(nfqnlConfig, nlmFRequest|nlmFAck, 2, queue, nlAttr(nfqaCfgParams, params)),
		nlMessage(nfqnlConfig, nlmFRequest|nlmFAck, 3, queue, nlAttr(nfqaCfgMaxLen, be32(8192))),
		nlMessage(nfqnlConfig, nlmFRequest|nlmFAck, 4, queue, nlAttr(nfqaCfgMask, be32(nfqaFlagFailOpn)), nlAttr(nfqaCfgFlags, be32(nfqaFlagFailOpn))),
	}
}

// verdictUpTo accepts every queued packet with an id up to id.
func verdictUpTo(queue uint16, id uint32) []byte {
	return nlMessage(nfqnlVerdBat, nlmFRequest, 0, queue, nlAttr(nfqaVerdictHdr, append(be32(nfAccept), be32(id)...)))
}

// nlReply is what parseNetlink found in one message.
type nlReply struct {
	packetID uint32 // a queued packet's id
	isPacket bool
	errno    int32 // an NLMSG_ERROR's error: 0 is an acknowledgement
	isError  bool
}

// parseNetlink splits a buffer read from the socket into its messages.
func parseNetlink(b []byte) ([]nlReply, error) {
	var out []nlReply
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		n := int(ne.Uint32(b[0:]))
		if n < nlmsgHdrLen || n > len(b) {
			return out, fmt.Errorf("netlink message of %d bytes in %d", n, len(b))
		}
		msg := b[nlmsgHdrLen:n]
		switch typ := ne.Uint16(b[4:]); {
		case typ == nlmsgError:
			if len(msg) < 4 {
				return out, errors.New("short NLMSG_ERROR")
			}
			out = append(out, nlReply{isError: true, errno: int32(ne.Uint32(msg))})
		case typ == nfnlSubsysQ<<8|nfqnlPacket:
			id, err := packetID(msg)
			if err != nil {
				return out, err
			}
			out = append(out, nlReply{isPacket: true, packetID: id})
		}
		b = b[min(align4(n), len(b)):]
	}
	return out, nil
}

// packetID finds NFQA_PACKET_HDR in a packet message's attributes.
func packetID(msg []byte) (uint32, error) {
	if len(msg) < nfgenLen {
		return 0, errors.New("short packet message")
	}
	attrs := msg[nfgenLen:]
	for len(attrs) >= 4 {
		n := int(binary.NativeEndian.Uint16(attrs[0:]))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & nlaTypeMask
		if n < 4 || n > len(attrs) {
			return 0, fmt.Errorf("attribute of %d bytes in %d", n, len(attrs))
		}
		if typ == nfqaPacketHdr && n >= 8 {
			return binary.BigEndian.Uint32(attrs[4:]), nil
		}
		attrs = attrs[min(align4(n), len(attrs)):]
	}
	return 0, errors.New("packet message without NFQA_PACKET_HDR")
}
