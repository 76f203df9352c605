package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Network faults on a host: packet drops by address (partitions, one way
// or both), and impairment of its link (random loss and added latency).
// Drops and loss are iptables rules in the host's namespace, installed
// whole with iptables-restore and removed the same way. Latency uses tc
// netem where the kernel has it; where it does not (this project's CI
// kernel lacks sch_netem, and nftables' queue expression), the host's
// packets go through NFQUEUE to a delayer process in its namespace
// (delay_linux.go), and loss stays an iptables rule.

// hostRules is the filter table of one host.
type hostRules struct {
	dropFrom []netip.Addr // packets from these hosts are dropped on arrival
	dropTo   []netip.Addr // packets to these hosts are dropped on departure
	lossPct  float64      // random loss on eth0, each way, in percent
	queue    int          // when > 0, eth0's packets, both ways, go to this NFQUEUE
}

// script renders the rules as input to iptables-restore, which replaces
// the host's filter table with them in one step.
func (r hostRules) script() string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, ip := range r.dropFrom {
		fmt.Fprintf(&b, "-A INPUT -s %s/32 -j DROP\n", ip)
	}
	for _, ip := range r.dropTo {
		fmt.Fprintf(&b, "-A OUTPUT -d %s/32 -j DROP\n", ip)
	}
	if r.lossPct > 0 {
		p := strconv.FormatFloat(r.lossPct/100, 'f', -1, 64)
		fmt.Fprintf(&b, "-A INPUT -i eth0 -m statistic --mode random --probability %s -j DROP\n", p)
		fmt.Fprintf(&b, "-A OUTPUT -o eth0 -m statistic --mode random --probability %s -j DROP\n", p)
	}
	if r.queue > 0 {
		// bypass: while no delayer listens, packets pass.
		fmt.Fprintf(&b, "-A INPUT -i eth0 -j NFQUEUE --queue-num %d --queue-bypass\n", r.queue)
		fmt.Fprintf(&b, "-A OUTPUT -o eth0 -j NFQUEUE --queue-num %d --queue-bypass\n", r.queue)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// setRules replaces host h's filter table; hostRules{} clears it.
func (nw *network) setRules(ctx context.Context, h *host, r hostRules) error {
	_, err := runCmdInput(ctx, []byte(r.script()), "ip", "netns", "exec", h.ns, "iptables-restore", "-w", "5")
	return err
}

// isolate cuts h off from the others, both ways.
func (nw *network) isolate(ctx context.Context, h *host, others []*host) error {
	ips := hostIPs(others)
	return nw.setRules(ctx, h, hostRules{dropFrom: ips, dropTo: ips})
}

// deafen makes h deaf to the others: it sends, but receives nothing from
// them (a one-way partition).
func (nw *network) deafen(ctx context.Context, h *host, others []*host) error {
	return nw.setRules(ctx, h, hostRules{dropFrom: hostIPs(others)})
}

// heal clears h's rules.
func (nw *network) heal(ctx context.Context, h *host) error {
	return nw.setRules(ctx, h, hostRules{})
}

func hostIPs(hs []*host) []netip.Addr {
	ips := make([]netip.Addr, len(hs))
	for i, h := range hs {
		ips[i] = h.ip
	}
	return ips
}

// impairment is loss and latency on a host's link, each way.
type impairment struct {
	lossPct float64
	delay   time.Duration
}

func (im impairment) String() string {
	return fmt.Sprintf("%g%% loss and %v delay each way", im.lossPct, im.delay)
}

// netemArgs are the tc arguments of the impairment, after "root".
func (im impairment) netemArgs() []string {
	return []string{"netem", "delay", fmt.Sprintf("%dus", im.delay.Microseconds()), "loss", strconv.FormatFloat(im.lossPct, 'f', -1, 64) + "%"}
}

// delayQueue is the NFQUEUE number the delayer listens on: any number
// will do, as each host has its own namespace.
const delayQueue = 7

// impaired is an impairment in force; undo removes it.
type impaired struct {
	undo func(ctx context.Context) error
	how  string
}

// impair degrades host h's link. With netem, a qdisc on both ends of the
// link; without, iptables loss and the delayer.
func (nw *network) impair(ctx context.Context, h *host, im impairment, startDelayer func(ctx context.Context, h *host, d time.Duration) (*proc, error)) (*impaired, error) {
	if nw.netem {
		ends := [][2]string{{h.ns, "eth0"}, {nw.bridge, h.veth}}
		undo := func(ctx context.Context) error {
			var first error
			for _, e := range ends {
				if _, err := runCmd(ctx, "ip", "netns", "exec", e[0], "tc", "qdisc", "del", "dev", e[1], "root"); err != nil && first == nil {
					first = err
				}
			}
			return first
		}
		for _, e := range ends {
			args := append([]string{"ip", "netns", "exec", e[0], "tc", "qdisc", "replace", "dev", e[1], "root"}, im.netemArgs()...)
			if _, err := runCmd(ctx, args...); err != nil {
				_ = undo(ctx)
				return nil, err
			}
		}
		return &impaired{undo: undo, how: "tc netem"}, nil
	}
	rules := hostRules{lossPct: im.lossPct}
	var delayer *proc
	if im.delay > 0 {
		var err error
		if delayer, err = startDelayer(ctx, h, im.delay); err != nil {
			return nil, fmt.Errorf("start the delayer: %w", err)
		}
		rules.queue = delayQueue
	}
	undo := func(ctx context.Context) error {
		if delayer == nil {
			return nw.heal(ctx, h)
		}
		// Queued packets are dropped when the rules change or the
		// delayer ends: let them out first.
		_ = delayer.send(delayerPass)
		time.Sleep(im.delay + 50*time.Millisecond)
		err := nw.heal(ctx, h)
		delayer.close(time.Second)
		return err
	}
	if err := nw.setRules(ctx, h, rules); err != nil {
		_ = undo(ctx)
		return nil, err
	}
	return &impaired{undo: undo, how: "iptables statistic loss, NFQUEUE delayer"}, nil
}
