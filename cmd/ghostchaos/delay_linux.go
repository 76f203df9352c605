package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// The delayer process: where the kernel has no netem, it adds latency to a
// host's link. iptables sends the host's packets to an NFQUEUE; the
// delayer, in the host's namespace, holds each one for the configured
// delay and then lets it go, in arrival order. A "pass" line on its stdin
// makes it let every packet go at once; it ends when its stdin closes.
// Packets still queued when the rules change, or when the delayer ends,
// are dropped: so the suite sends "pass", waits for the queue to drain,
// removes the rules, and only then closes the delayer's stdin.

const (
	solNetlink       = 270 // SOL_NETLINK
	netlinkNoENOBUFS = 5   // NETLINK_NO_ENOBUFS
)

// queued is a packet waiting for its verdict.
type queued struct {
	id  uint32
	due time.Time
}

// runDelayer is main for a delayer process.
func runDelayer(raw string, stdin io.Reader, stdout io.Writer) error {
	var cfg delayerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil || cfg.Queue == 0 || cfg.Delay <= 0 {
		return fmt.Errorf("delayer config %q: want a queue and a positive delay (%v)", raw, err)
	}
	fd, err := bindQueue(cfg.Queue)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := json.NewEncoder(stdout).Encode(message{T: msgReady}); err != nil {
		return err
	}
	var pass atomic.Bool
	go func() {
		in := bufio.NewScanner(stdin)
		for in.Scan() {
			if in.Text() == delayerPass {
				pass.Store(true)
			}
		}
		os.Exit(0) // the suite is done with us: the kernel unbinds the queue
	}()
	due := make(chan queued, 1<<16)
	go releaseLoop(fd, cfg.Queue, due, &pass)
	errorsSeen := 0
	buf := make([]byte, 1<<16)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOBUFS) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		replies, err := parseNetlink(buf[:n])
		if err != nil {
			return err
		}
		now := time.Now()
		for _, r := range replies {
			switch {
			case r.isPacket:
				select {
				case due <- queued{id: r.packetID, due: now.Add(cfg.Delay)}:
				default: // over 65536 packets in flight: let this one (and those before) go now
					_ = nlSend(fd, verdictUpTo(cfg.Queue, r.packetID))
				}
			case r.isError && r.errno != 0:
				if errorsSeen++; errorsSeen&(errorsSeen-1) == 0 { // 1st, 2nd, 4th, 8th...
					fmt.Fprintf(os.Stderr, "ghostchaos delayer: verdict refused (%d times): %v\n", errorsSeen, syscall.Errno(-r.errno))
				}
			}
		}
	}
}

// bindQueue opens a netlink socket and binds it to NFQUEUE queue.
func bindQueue(queue uint16) (int, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("netlink bind: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 8<<20)
	_ = syscall.SetsockoptInt(fd, solNetlink, netlinkNoENOBUFS, 1)
	buf := make([]byte, 1<<16)
	for _, m := range configMessages(queue) {
		err := nlSend(fd, m)
		if err == nil {
			err = nlAck(fd, buf)
		}
		if err != nil {
			syscall.Close(fd)
			return -1, fmt.Errorf("configure NFQUEUE %d: %w", queue, err)
		}
	}
	return fd, nil
}

// releaseLoop lets packets go once their delay is over, in order, with one
// batch verdict for all that are due at once; once pass is set, at once.
func releaseLoop(fd int, queue uint16, due <-chan queued, pass *atomic.Bool) {
	var next *queued
	for {
		p := next
		if p == nil {
			q := <-due
			p = &q
		}
		next = nil
		if !pass.Load() {
			time.Sleep(time.Until(p.due))
		}
		last := p.id
	drain:
		for {
			select {
			case q := <-due:
				if q.due.After(time.Now()) && !pass.Load() {
					next = &q
					break drain
				}
				last = q.id
			default:
				break drain
			}
		}
		_ = nlSend(fd, verdictUpTo(queue, last))
	}
}

func nlSend(fd int, m []byte) error {
	if err := syscall.Sendto(fd, m, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	return nil
}

// nlAck waits for the acknowledgement of a request.
func nlAck(fd int, buf []byte) error {
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		replies, err := parseNetlink(buf[:n])
		if err != nil {
			return err
		}
		for _, r := range replies {
			if r.isError {
				if r.errno != 0 {
					return syscall.Errno(-r.errno)
				}
				return nil
			}
		}
	}
}
